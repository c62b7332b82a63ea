"""Resuming a hub slot after a restart: what the previous run left in the store.

``SessionHub.open(key=...)`` with a store loads the slot's record and its pending journal
entries (writes that were sent, or about to be, when the previous process stopped), attaches a
new session and hands both to :func:`resume`. Each entry is resolved from the chain first (the
SNIP-9 nonce is single-use: used means executed, unused past its window means never); only
then does the session start and reconcile its status, so a register the chain executed is not
mistaken for "never registered". What the chain cannot decide yet is held in doubt by the
session (counted against the budget when it was an execute of the current key) and settled by
its own timer. A renewal the previous run left unfinished is adopted or dropped last.

Everything goes through :class:`~chipi_session.attachment.AttachedSession`
(docs/architecture.md, "Hub attachment").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .logs import get_logger
from .types import SubmitInfo

if TYPE_CHECKING:
    from .attachment import AttachedSession
    from .stores.journal import JournalEntry
    from .types import SessionKeyData

__all__ = ["resume", "resolve_entry"]

#: the hub's records keep their logger (docs/observability.md, "Logging")
log = get_logger("chipi_session.hub")


async def resume(
    session: AttachedSession,
    pending: Iterable[JournalEntry],
    *,
    current_key: int | None,
    successor: SessionKeyData | None,
    retiring: tuple[int, ...],
) -> None:
    """Resolve ``pending`` (the slot's journal), start ``session``, hold what is still in
    doubt and resume the unfinished renewal (``successor``, the ``retiring`` keys).

    ``current_key`` is the public key of the session being resumed: only its entries teach
    the session something (registered, a call used); an older key's are settled all the same.
    """
    learned = False
    unresolved: list[tuple[JournalEntry, SubmitInfo, bool]] = []
    for entry in pending:
        mine = entry.session_public_key == current_key
        info, applied = await resolve_entry(session, entry)
        if applied is None and info is not None:
            unresolved.append((entry, info, mine))
        if applied and mine and entry.action in ("register", "revoke"):
            learned = session.learn_registered() or learned
    await session.start_attached()
    for entry, info, mine in unresolved:
        # counted against the budget and settled by the session's own timer
        session.hold_in_doubt(
            info, count=mine and entry.action == "execute", token=entry, mine=mine
        )
    if learned:
        session.persist()  # what the journal taught must survive the next restart
    # a renewal the previous run left unfinished: adopt or drop its successor, revoke the keys
    # it replaced
    successor_in_doubt = next(
        (
            info
            for entry, info, _ in unresolved
            if successor is not None
            and entry.action == "register"
            and entry.session_public_key == successor.public_key
        ),
        None,
    )
    await session.resume_renewal(successor, retiring, successor_in_doubt)


async def resolve_entry(
    session: AttachedSession, entry: JournalEntry
) -> tuple[SubmitInfo | None, bool | None]:
    """Resolve one in-flight write left by a previous run from the chain.

    Returns its SubmitInfo and whether it executed (None: not known yet — the caller hands it
    to the session to settle). Resolved entries leave the journal.
    """
    journal = session.journal
    assert journal is not None
    if entry.outside_nonce is None:
        # on_submit runs before anything is sent: no nonce, nothing was sent
        await journal.finish(entry)
        return None, False
    info = SubmitInfo(
        entry.action,
        session.wallet.address,
        entry.outside_nonce,
        entry.message_hash or 0,
        entry.execute_before or 0,
    )
    applied = await session.resolve_outcome(info)
    if applied is not None:
        await journal.finish(entry)
        log.info("resolved %s from a previous run: applied=%s", entry.action, applied)
    return info, applied
