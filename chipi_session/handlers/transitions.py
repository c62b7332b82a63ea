"""The effects of a state change: firing the core's lifecycle, publishing what changed,
re-arming the timers; expiring; reading the status from the chain and applying it.

Moved out of ``engine.py`` (docs/architecture.md, "The engine's parts"; the rules:
docs/engine.md, "Transitions"). Every decision is the core's (``SessionCore.transition``,
``can``, ``exhausted``, ``reconcile``: pure, over the ``lifecycle`` table); these functions
run what the answer asks for — a ``StateChanged`` or ``StatusRefreshed`` event, the record
persisted when the core learned the key was registered, the expiry and renewal timers
re-armed, auto-renewal's call threshold checked, in-doubt executes re-checked — over a
:class:`~.context.TransitionContext` (the facade).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import StateChanged, StatusRefreshed
from ..felts import to_hex
from ..logs import get_logger
from ..types import ExpiryReason, SessionState, SessionStatus
from . import doubts
from .status import read_status

if TYPE_CHECKING:
    from .context import TransitionContext

__all__ = [
    "STALE_REREADS",
    "apply_status",
    "check_exhausted",
    "expire",
    "reconcile",
    "refetch",
    "transition",
]

#: state changes keep the engine's logger, as before the move (docs/observability.md)
log = get_logger("chipi_session.engine")

#: How many times an explicit status read is repeated when a local write made it stale.
STALE_REREADS = 3


def transition(
    ctx: TransitionContext, trigger: str, *, reason: str | None = None, **kwargs: Any
) -> None:
    """Fire ``trigger`` on the core (refused: ``INVALID_INPUT``, the caller checks first),
    publish ``StateChanged`` if something visible changed, re-arm the timers."""
    change = ctx.core.transition(trigger, reason=reason, **kwargs)
    if change is not None:
        session = ctx.session
        log.debug(
            "session %s: %s -> %s (%s)",
            None if session is None else to_hex(session.public_key),
            change.previous,
            change.current,
            trigger,
        )
        ctx.publish(
            StateChanged,
            previous=change.previous,
            current=change.current,
            reason=change.reason,
        )
    ctx.reschedule()


def expire(ctx: TransitionContext, reason: ExpiryReason) -> None:
    """Expire the session for ``reason``, if the table allows it from its state."""
    if ctx.core.can("expire"):
        transition(ctx, "expire", reason=reason.value)


def check_exhausted(ctx: TransitionContext) -> None:
    """Expire the session (reason ``calls``) if its budget is used up."""
    if ctx.core.exhausted():
        expire(ctx, ExpiryReason.CALLS)


def reconcile(ctx: TransitionContext, status: SessionStatus) -> None:
    """Bring the local state in line with ``status`` (the core's ``reconcile``): persist
    what it learned, fire its target, check the renewal threshold of an active session."""
    session = ctx.session
    if session is None:
        return
    learned, found = ctx.core.reconcile(status, int(ctx.clock.now()), session.valid_until)
    if learned:
        ctx.persist()
    if found is None:
        return
    target, why = found
    transition(ctx, "reconcile", target=target, reason=why)
    if target is SessionState.ACTIVE:
        ctx.renewer.maybe_renew_by_calls()


def apply_status(ctx: TransitionContext, status: SessionStatus) -> None:
    """Apply a fresh status: publish ``StatusRefreshed``, reconcile the state, re-check the
    in-doubt writes in the background."""
    ctx.core.apply_status(status)
    ctx.publish(StatusRefreshed, status=status)
    reconcile(ctx, status)
    if ctx.core.in_doubt:
        ctx.spawn(doubts.recheck(ctx, ctx.core.generation))


async def refetch(ctx: TransitionContext, attempts: int = STALE_REREADS) -> SessionStatus | None:
    """Read the status and apply it (:func:`apply_status`); a read made stale by a local
    write is re-read (up to ``attempts`` reads; a background refetch reads once and leaves it
    to the next). None without a local session."""
    session = ctx.session
    if session is None:
        return None
    ctx.require_supported()
    return await read_status(
        ctx.backend,
        ctx.wallet.address,
        session,
        core=ctx.core,
        current=lambda: ctx.session,
        apply=lambda status: apply_status(ctx, status),
        attempts=attempts,
    )
