"""Transaction reads over Starknet JSON-RPC: status, receipt, confirmation, execution results.

The transaction half of :class:`~chipi_session.backends.starknet_rpc.StarknetRpcBackend` (which
adds the session-state reads). What an execute's confirmation costs (docs/execution-results.md):

* the receipt and the trace are read together in **one JSON-RPC batch** (one HTTP round
  trip). The receipt carries the finality and execution status, so a transaction that is
  already accepted — on localnet, or by the time a background confirmation runs — needs no
  ``starknet_getTransactionStatus`` at all;
* while the receipt is missing or not final yet, only the (cheap) status is polled every
  ``confirm_poll_interval``; the batch is read again once the status says accepted;
* the trace is needed for truthfulness, not decoration: a call that panicked inside a multicall
  that succeeded leaves a SUCCEEDED receipt, and only the trace's ``is_reverted`` says so. A
  REVERTED receipt decides alone (the trace answer in the batch is then ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import ChipiSessionError, ErrorCode
from ..execution_results import result_from_rpc
from ..felts import parse_felt, to_hex
from ..http import HttpClient, Timeouts
from ..logs import get_logger
from ..types import ExecutedEvent, ExecutionResult
from .jsonrpc import JsonRpcClient
from .rpc_wire import (
    RPC_TXN_HASH_NOT_FOUND,
    StarknetRpcError,
    TransactionReceipt,
    TransactionStatus,
    decode_receipt,
    decode_transaction_status,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = ["TransactionReads", "FINALITY_ORDER"]

logger = get_logger(__name__)

#: Finality statuses in order (RPC 0.9 adds CANDIDATE / PRE_CONFIRMED before L2 acceptance).
FINALITY_ORDER = {
    "RECEIVED": 1,
    "CANDIDATE": 2,
    "PRE_CONFIRMED": 3,
    "ACCEPTED_ON_L2": 4,
    "ACCEPTED_ON_L1": 5,
}


class TransactionReads(JsonRpcClient):
    """Transaction status, receipts, confirmation and execution results over one RPC URL.

    ``confirm_finality`` is the status at which a transaction counts as accepted;
    ``confirm_timeout`` / ``confirm_poll_interval`` bound and pace the wait for it.
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        timeout: Timeouts | float | None = None,
        retries: int = 2,
        confirm_finality: str = "ACCEPTED_ON_L2",
        confirm_timeout: float = 180.0,
        confirm_poll_interval: float = 1.0,
        http: HttpClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if confirm_finality not in FINALITY_ORDER:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"confirm_finality must be one of {sorted(FINALITY_ORDER)}",
            )
        super().__init__(rpc_url, timeout=timeout, retries=retries, http=http, transport=transport)
        self._confirm_finality = confirm_finality
        self._accepted_rank = FINALITY_ORDER[confirm_finality]
        self._confirm_timeout = confirm_timeout
        self._confirm_interval = confirm_poll_interval
        self._batch_refused = False  # the node answered a batch with an error: read one by one

    async def get_transaction_status(self, tx_hash: int | str) -> TransactionStatus | None:
        """The status, or None if the node does not know the hash (yet)."""
        try:
            value = await self.request(
                "starknet_getTransactionStatus",
                {"transaction_hash": to_hex(parse_felt(tx_hash, "tx_hash"))},
            )
        except StarknetRpcError as exc:
            if exc.rpc_code == RPC_TXN_HASH_NOT_FOUND:
                return None
            raise
        status = decode_transaction_status(value)
        if status is None:
            raise self._bad_response("starknet_getTransactionStatus", "no finality_status")
        return status

    async def get_transaction_receipt(self, tx_hash: int | str) -> TransactionReceipt | None:
        """The receipt, or None if the node does not know the hash (yet)."""
        h = parse_felt(tx_hash, "tx_hash")
        try:
            value = await self.request(
                "starknet_getTransactionReceipt", {"transaction_hash": to_hex(h)}
            )
        except StarknetRpcError as exc:
            if exc.rpc_code == RPC_TXN_HASH_NOT_FOUND:
                return None
            raise
        return self._receipt(value, h)

    def _receipt(self, value: Any, tx_hash: int) -> TransactionReceipt:
        if not isinstance(value, Mapping):
            raise self._bad_response("starknet_getTransactionReceipt", "not an object")
        try:
            return decode_receipt(value, tx_hash)
        except (KeyError, TypeError, ChipiSessionError):
            raise self._bad_response(
                "starknet_getTransactionReceipt", "a malformed receipt"
            ) from None

    async def wait_for_transaction(
        self, tx_hash: int | str, *, timeout: float = 120.0, poll_interval: float = 2.0
    ) -> TransactionStatus:
        """Poll until the transaction is final (accepted or rejected).

        Raises ``BACKEND_UNAVAILABLE`` (retryable) if it is not final within ``timeout``.
        """
        last, done = await self._poll_status(
            tx_hash, timeout, poll_interval, lambda status: status.is_final
        )
        if done and last is not None:
            return last
        raise ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE,
            f"transaction {to_hex(parse_felt(tx_hash, 'tx_hash'))} not final after {timeout}s "
            f"(last status: {last.finality_status if last else 'unknown'})",
            retryable=True,
        )

    async def confirm_transaction(
        self,
        tx_hash: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> None:
        """TransactionConfirmer: wait until ``tx_hash`` is accepted (``confirm_finality``).

        Raises ``TRANSACTION_REJECTED`` if it reverted or was rejected, and
        ``UNKNOWN_OUTCOME`` if it is not settled within ``timeout``.
        """
        status = await self._settled(tx_hash, timeout, poll_interval)
        if status.execution_status == "REVERTED":
            reason = status.failure_reason or "no reason given"
            raise ChipiSessionError(
                ErrorCode.TRANSACTION_REJECTED, f"transaction {tx_hash} REVERTED: {reason[:300]}"
            )

    async def get_execution_result(
        self,
        tx_hash: str,
        *,
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> ExecutionResult:
        """ExecutionResultReader: what the chain did with ``tx_hash`` (docs/execution-results.md).

        Reads the receipt and ``starknet_traceTransaction`` in one batch; if the receipt is not
        there or not accepted yet, polls the status until it is accepted (or reverted), then
        reads the batch again. A node without the trace API (or without RPC 0.8's
        ``is_reverted``) gives per-call outcomes ``None`` and status ``UNKNOWN`` unless the
        receipt says REVERTED. Raises ``TRANSACTION_REJECTED`` if the transaction was rejected
        (never executed) and ``UNKNOWN_OUTCOME`` if it is not settled within ``timeout``.
        """
        h = parse_felt(tx_hash, "tx_hash")
        try:
            done = await self._receipt_and_trace(h)
        except ChipiSessionError as exc:
            if not exc.retryable:
                raise
            done = None  # a node hiccup: the status poll below retries within the deadline
        if done is not None:
            return done
        await self._settled(tx_hash, timeout, poll_interval)
        done = await self._receipt_and_trace(h)
        if done is None:
            raise ChipiSessionError(
                ErrorCode.UNKNOWN_OUTCOME, f"transaction {tx_hash}: the node lost its receipt"
            )
        return done

    async def _receipt_and_trace(self, tx_hash: int) -> ExecutionResult | None:
        """The result if the receipt is there and settled (accepted, or reverted), else None."""
        params = {"transaction_hash": to_hex(tx_hash)}
        if self._batch_refused:
            receipt_answer, trace_answer = await self._one_by_one(params)
        else:
            try:
                receipt_answer, trace_answer = await self.batch_items(
                    [
                        ("starknet_getTransactionReceipt", params),
                        ("starknet_traceTransaction", params),
                    ]
                )
            except ChipiSessionError as exc:  # the whole batch refused (no batch support?)
                if exc.retryable or exc.code in (ErrorCode.UNAUTHORIZED, ErrorCode.CLOSED):
                    raise
                logger.debug("%s refused a JSON-RPC batch (%s)", self._origin, exc.code.value)
                self._batch_refused = True
                receipt_answer, trace_answer = await self._one_by_one(params)
        if isinstance(receipt_answer, StarknetRpcError):
            if receipt_answer.rpc_code == RPC_TXN_HASH_NOT_FOUND:
                return None
            raise receipt_answer
        receipt = self._receipt(receipt_answer, tx_hash)
        reverted = receipt.execution_status == "REVERTED"
        if not reverted and FINALITY_ORDER.get(receipt.finality_status, 0) < self._accepted_rank:
            return None
        trace = None
        if not reverted:
            if isinstance(trace_answer, StarknetRpcError):
                logger.debug("no trace for %s: %s", to_hex(tx_hash), trace_answer.code.value)
            else:
                trace = trace_answer
        return result_from_rpc(
            to_hex(receipt.transaction_hash),
            reverted=reverted,
            revert_reason=receipt.revert_reason,
            events=(ExecutedEvent(e.from_address, e.keys, e.data) for e in receipt.events),
            block_number=receipt.block_number,
            trace=trace,
        )

    async def _one_by_one(self, params: Mapping[str, Any]) -> tuple[Any, Any]:
        """Receipt then trace as two requests (a node that refuses batches); the trace only
        when the receipt says the transaction succeeded."""
        answers: list[Any] = []
        for method in ("starknet_getTransactionReceipt", "starknet_traceTransaction"):
            try:
                answer: Any = await self.request(method, params)
            except StarknetRpcError as exc:
                answer = exc
            answers.append(answer)
            if isinstance(answer, StarknetRpcError) or (
                isinstance(answer, Mapping) and answer.get("execution_status") != "SUCCEEDED"
            ):
                answers.append(None)
                break
        return answers[0], answers[1]

    async def _poll_status(
        self,
        tx_hash: int | str,
        wait: float,
        interval: float,
        done: Callable[[TransactionStatus], bool],
    ) -> tuple[TransactionStatus | None, bool]:
        """Read the status every ``interval`` s until ``done(status)`` holds (it may raise)
        or ``wait`` s pass; a retryable read error is read again. Returns the last status
        read and whether ``done`` held."""
        last: TransactionStatus | None = None
        with anyio.move_on_after(wait):
            while True:
                try:
                    last = await self.get_transaction_status(tx_hash)
                except ChipiSessionError as exc:
                    if not exc.retryable:
                        raise
                if last is not None and done(last):
                    return last, True
                await anyio.sleep(interval)
        return last, False

    async def _settled(
        self, tx_hash: str, timeout: float | None, poll_interval: float | None
    ) -> TransactionStatus:
        """Poll until the transaction is accepted (``confirm_finality``) or reverted."""
        wait = self._confirm_timeout if timeout is None else timeout
        interval = self._confirm_interval if poll_interval is None else poll_interval

        def settled(status: TransactionStatus) -> bool:
            if status.finality_status == "REJECTED":
                reason = status.failure_reason or "no reason given"
                raise ChipiSessionError(
                    ErrorCode.TRANSACTION_REJECTED,
                    f"transaction {tx_hash} REJECTED: {reason[:300]}",
                    applied=False,
                )
            return (
                status.execution_status == "REVERTED"
                or FINALITY_ORDER.get(status.finality_status, 0) >= self._accepted_rank
            )

        last, done = await self._poll_status(tx_hash, wait, interval, settled)
        if done and last is not None:
            return last
        raise ChipiSessionError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"transaction {tx_hash} not confirmed within {wait}s "
            f"(last status: {last.finality_status if last else 'unknown to the node'})",
            retryable=False,
        )
