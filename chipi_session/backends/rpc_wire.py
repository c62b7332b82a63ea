"""What a Starknet JSON-RPC node answers, decoded: error objects, transaction statuses, receipts.

Pure (no I/O): the node's JSON becomes typed values or a ``StarknetRpcError`` with a stable
``ErrorCode``; "not found" answers are recognised exactly (docs/wire-protocol.md,
"get_session_data"). ``starknet_rpc.StarknetRpcBackend`` sends the requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, parse_felts

__all__ = [
    "StarknetRpcError",
    "TransactionStatus",
    "TransactionReceipt",
    "ReceiptEvent",
    "RPC_CONTRACT_NOT_FOUND",
    "RPC_CONTRACT_ERROR",
    "decode_transaction_status",
    "decode_receipt",
    "rpc_error",
]

RPC_CONTRACT_NOT_FOUND = 20
RPC_INVALID_MESSAGE_SELECTOR = 21
RPC_BLOCK_NOT_FOUND = 24
RPC_CLASS_HASH_NOT_FOUND = 28
RPC_TXN_HASH_NOT_FOUND = 29
RPC_CONTRACT_ERROR = 40
RPC_UNEXPECTED_ERROR = 63

# The TypeScript SDK's "not found" patterns (docs/wire-protocol.md, "get_session_data") plus the
# RPC spec's own wording.
_NOT_FOUND = re.compile(
    r"entry ?point.*not found|requested entrypoint|ENTRYPOINT_NOT_FOUND|invalid message selector"
    r"|contract not found|is not deployed",
    re.IGNORECASE,
)


class StarknetRpcError(ChipiSessionError):
    """A JSON-RPC error object from the node; ``rpc_code`` / ``rpc_data`` are as received."""

    rpc_code: int | None
    rpc_data: Any

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        retryable: bool | None = None,
        rpc_code: int | None = None,
        rpc_data: Any = None,
    ) -> None:
        super().__init__(code, message, retryable)
        self.rpc_code = rpc_code
        self.rpc_data = rpc_data

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (type(self), (self.code, self.message, self.retryable, self.rpc_code, self.rpc_data))

    @property
    def is_not_found(self) -> bool:
        """Contract, class or entrypoint does not exist (the TS SDK's patterns, made exact)."""
        if self.rpc_code in (RPC_CONTRACT_NOT_FOUND, RPC_INVALID_MESSAGE_SELECTOR):
            return True
        if self.rpc_code in (RPC_CONTRACT_ERROR, RPC_UNEXPECTED_ERROR):
            return bool(_NOT_FOUND.search(f"{self.message} {_flatten(self.rpc_data)}"))
        return False


def _flatten(data: Any) -> str:
    if isinstance(data, Mapping):
        return " ".join(_flatten(v) for v in data.values())
    if isinstance(data, (list, tuple)):
        return " ".join(_flatten(v) for v in data)
    return "" if data is None else str(data)


@attrs.frozen
class TransactionStatus:
    """``starknet_getTransactionStatus``: ``RECEIVED`` / ``CANDIDATE`` / ``PRE_CONFIRMED`` /
    ``ACCEPTED_ON_L2`` / ``ACCEPTED_ON_L1`` / ``REJECTED``, plus ``SUCCEEDED`` / ``REVERTED``."""

    finality_status: str
    execution_status: str | None = None
    failure_reason: str | None = None

    @property
    def is_final(self) -> bool:
        return self.finality_status in ("ACCEPTED_ON_L2", "ACCEPTED_ON_L1", "REJECTED")

    @property
    def succeeded(self) -> bool:
        return self.execution_status == "SUCCEEDED" and self.finality_status != "REJECTED"


@attrs.frozen
class ReceiptEvent:
    """An event of a transaction receipt, decoded from the node's hex strings."""

    from_address: int
    keys: tuple[int, ...]
    data: tuple[int, ...]


@attrs.frozen
class TransactionReceipt:
    """The parts of ``starknet_getTransactionReceipt`` a session client needs; ``raw`` has all."""

    transaction_hash: int
    execution_status: str
    finality_status: str
    block_number: int | None
    revert_reason: str | None
    events: tuple[ReceiptEvent, ...]
    raw: Mapping[str, Any] = attrs.field(repr=False, eq=False)

    @property
    def succeeded(self) -> bool:
        return self.execution_status == "SUCCEEDED"


def decode_transaction_status(value: Any) -> TransactionStatus | None:
    """A ``starknet_getTransactionStatus`` result, or None if it has no finality status."""
    if not isinstance(value, Mapping) or not isinstance(value.get("finality_status"), str):
        return None
    execution = value.get("execution_status")
    reason = value.get("failure_reason")
    return TransactionStatus(
        finality_status=value["finality_status"],
        execution_status=execution if isinstance(execution, str) else None,
        failure_reason=reason if isinstance(reason, str) else None,
    )


def decode_receipt(value: Mapping[str, Any], tx_hash: int) -> TransactionReceipt:
    """A ``starknet_getTransactionReceipt`` result; KeyError, TypeError or ChipiSessionError
    when it is malformed (the caller reports which read failed)."""
    events = tuple(
        ReceiptEvent(
            from_address=parse_felt(e["from_address"], "from_address"),
            keys=parse_felts(e.get("keys", ()), "keys"),
            data=parse_felts(e.get("data", ()), "data"),
        )
        for e in value.get("events", ())
    )
    block = value.get("block_number")
    revert = value.get("revert_reason")
    return TransactionReceipt(
        transaction_hash=parse_felt(value.get("transaction_hash", tx_hash), "transaction_hash"),
        execution_status=str(value["execution_status"]),
        finality_status=str(value["finality_status"]),
        block_number=block if isinstance(block, int) and not isinstance(block, bool) else None,
        revert_reason=revert if isinstance(revert, str) else None,
        events=events,
        raw=dict(value),
    )


def rpc_error(method: str, error: Mapping[str, Any]) -> StarknetRpcError:
    """A JSON-RPC error object as a ``StarknetRpcError`` with the ``ErrorCode`` it means."""
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    message = str(error.get("message", "RPC error"))[:300]
    data = error.get("data")
    detail = _flatten(data)[:300]
    text = f"RPC {method}: error {code}: {message}" + (f" ({detail})" if detail else "")
    if code in (
        RPC_CONTRACT_NOT_FOUND,
        RPC_INVALID_MESSAGE_SELECTOR,
        RPC_BLOCK_NOT_FOUND,
        RPC_CLASS_HASH_NOT_FOUND,
        RPC_TXN_HASH_NOT_FOUND,
    ):
        return StarknetRpcError(ErrorCode.INVALID_INPUT, text, False, code, data)
    if code == RPC_CONTRACT_ERROR:
        return StarknetRpcError(ErrorCode.TRANSACTION_REJECTED, text, False, code, data)
    if code in (-32700, -32600, -32602):
        return StarknetRpcError(ErrorCode.INVALID_INPUT, text, False, code, data)
    if code == -32601:
        return StarknetRpcError(ErrorCode.NOT_SUPPORTED, text, False, code, data)
    # -32603 internal, -32000..-32099 server errors, 63 unexpected error: the node's problem.
    return StarknetRpcError(ErrorCode.BACKEND_UNAVAILABLE, text, True, code, data)
