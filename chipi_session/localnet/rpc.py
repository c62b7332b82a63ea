"""A Starknet JSON-RPC (spec 0.8 shapes) view of a LocalChain.

Only the methods a session client needs (docs/wire-protocol.md, "Starknet JSON-RPC: the subset
we use and serve"): ``starknet_call``,
``starknet_chainId``, ``starknet_specVersion``, ``starknet_blockNumber``,
``starknet_blockHashAndNumber``, ``starknet_getBlockWithTxHashes``, ``starknet_getNonce``,
``starknet_getClassHashAt``, ``starknet_getTransactionReceipt``,
``starknet_getTransactionStatus``, ``starknet_traceTransaction`` (nested invocations with RPC
0.8's per-call ``is_reverted``, see :mod:`.trace`). Named and positional params, batches, canonical lowercase
hex. Errors follow the spec: 20 ``Contract not found``, 40 ``Contract error`` with a
``revert_error`` (an unknown entrypoint reads ``Entry point ... not found``, which the TS SDK
recognises), 24 / 29 for unknown blocks / transactions, 10 when no trace was recorded.

LocalChain keeps no history: every existing block id reads the current state.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ChipiSessionError
from ..felts import parse_felt, selector, to_hex
from ..localchain import ContractPanic, LocalChain
from ..logs import get_logger
from ..types import SessionStatus
from .trace import render_trace

__all__ = ["RpcDispatcher", "RpcFault", "SPEC_VERSION", "block_hash"]

logger = get_logger(__name__)

SPEC_VERSION = "0.8.1"
_MAX_BATCH = 256

_SEL_GET_SESSION_DATA = selector("get_session_data")
_SEL_ALLOWED_AT = selector("get_session_allowed_entrypoint_at")

_TAGS = ("latest", "pending", "pre_confirmed", "l1_accepted")


class _Fault(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


#: A JSON-RPC error answer, for method sets defined elsewhere (:mod:`.devnet`).
RpcFault = _Fault
#: Method "names" meaning: hand the raw params to the method (it binds them itself).
_RAW_PARAMS: tuple[str, ...] = ("*",)


def block_hash(number: int) -> int:
    """LocalChain has no block hashes; a stable synthetic one per block number."""
    digest = hashlib.sha256(b"chipi-localnet-block:%d" % number).digest()
    return int.from_bytes(digest, "big") & ((1 << 250) - 1)


def _felt(value: Any, what: str) -> int:
    try:
        return parse_felt(value, what)
    except ChipiSessionError:
        raise _Fault(-32602, f"Invalid params: {what} is not a felt") from None


class RpcDispatcher:
    """Answers JSON-RPC payloads (one object or a batch) from ``chain``.

    Call it with the chain lock held. ``legacy_session_layout`` makes ``get_session_data``
    answer the layout the official SDKs (TS <= 14.13) wrongly expect,
    ``[is_active, valid_until, remaining_calls, len, ...selectors]``, so that their session
    hooks "work" against localnet; off by default because the real contract never does that.
    """

    def __init__(self, chain: LocalChain, *, legacy_session_layout: bool = False) -> None:
        self._chain = chain
        self._legacy = legacy_session_layout
        self._methods: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
            "starknet_specVersion": (self._spec_version, ()),
            "starknet_chainId": (self._chain_id, ()),
            "starknet_blockNumber": (self._block_number, ()),
            "starknet_blockHashAndNumber": (self._block_hash_and_number, ()),
            "starknet_getBlockWithTxHashes": (self._get_block, ("block_id",)),
            "starknet_call": (self._call, ("request", "block_id")),
            "starknet_getNonce": (self._get_nonce, ("block_id", "contract_address")),
            "starknet_getClassHashAt": (self._get_class_hash_at, ("block_id", "contract_address")),
            "starknet_getTransactionReceipt": (self._get_receipt, ("transaction_hash",)),
            "starknet_getTransactionStatus": (self._get_status, ("transaction_hash",)),
            "starknet_traceTransaction": (self._trace, ("transaction_hash",)),
        }
        from .devnet import DevnetMethods  # imports this module

        #: starknet-devnet's time / mint / dump / load / restart methods (see :mod:`.devnet`)
        self.devnet = DevnetMethods(chain)
        for name in self.devnet.methods:
            self._methods[name] = (functools.partial(self.devnet.call, name), _RAW_PARAMS)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._methods)

    def handle(self, payload: Any) -> Any:
        """The response body for a parsed request body (None for a batch of notifications)."""
        self.devnet.ensure_genesis()
        if isinstance(payload, list):
            if not payload:
                return _error_response(None, _Fault(-32600, "Invalid Request"))
            if len(payload) > _MAX_BATCH:
                return _error_response(None, _Fault(-32600, f"Batch larger than {_MAX_BATCH}"))
            out = [r for r in (self._one(item) for item in payload) if r is not None]
            return out or None
        return self._one(payload)

    def _one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, Mapping) or request.get("jsonrpc") != "2.0":
            return _error_response(None, _Fault(-32600, "Invalid Request"))
        rid = request.get("id")
        is_notification = "id" not in request
        method = request.get("method")
        try:
            if not isinstance(method, str) or method not in self._methods:
                raise _Fault(-32601, "Method not found")
            fn, names = self._methods[method]
            params = request.get("params", [])
            args = [params] if names is _RAW_PARAMS else _bind(params, names)
            result = fn(*args)
        except _Fault as fault:
            return None if is_notification else _error_response(rid, fault)
        except Exception:  # a bug here must not kill the server; log it, answer -32603
            logger.exception("RPC %s failed", method)
            return (
                None if is_notification else _error_response(rid, _Fault(-32603, "Internal error"))
            )
        return None if is_notification else {"jsonrpc": "2.0", "id": rid, "result": result}

    # -- helpers --------------------------------------------------------------------------

    def _check_block(self, block_id: Any) -> int:
        """The block number a block id names (the current state is what is read)."""
        current = int(self._chain.block_number)
        if isinstance(block_id, str) and block_id in _TAGS:
            return current
        if isinstance(block_id, Mapping):
            if "block_number" in block_id:
                n = block_id["block_number"]
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise _Fault(-32602, "Invalid params: block_number")
                if n > current:
                    raise _Fault(24, "Block not found")
                return n
            if "block_hash" in block_id:
                h = _felt(block_id["block_hash"], "block_hash")
                for n in range(current, -1, -1):
                    if block_hash(n) == h:
                        return n
                raise _Fault(24, "Block not found")
        raise _Fault(-32602, "Invalid params: block_id")

    # -- methods --------------------------------------------------------------------------

    def _spec_version(self) -> str:
        return SPEC_VERSION

    def _chain_id(self) -> str:
        return to_hex(self._chain.chain_id)

    def _block_number(self) -> int:
        return int(self._chain.block_number)

    def _block_hash_and_number(self) -> dict[str, Any]:
        n = int(self._chain.block_number)
        return {"block_hash": to_hex(block_hash(n)), "block_number": n}

    def _get_block(self, block_id: Any) -> dict[str, Any]:
        n = self._check_block(block_id)
        zero_price = {"price_in_fri": "0x0", "price_in_wei": "0x0"}
        return {
            "status": "ACCEPTED_ON_L2",
            "block_hash": to_hex(block_hash(n)),
            "parent_hash": to_hex(block_hash(n - 1) if n > 0 else 0),
            "block_number": n,
            "new_root": "0x0",
            "timestamp": int(self._chain.now()),
            "sequencer_address": "0x0",
            "l1_gas_price": zero_price,
            "l2_gas_price": zero_price,
            "l1_data_gas_price": zero_price,
            "l1_da_mode": "BLOB",
            "starknet_version": "0.13.5",
            "transactions": [],
        }

    def _call(self, request: Any, block_id: Any) -> list[str]:
        self._check_block(block_id)
        if not isinstance(request, Mapping):
            raise _Fault(-32602, "Invalid params: request")
        address = _felt(request.get("contract_address"), "contract_address")
        sel = _felt(request.get("entry_point_selector"), "entry_point_selector")
        raw = request.get("calldata", [])
        if not isinstance(raw, list):
            raise _Fault(-32602, "Invalid params: calldata")
        calldata = [_felt(v, "calldata") for v in raw]
        try:
            if self._legacy and sel == _SEL_GET_SESSION_DATA and len(calldata) == 1:
                result = self._legacy_session_data(address, calldata[0])
            else:
                result = self._chain.view(address, sel, calldata)
        except ContractPanic as panic:
            raise self._panic_fault(panic, address, sel) from None
        return [to_hex(x) for x in result]

    def _panic_fault(self, panic: ContractPanic, address: int, sel: int) -> _Fault:
        if panic.message == "Contract not found":
            return _Fault(20, "Contract not found")
        if panic.message == "ENTRYPOINT_NOT_FOUND":
            reason = f"Entry point EntryPointSelector({to_hex(sel)}) not found in contract."
        else:
            reason = panic.message
        return _Fault(
            40,
            "Contract error",
            {
                "revert_error": {
                    "contract_address": to_hex(address),
                    "class_hash": to_hex(self._chain.class_hash_at(address) or 0),
                    "selector": to_hex(sel),
                    "error": reason,
                }
            },
        )

    def _legacy_session_data(self, wallet: int, key: int) -> list[int]:
        valid_until, max_calls, calls_used, length = self._chain.view(
            wallet, _SEL_GET_SESSION_DATA, [key]
        )
        entries = [self._chain.view(wallet, _SEL_ALLOWED_AT, [key, i])[0] for i in range(length)]
        status = SessionStatus(valid_until, max_calls, calls_used)
        active = status.is_active(int(self._chain.now()))
        return [1 if active else 0, valid_until, status.remaining_calls, length, *entries]

    def _get_nonce(self, block_id: Any, contract_address: Any) -> str:
        self._check_block(block_id)
        address = _felt(contract_address, "contract_address")
        if self._chain.class_hash_at(address) is None:
            raise _Fault(20, "Contract not found")
        if not self._chain.is_account(address):
            return "0x0"  # a deployed non-account (e.g. a token) has nonce 0, as on a node
        return to_hex(self._chain.get_nonce(address))

    def _get_class_hash_at(self, block_id: Any, contract_address: Any) -> str:
        self._check_block(block_id)
        address = _felt(contract_address, "contract_address")
        found = self._chain.class_hash_at(address)
        if found is None:
            raise _Fault(20, "Contract not found")
        return to_hex(found)

    def _tx_hash(self, value: Any) -> str:
        return to_hex(_felt(value, "transaction_hash"))

    def _get_receipt(self, transaction_hash: Any) -> dict[str, Any]:
        tx = self._tx_hash(transaction_hash)
        receipt = self._chain.get_receipt(tx)
        if receipt is None:
            raise _Fault(29, "Transaction hash not found")
        out: dict[str, Any] = {
            "type": "INVOKE",
            "transaction_hash": tx,
            "actual_fee": {"amount": "0x0", "unit": "FRI"},
            "execution_status": receipt.status,
            "finality_status": "ACCEPTED_ON_L2",
            "block_hash": to_hex(block_hash(receipt.block_number)),
            "block_number": receipt.block_number,
            "messages_sent": [],
            "events": [
                {
                    "from_address": to_hex(e.from_address),
                    "keys": [to_hex(k) for k in e.keys],
                    "data": [to_hex(d) for d in e.data],
                }
                for e in receipt.events
            ],
            "execution_resources": {"l1_gas": 0, "l1_data_gas": 0, "l2_gas": 0},
        }
        if receipt.revert_reason is not None:
            out["revert_reason"] = receipt.revert_reason
        return out

    def _get_status(self, transaction_hash: Any) -> dict[str, Any]:
        tx = self._tx_hash(transaction_hash)
        receipt = self._chain.get_receipt(tx)
        if receipt is None:
            raise _Fault(29, "Transaction hash not found")
        out: dict[str, Any] = {
            "finality_status": "ACCEPTED_ON_L2",
            "execution_status": receipt.status,
        }
        if receipt.revert_reason is not None:
            out["failure_reason"] = receipt.revert_reason
        return out

    def _trace(self, transaction_hash: Any) -> dict[str, Any]:
        tx = self._tx_hash(transaction_hash)
        receipt = self._chain.get_receipt(tx)
        if receipt is None:
            raise _Fault(29, "Transaction hash not found")
        trace = render_trace(receipt, self._chain.relayer)
        if trace is None:
            raise _Fault(10, "No trace available for transaction")
        return trace


def _bind(params: Any, names: Sequence[str]) -> list[Any]:
    if isinstance(params, Mapping):
        unknown = set(params) - set(names)
        if unknown:
            raise _Fault(-32602, f"Invalid params: unexpected {sorted(unknown)[0]}")
        missing = [n for n in names if n not in params]
        if missing:
            raise _Fault(-32602, f"Invalid params: missing {missing[0]}")
        return [params[n] for n in names]
    if isinstance(params, list):
        if len(params) != len(names):
            raise _Fault(-32602, f"Invalid params: expected {len(names)} positional params")
        return list(params)
    raise _Fault(-32602, "Invalid params")


def _error_response(rid: Any, fault: _Fault) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": fault.error()}
