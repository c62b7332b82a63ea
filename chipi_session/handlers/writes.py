"""The write path: one write sent through the backend, journalled, its lost response resolved.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"; the unknown-outcome rules:
docs/engine.md). Plain coroutines handed the journal and callbacks; :func:`journalled_write`
wires them to a session (a :class:`~.context.DoubtContext`), whose in-doubt writes are
held and settled by ``handlers.doubts``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

import anyio

from .. import logs
from ..backends.base import OnSubmit
from ..errors import ChipiSessionError, ErrorCode
from ..logs import get_logger
from ..session_inputs import AppliedHashLost
from ..types import SubmitInfo
from . import doubts

if TYPE_CHECKING:
    from ..journal import ActionJournal
    from .context import DoubtContext

__all__ = ["journalled_write", "send_write", "unknown_outcome"]

log = get_logger(__name__)

#: ``hold_cancelled(action, info, token)``: a write cancelled after it was sent.
HoldCancelled = Callable[[str, SubmitInfo, object], None]
#: ``unknown(action, info, token)``: resolve a sent write whose response never came.
Unknown = Callable[[str, SubmitInfo | None, object], Awaitable[NoReturn]]


async def send_write(
    journal: ActionJournal | None,
    action: str,
    session_public_key: int,
    send: Callable[[OnSubmit], Awaitable[str]],
    *,
    hold_cancelled: HoldCancelled,
    unknown: Unknown,
) -> str:
    """Send one write, journalled (``journal`` may be None: a standalone session).

    Raises :class:`AppliedHashLost` (through ``unknown``) if the write provably executed but
    its hash was lost (the caller applies its effect, then reports ``UNKNOWN_OUTCOME`` with
    applied=True).
    """
    token = None if journal is None else await journal.begin(action, session_public_key)
    submitted: list[SubmitInfo] = []

    async def on_submit(info: SubmitInfo) -> None:
        submitted.append(info)
        if journal is not None:
            await journal.submitted(token, info)

    try:
        tx = await send(on_submit)
        logs.note_tx_hash(tx)
    except anyio.get_cancelled_exc_class():
        if submitted:  # it may have left: held in doubt exactly like a timeout
            hold_cancelled(action, submitted[-1], token)
        elif journal is not None:
            with anyio.CancelScope(shield=True):
                await journal.finish(token)  # nothing was sent
        raise
    except ChipiSessionError as exc:
        if exc.code is not ErrorCode.UNKNOWN_OUTCOME:
            if journal is not None:
                await journal.finish(token)
            raise
        await unknown(action, submitted[-1] if submitted else None, token)
    except Exception as exc:
        if not submitted:
            if journal is not None:
                await journal.finish(token)
            raise
        # e.g. a RecursionError parsing a hostile response: the request had left
        log.warning("%s failed after it was sent: %s", action, type(exc).__name__)
        await unknown(action, submitted[-1], token)
    if journal is not None:
        with anyio.CancelScope(shield=True):  # it executed: the caller applies it next
            await journal.finish(token)
    return tx


async def unknown_outcome(
    action: str,
    info: SubmitInfo | None,
    token: object,
    *,
    journal: ActionJournal | None,
    resolve: Callable[[SubmitInfo | None], Awaitable[bool | None]],
    hold_cancelled: HoldCancelled,
    hold_in_doubt: Callable[[SubmitInfo, bool, object], None],
    refetch_soon: Callable[[], None],
) -> NoReturn:
    """A sent write whose response never came: resolve it from the chain now if it can
    be, else hold it in doubt (``hold_in_doubt(info, count, token)``). Always raises
    (:class:`AppliedHashLost` if it executed)."""
    try:
        applied = await resolve(info)
    except anyio.get_cancelled_exc_class():
        if info is not None:  # the caller gave up while we read: held like a timeout
            hold_cancelled(action, info, token)
        raise
    if applied is None:
        if info is not None:
            hold_in_doubt(info, action == "execute", token)
        refetch_soon()  # the chain may already show the effect
        raise ChipiSessionError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"{action}: the request may have executed; it is being resolved from the "
            "chain (do not resend)",
            retryable=False,
        ) from None
    if token is not None and journal is not None:
        with anyio.CancelScope(shield=True):  # decided: the caller must hear it
            await journal.finish(token)
    if applied:
        assert info is not None
        raise AppliedHashLost(info) from None
    raise ChipiSessionError(
        ErrorCode.BACKEND_UNAVAILABLE,
        f"{action}: the request did not execute and never will; safe to retry",
        retryable=True,
        applied=False,
    ) from None


async def journalled_write(
    ctx: DoubtContext,
    action: str,
    session_public_key: int,
    send: Callable[[OnSubmit], Awaitable[str]],
) -> str:
    """Send one write of ``ctx``'s session through the backend, journalled in its journal;
    a write cancelled after it left, or whose response never came and cannot be resolved
    now, is held in doubt (``handlers.doubts``) and the status re-read soon.

    Raises :class:`AppliedHashLost` if the write provably executed but its hash was lost
    (the caller applies its effect, then reports ``UNKNOWN_OUTCOME`` with applied=True).
    """

    def hold_cancelled(action: str, info: SubmitInfo, token: object) -> None:
        doubts.hold_cancelled(ctx, action, info, token)

    async def resolve(info: SubmitInfo | None) -> bool | None:
        return await doubts.resolve_outcome(ctx, info)

    async def unknown(action: str, info: SubmitInfo | None, token: object) -> NoReturn:
        await unknown_outcome(
            action,
            info,
            token,
            journal=ctx.journal,
            resolve=resolve,
            hold_cancelled=hold_cancelled,
            hold_in_doubt=lambda i, count, tok: doubts.hold_in_doubt(
                ctx, i, count=count, token=tok, mine=True
            ),
            refetch_soon=lambda: ctx.spawn(ctx.refetch_quietly()),
        )

    return await send_write(
        ctx.journal,
        action,
        session_public_key,
        send,
        hold_cancelled=hold_cancelled,
        unknown=unknown,
    )
