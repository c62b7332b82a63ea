"""The hub's store-journal adapter: the engine's ``ActionJournal`` backed by a store.

A ``SessionHub`` with a store gives every session it opens under a key a
:class:`StoreJournal` (through ``HubAttachment.journal``, chipi_session/attachment.py). It
turns the engine's journal calls (chipi_session/journal.py) into the store's: a write is
appended as a :class:`~chipi_session.stores.journal.JournalEntry` before it is sent, updated
with the nonce the backend reports, removed once its outcome is known; the session's record
(:class:`~chipi_session.stores.records.SessionRecord`) is saved whenever the session marks it
dirty. Every store call is awaited (:mod:`chipi_session.stores.async_store`) and carries the
lease's fencing token, if the hub holds one.

The adapter reads the session only through :class:`RecordSource` (public properties), so the
stores package does not depend on the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

from ..errors import ChipiSessionError
from ..logs import get_logger
from .journal import JournalEntry
from .records import SessionRecord

if TYPE_CHECKING:
    from ..clock import Clock
    from ..journal import ActionJournal
    from ..types import SessionKeyData, SessionStatus, SubmitInfo, WalletData
    from .async_store import AsyncSessionStore

__all__ = ["RecordSource", "StoreJournal", "flush_journal"]

#: the hub's records keep their logger (docs/observability.md, "Logging")
log = get_logger("chipi_session.hub")

#: How often removing a finished entry is tried when the store reports a retryable error.
_FINISH_ATTEMPTS = 3


class RecordSource(Protocol):
    """What a session's stored record is made of (``ChipiSession`` implements it)."""

    @property
    def wallet(self) -> WalletData: ...

    @property
    def session(self) -> SessionKeyData | None: ...

    @property
    def session_status(self) -> SessionStatus | None: ...

    @property
    def seen_registered(self) -> bool: ...

    @property
    def renewal_successor(self) -> SessionKeyData | None: ...

    @property
    def retiring_keys(self) -> tuple[int, ...]: ...


class StoreJournal:
    """:class:`~chipi_session.journal.ActionJournal` over a store, for one hub slot (``key``)."""

    __slots__ = ("_store", "_key", "_session", "_clock", "_dirty", "_saving", "_token")

    def __init__(
        self,
        store: AsyncSessionStore,
        key: str,
        session: RecordSource,
        clock: Clock,
        fencing_token: int | None = None,
    ) -> None:
        self._store = store
        self._key = key
        self._session = session
        self._clock = clock
        #: every write carries the lease's fencing token: a process that lost its lease
        #: cannot journal (so cannot send) anything for this session any more
        self._token = fencing_token
        self._dirty = False
        self._saving: anyio.Event | None = None

    async def begin(self, action: str, session_public_key: int) -> object:
        await self.flush()  # the session a write refers to is on disk before it is sent
        entry = JournalEntry.new(
            self._key, action, session_public_key, created_at=self._clock.now()
        )
        await self._store.journal_append(entry, fencing_token=self._token)
        return entry

    async def submitted(self, token: object, info: SubmitInfo) -> None:
        assert isinstance(token, JournalEntry)
        updated = token.with_submit(info)
        await self._store.journal_update(updated, fencing_token=self._token)

    async def finish(self, token: object) -> None:
        assert isinstance(token, JournalEntry)
        for attempt in range(_FINISH_ATTEMPTS):  # the outcome is known: a hiccup must not hide it
            try:
                await self._store.journal_remove(token.entry_id, fencing_token=self._token)
                return
            except ChipiSessionError as exc:
                if not exc.retryable or attempt == _FINISH_ATTEMPTS - 1:
                    # the entry stays: the next open resolves it from the chain (harmless)
                    log.warning("journal entry left for the next open: %s", exc.code.value)
                    return
                await anyio.lowlevel.checkpoint()  # a pooled store reconnects on the retry

    def mark_dirty(self) -> None:
        self._dirty = True

    async def flush(self) -> None:
        """Save the record until it is clean; one save at a time, the last state wins."""
        while self._saving is not None:
            await self._saving.wait()
        if not self._dirty:
            return
        self._saving = anyio.Event()
        try:
            while self._dirty:
                self._dirty = False
                try:
                    await self._store.save(self.record(), fencing_token=self._token)
                except anyio.get_cancelled_exc_class():
                    self._dirty = True  # cut short (its writer cancelled): still to be saved
                    raise
        finally:
            saving, self._saving = self._saving, None
            saving.set()

    def record(self) -> SessionRecord:
        """The session's record as it would be saved now."""
        s = self._session
        status = s.session_status
        return SessionRecord(
            key=self._key,
            wallet=s.wallet,
            session=s.session,
            seen_registered=s.seen_registered,
            registered_max_calls=None if status is None else status.max_calls,
            registered_allowed_entrypoints=() if status is None else status.allowed_entrypoints,
            updated_at=self._clock.now(),
            successor=s.renewal_successor,
            retiring=s.retiring_keys,
        )


async def flush_journal(journal: ActionJournal | None) -> None:
    """Save a closing session's record; a failure is logged, never raised (the close goes on)."""
    if journal is not None:
        try:
            await journal.flush()
        except Exception:
            log.exception("saving a session record on close failed")
