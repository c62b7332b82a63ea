"""The execute path: pre-flight, sign, send, apply, confirm (docs/architecture.md, "One
execute, through the modules", steps 3-11).

Moved out of ``engine.py`` (``_do_execute`` and its confirmation): plain coroutines handed the
session as an :class:`~chipi_session.handlers.context.ExecuteContext`. The rules are the
core's (``SessionCore.preflight``, ``reserve`` / ``release``, ``executed``) and ``policy``'s;
this module runs them in order and performs the effects: the session key and bearer token,
the journalled send (``handlers.writes`` through ``ctx.write``), the local effects of an
accepted execute, and the confirmation read (:func:`confirm_execute`, :func:`follow_revert`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio

from .. import policy
from ..backends.base import (
    ExecutionResultReader,
    FinalExecutionResults,
    has_capability,
    reads_final_results,
    require_writer,
)
from ..errors import ChipiSessionError, ErrorCode
from ..events import TransactionConfirmed, TransactionFailed, TransactionSubmitted
from ..execution_results import fit_to_calls
from ..felts import to_hex
from ..logs import get_logger
from ..session_inputs import AppliedHashLost, call_failed_error, hash_lost_error
from ..types import Call, ExecutionResult, ExecutionStatus, SessionState, coerce_calls

if TYPE_CHECKING:
    from ..types import SessionKeyData
    from .context import ExecuteContext

__all__ = ["confirm", "confirm_execute", "execute", "follow_revert", "settle_execute"]

log = get_logger(__name__)

#: An execute refused for these waits for a renewal in progress instead of failing.
RENEWABLE_CODES = frozenset({ErrorCode.SESSION_MAX_CALLS_EXCEEDED, ErrorCode.SESSION_EXPIRED})
#: Errors after which the chain, not our memory, says what the session is.
CHAIN_STATE_CODES = frozenset(
    {
        ErrorCode.SESSION_NOT_REGISTERED,
        ErrorCode.SESSION_REVOKED,
        ErrorCode.SESSION_EXPIRED,
        ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
        ErrorCode.UNKNOWN_OUTCOME,
    }
)


async def execute(ctx: ExecuteContext, calls: object, wait: bool) -> str | ExecutionResult:
    """``execute_with_session``: pre-flight, sign, send, apply; with ``wait`` the chain's
    :class:`ExecutionResult` (``CALL_FAILED`` if a call failed), else the tx hash (confirmed
    in the background where the backend can read results, in the execute itself where
    they are final at submit: :func:`_confirmed_now`)."""
    parsed = coerce_calls(calls)
    ctx.require_supported()
    session, now = await _preflight(ctx, parsed)
    ctx.policies.check(parsed, now)
    core = ctx.core
    generation = core.reserve()
    core.begin_write(session.public_key)
    lost = False
    try:
        tx = await _send(ctx, session, parsed)
    except AppliedHashLost:
        tx, lost = "", True
    except ChipiSessionError as exc:
        if generation == core.generation and exc.code in CHAIN_STATE_CODES:
            ctx.spawn(ctx.refetch_quietly())
        raise
    finally:
        core.end_write(session.public_key)  # its effect is applied below, no await
        if not core.release(generation):  # signed by a key being retired
            ctx.renewer.executes_finished(generation)
    if generation == core.generation and core.status is not None:
        _accepted(ctx, parsed, tx, lost)
    if lost:
        raise hash_lost_error("execute")
    backend = ctx.backend
    if reads_final_results(backend):
        confirmed = _confirmed_now(ctx, cast(FinalExecutionResults, backend), tx, parsed, session)
        if confirmed is not None:
            return confirmed if wait else tx
    if not wait:
        if has_capability(backend, ExecutionResultReader):
            ctx.spawn_scoped(confirm, ctx, tx, parsed, generation, session.public_key)
        return tx
    return await _wait_confirmed(ctx, tx, parsed, generation, session.public_key)


async def _preflight(ctx: ExecuteContext, parsed: tuple[Call, ...]) -> tuple[SessionKeyData, int]:
    """The contract's rules, with in-flight and in-doubt executes counted; a renewal in
    progress is waited for when it would lift the refusal. Returns the session and the time
    the rules were checked at."""
    core = ctx.core
    while True:
        session = ctx.require_session()
        if not core.renewing:
            ctx.renewer.maybe_renew_by_calls()
        renewal_done = ctx.renewer.in_progress()
        now = int(ctx.clock.now())
        try:
            denial = core.preflight(ctx.wallet.address, parsed, now, session.valid_until)
        except ChipiSessionError as exc:
            if renewal_done is not None and exc.code in RENEWABLE_CODES:
                await renewal_done.wait()  # a successor is on its way: wait for it
                continue
            raise
        if renewal_done is not None and denial in (policy.Denial.EXHAUSTED, policy.Denial.EXPIRED):
            await renewal_done.wait()
            continue
        break
    if denial is not None:
        expiry = core.expiry_for(denial)
        if expiry is not None:
            ctx.expire(expiry)
        raise policy.denial_error(denial)
    return session, now


async def _send(ctx: ExecuteContext, session: SessionKeyData, parsed: tuple[Call, ...]) -> str:
    """Sign with the session key and send, journalled (``ctx.write``)."""
    key = await ctx.keys.key_for(session)
    token = await ctx.keys.bearer_token()
    return await ctx.write(
        "execute",
        session.public_key,
        lambda on_submit: require_writer(ctx.backend, "execute transactions").execute_with_session(
            ctx.wallet,
            key,
            valid_until=session.valid_until,
            calls=parsed,
            bearer_token=token,
            on_submit=on_submit,
        ),
    )


def _accepted(ctx: ExecuteContext, parsed: tuple[Call, ...], tx: str, lost: bool) -> None:
    """The chain accepted the execute (this session's, its status known): one call used,
    the caps spent, the ``execute`` transition, expiry by calls and renewal checked."""
    core = ctx.core
    core.executed()
    ctx.policies.spent(parsed, int(ctx.clock.now()))
    if not lost:
        ctx.publish(TransactionSubmitted, action="execute", tx_hash=tx)
    if core.model.current is SessionState.ACTIVE:
        ctx.transition("execute")
        ctx.check_exhausted()
        ctx.renewer.maybe_renew_by_calls()


async def _wait_confirmed(
    ctx: ExecuteContext, tx: str, parsed: tuple[Call, ...], generation: int, public_key: int
) -> ExecutionResult:
    """``wait=True``: confirmed by a task of the session, so a caller that stops waiting (a
    timeout, a cancellation) does not stop the confirmation: its events and state follow."""
    outcome: list[tuple[ExecutionResult, ChipiSessionError | None]] = []
    done = anyio.Event()

    async def run() -> None:
        try:
            outcome.append(await confirm(ctx, tx, parsed, generation, public_key))
        finally:
            done.set()

    if not ctx.spawn_scoped(run):
        await run()
    await done.wait()
    if not outcome:  # the session closed under it
        return ExecutionResult.unknown(tx, len(parsed))
    result, error = outcome[0]
    if error is not None:
        raise error
    return result


def _confirmed_now(
    ctx: ExecuteContext,
    backend: FinalExecutionResults,
    tx: str,
    calls: tuple[Call, ...],
    session: SessionKeyData,
) -> ExecutionResult | None:
    """The confirmation of an execute whose result is final at submit, in the execute
    itself: a succeeded result is published (``TransactionConfirmed``, the same event a
    background confirmation publishes, after the same ``TransactionSubmitted`` and
    ``StateChanged``) without an await, so nothing can cancel it half-way. Anything else
    (a failed call, a revert, an unknown outcome, a read error) returns None: the caller confirms it as for any
    reader (in the background, or waited for), so its error is recorded after the action
    and its re-reads run as before."""
    try:
        result = fit_to_calls(backend.final_execution_result(tx), len(calls))
    except ChipiSessionError:
        return None
    if not result.succeeded:
        return None
    settle_execute(
        result, tx, calls, session.public_key, publish=ctx.publish, record_error=ctx.set_error
    )
    return result


async def confirm(
    ctx: ExecuteContext, tx: str, calls: tuple[Call, ...], generation: int, public_key: int
) -> tuple[ExecutionResult, ChipiSessionError | None]:
    """:func:`confirm_execute` for the session ``ctx``, as of ``generation``."""
    core = ctx.core

    async def follow(reverted: tuple[Call, ...]) -> None:
        await follow_revert(
            reverted,
            refetch=ctx.refetch_quietly,
            tracked=ctx.policies.known,
            reread_policy=ctx.get_spending_policy,
        )

    return await confirm_execute(
        ctx.backend,
        tx,
        calls,
        public_key,
        publish=ctx.publish,
        record_error=ctx.set_error,
        is_current=lambda: generation == core.generation,
        refetch=ctx.refetch_quietly,
        follow=follow,
    )


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
    if not has_capability(backend, ExecutionResultReader):
        return ExecutionResult.unknown(tx, len(calls)), None
    reader = cast(ExecutionResultReader, backend)
    try:
        read: ExecutionResult | ChipiSessionError = fit_to_calls(
            await reader.get_execution_result(tx), len(calls)
        )
    except ChipiSessionError as exc:
        read = exc
    result, error, then = settle_execute(
        read, tx, calls, public_key, publish=publish, record_error=record_error
    )
    if then is not None and is_current():
        if then == "refetch":
            await refetch()  # never executed: the chain's count did not move
        else:
            await follow(calls)
    return result, error


def settle_execute(
    read: ExecutionResult | ChipiSessionError,
    tx: str,
    calls: tuple[Call, ...],
    public_key: int,
    *,
    publish: Callable[..., None],
    record_error: Callable[[ChipiSessionError], None],
) -> tuple[ExecutionResult, ChipiSessionError | None, Literal["refetch", "follow"] | None]:
    """What the read of an execute's result (``read``: the result fitted to the calls, or
    the read's error) says, published; synchronous, shared by the background and the inline
    confirmation. Returns the result, the error the caller of ``wait=True`` gets, and what
    must follow for a session still current: ``"refetch"`` (rejected: never executed, the
    chain's count did not move) or ``"follow"`` (reverted: :func:`follow_revert`)."""
    if isinstance(read, ChipiSessionError):
        if read.code is not ErrorCode.TRANSACTION_REJECTED:
            log.warning("execute %s: its result could not be read (%s)", tx, read.code.value)
            return ExecutionResult.unknown(tx, len(calls)), None, None
        error = ChipiSessionError(read.code, read.message, retryable=False, applied=False)
        record_error(error)
        publish(
            TransactionFailed,
            action="execute",
            tx_hash=tx,
            result=None,
            error=error,
            session_public_key=to_hex(public_key),
        )
        return ExecutionResult.unknown(tx, len(calls)), error, "refetch"
    result = read
    if not result.failed:
        publish(
            TransactionConfirmed,
            action="execute",
            tx_hash=tx,
            result=result,
            session_public_key=to_hex(public_key),  # the key that signed it
        )
        return result, None, None
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
    return result, error, "follow" if result.status is ExecutionStatus.REVERTED else None


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
