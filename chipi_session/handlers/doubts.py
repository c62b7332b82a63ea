"""In-doubt writes: holding a write whose outcome is unknown, and settling it from the chain.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"; the rules: docs/engine.md,
"In-doubt writes"). A write that was sent but whose response never came (a timeout, a lost
connection, the caller's cancellation) may still execute until its SNIP-9 window closes
(``execute_before``). The core counts an in-doubt execute against the budget until the chain
decides it (``SessionCore.hold`` / ``settle``); this module runs the effects around those
rules: the timer at the window's end, the nonce read that decides it (``outcome``), the
journal entry finished once it is decided, the status re-read that follows.

``generation`` is the session's generation when the write was sent: a decision about an
older key's write (another generation, or ``-1`` for a write of a replaced key of a hub's
slot) settles the count but never changes the current session's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends.base import NonceReader
from ..errors import ChipiSessionError, ErrorCode
from ..outcome import resolve_outcome as _resolve_from_chain
from .status import recheck_doubts

if TYPE_CHECKING:
    from ..types import SubmitInfo
    from .context import DoubtContext

__all__ = ["hold_cancelled", "hold_in_doubt", "learn", "recheck", "resolve_outcome", "settle"]

#: the log action of a settling task (docs/observability.md, "Logging")
SETTLE = "settle_doubt"


async def resolve_outcome(ctx: DoubtContext, info: SubmitInfo | None) -> bool | None:
    """Did the write execute? True: executed; False: never will; None: cannot tell yet
    (no nonce to read, a backend that cannot read nonces, or a failed read)."""
    backend = ctx.backend
    if info is None or not isinstance(backend, NonceReader):
        return None
    try:
        resolution = await _resolve_from_chain(backend, info, clock=ctx.clock)
    except ChipiSessionError:
        return None
    return resolution.applied


def hold_in_doubt(
    ctx: DoubtContext,
    info: SubmitInfo,
    *,
    count: bool = True,
    token: object = None,
    mine: bool = True,
) -> None:
    """Re-check an unresolved write once its window closes; an execute (``count``) is
    counted against the budget until the chain decides it. ``token`` is its journal
    entry, finished once the outcome is known; ``mine=False`` (a write of an older key of
    the hub's slot) may not change this session's state."""
    if count:
        ctx.core.hold(info)
    generation = ctx.core.generation if mine else -1
    timers = ctx.timers
    if timers is None:
        return  # closing: the journal entry stays and the next open resolves it
    timers.schedule(
        float(info.execute_before),
        lambda: ctx.spawn(settle(ctx, info, generation, token), SETTLE),
    )


def hold_cancelled(ctx: DoubtContext, action: str, info: SubmitInfo, token: object) -> None:
    """A write cancelled after it was sent (the caller's timeout, a closing session):
    counted and resolved like a timeout. Synchronous, so cancellation cannot cut it."""
    hold_in_doubt(ctx, info, count=action == "execute", token=token)
    if ctx.closed:
        return  # the journal entry stays; the next open resolves it
    ctx.record_failure(
        action,
        ChipiSessionError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"{action} was cancelled after it was sent: it may have executed; it is "
            "being resolved from the chain (do not resend)",
            retryable=False,
        ),
    )
    if action == "execute":
        ctx.spawn(recheck(ctx, ctx.core.generation))
    else:
        ctx.spawn(ctx.refetch_quietly())


def learn(ctx: DoubtContext, info: SubmitInfo, applied: bool | None, generation: int) -> None:
    """A register / revoke of this session that turns out to have executed means the
    chain has seen the session: a later 0 reads as revoked, not never-registered."""
    if (
        applied
        and info.action in ("register", "revoke")
        and generation == ctx.core.generation
        and ctx.core.learn_registered()
    ):
        ctx.persist()


async def settle(ctx: DoubtContext, info: SubmitInfo, generation: int, token: object) -> None:
    """The write's window has closed: decide it from the chain (re-checked every
    ``status_interval`` while the chain cannot tell), settle its count, finish its journal
    entry and re-read the status if it was this session's."""
    applied = await resolve_outcome(ctx, info)
    if applied is None:
        timers = ctx.timers
        if timers is not None:
            timers.schedule(
                ctx.clock.now() + ctx.status_interval,
                lambda: ctx.spawn(settle(ctx, info, generation, token), SETTLE),
            )
        return
    learn(ctx, info, applied, generation)
    ctx.core.settle(info, applied)
    journal = ctx.journal
    if token is not None and journal is not None:
        await journal.finish(token)
    if generation == ctx.core.generation:
        await ctx.refetch_quietly()


async def recheck(ctx: DoubtContext, generation: int) -> None:
    """Resolve in-doubt executes early when their nonces can be read
    (``handlers.status.recheck_doubts``, with this module's resolution and learning)."""

    async def resolve(info: SubmitInfo) -> bool | None:
        return await resolve_outcome(ctx, info)

    def learned(info: SubmitInfo, applied: bool | None, gen: int) -> None:
        learn(ctx, info, applied, gen)

    await recheck_doubts(
        ctx.core, generation, resolve=resolve, learn=learned, refetch=ctx.refetch_quietly
    )
