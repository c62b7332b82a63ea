"""Confirming an execute: what the chain did with a sent transaction, published and followed.

Moved out of ``engine.py`` (docs/architecture.md, step "Confirmation"): a plain function
that receives everything it touches — the backend, the publish callback, the facade's error
slot, "is this still the session's generation?", and the re-reads a revert calls for — so
the rules can be read (and tested) without the facade.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from .. import policy
from ..backends.base import ExecutionResultReader
from ..errors import ChipiSessionError, ErrorCode
from ..events import TransactionConfirmed, TransactionFailed
from ..execution_results import fit_to_calls
from ..felts import to_hex
from ..logs import get_logger
from ..session_inputs import call_failed_error
from ..types import Call, ExecutionResult, ExecutionStatus

__all__ = ["confirm_execute", "follow_revert"]

log = get_logger(__name__)

async def confirm_execute(
    backend: object,
    tx: str,
    calls: tuple[Call, ...],
    public_key: int,
    *,
    publish: Callable[..., None],
    record_error: Callable[[ChipiSessionError], None],
    is_current: Callable[[], bool],
    refetch: Callable[[], Awaitable[None]],
    follow: Callable[[tuple[Call, ...]], Awaitable[None]],
) -> tuple[ExecutionResult, ChipiSessionError | None]:
    """Read what the chain did with an execute, publish it, and follow it: a failed call
    already consumed its call of the budget (counted when it was accepted); a revert is
    re-read from the chain (the SNIP-9 path consumes nothing, a direct INVOKE one call).

    ``publish(event_class, **fields)`` publishes; ``is_current()`` is asked after the read,
    so a session that moved on meanwhile is not re-read on the old one's behalf."""
    if not isinstance(backend, ExecutionResultReader):
        return ExecutionResult.unknown(tx, len(calls)), None
    try:
        result = fit_to_calls(await backend.get_execution_result(tx), len(calls))
    except ChipiSessionError as exc:
        if exc.code is not ErrorCode.TRANSACTION_REJECTED:
            log.warning("execute %s: its result could not be read (%s)", tx, exc.code.value)
            return ExecutionResult.unknown(tx, len(calls)), None
        error = ChipiSessionError(exc.code, exc.message, retryable=False, applied=False)
        record_error(error)
        publish(
            TransactionFailed,
            action="execute",
            tx_hash=tx,
            result=None,
            error=error,
            session_public_key=to_hex(public_key),
        )
        if is_current():
            await refetch()  # never executed: the chain's count did not move
        return ExecutionResult.unknown(tx, len(calls)), error
    if not result.failed:
        publish(
            TransactionConfirmed,
            action="execute",
            tx_hash=tx,
            result=result,
            session_public_key=to_hex(public_key),  # the key that signed it
        )
        return result, None
    error = call_failed_error(result)
    record_error(error)
    publish(
        TransactionFailed,
        action="execute",
        tx_hash=tx,
        result=result,
        error=error,
        session_public_key=to_hex(public_key),
    )
    if result.status is ExecutionStatus.REVERTED and is_current():
        await follow(calls)
    return result, error


async def follow_revert(
    calls: tuple[Call, ...],
    *,
    refetch: Callable[[], Awaitable[None]],
    tracked: Collection[int],
    reread_policy: Callable[[int], Awaitable[Any]],
) -> None:
    """A reverted execute undid its spending: re-read the session and the policies it
    touched (``tracked``: the tokens whose caps we hold), so the budget and the caps are the
    chain's again."""
    await refetch()
    for token in {c.to for c in calls if c.selector in policy.SPENDING_SELECTORS}:
        if token in tracked:
            try:
                await reread_policy(token)
            except ChipiSessionError:
                pass
