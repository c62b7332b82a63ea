"""Resuming a renewal a previous run left unfinished (``hub.open``; docs/engine.md,
"Auto-renewal").

A store keeps what a crash or a close cut short: the keys still to be retired and a successor
on record but not switched to. Kept apart from ``handlers.renewal`` (which it drives through
:class:`~chipi_session.handlers.renewal.Renewer`'s public methods) so each module stays small.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ChipiSessionError
from ..events import SessionRenewed
from ..felts import to_hex
from ..logs import get_logger

if TYPE_CHECKING:
    from ..types import SessionKeyData, SubmitInfo
    from .context import RenewalContext
    from .renewal import Renewer

__all__ = ["resume"]

log = get_logger("chipi_session.handlers.renewal")


async def resume(
    ctx: RenewalContext,
    renewer: Renewer,
    successor: SessionKeyData | None,
    retiring: Iterable[int],
    in_doubt: SubmitInfo | None = None,
) -> None:
    """Revoke replaced keys whose retirement was interrupted; adopt a persisted successor if
    the chain has it registered, else drop it (kept on record while its register is still in
    doubt: decided once that register's window closes)."""
    core = ctx.core
    for public_key in retiring:
        renewer.retire_later(public_key, None)
    current = ctx.session
    if successor is None:
        return
    if current is not None and current.public_key == successor.public_key:
        ctx.persist()  # the switch was saved; only the record's flag was not
        return
    if current is None:  # the slot was cleared meanwhile: an orphan, never adopted
        renewer.retire_later(successor.public_key, None)
        ctx.persist()
        return
    core.successor_on_record(successor)
    if in_doubt is not None:  # decided once its register's window closes; on record
        timers = ctx.timers
        if timers is not None:
            timers.schedule(
                float(in_doubt.execute_before),
                lambda: ctx.spawn(renewer.resume(successor, ()), "renew"),
            )
        return
    try:
        status = await ctx.backend.get_session_status(ctx.wallet.address, successor.public_key)
    except ChipiSessionError as exc:
        log.warning("renewal left by a previous run stays pending: %s", exc.code.value)
        return  # still on record: the next open tries again
    async with ctx.owner_writes.guard():
        if core.successor is not successor or ctx.closed:
            return  # decided meanwhile, or closed: a closed session never switches
        core.successor_on_record(None)
        if not status.exists:
            ctx.persist()  # never registered: nothing to adopt
            renewer.arm()
            renewer.maybe_renew_by_calls()
            return
        old = ctx.session
        ctx.new_generation()
        ctx.switch_session(successor, None)
        core.forget()
        core.learn_registered()
        ctx.apply_status(status)
        ctx.reschedule()
        if old is not None:
            ctx.publish(
                SessionRenewed,
                previous_public_key=to_hex(old.public_key),
                new_public_key=to_hex(successor.public_key),
            )
            renewer.retire_later(old.public_key, None)
        ctx.persist()
