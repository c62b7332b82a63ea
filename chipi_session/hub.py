"""``SessionHub``: many sessions in one process, sharing everything that can be shared.

One scheduler (task group, timer heap for every expiry / renewal / resolution deadline, one
batched and rate-limited status poller), one lifecycle machine, and a hub-wide event stream
besides each session's own. With a :class:`~chipi_session.store.SessionStore` the hub persists
every session and journals every write before it is sent, so after a crash it reconciles each
session from the chain and the journal: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Unpack

import anyio
import attrs

from . import logs, validate
from .attachment import AttachedSession, HubAttachment
from .clock import Clock
from .engine import ChipiSession
from .errors import ChipiSessionError, ErrorCode
from .events import Event
from .hub_leases import HubLeases
from .hub_recovery import resume
from .logs import get_logger
from .pubsub import Broadcaster, Subscription
from .renewal import RenewalPolicy
from .scheduling import Scheduler, backend_status_reader
from .session_options import BearerTokenSource, SessionOptions, SessionParams, SessionRuntime
from .stores.hub_journal import StoreJournal, flush_journal
from .types import SessionKeyData

if TYPE_CHECKING:
    from .asyncstore import AsyncSessionStore
    from .backends.base import SessionReader
    from .journal import ActionJournal
    from .store import JournalEntry, SessionStore
    from .vault import Vault

__all__ = ["SessionHub"]


log = get_logger(__name__)

#: What the hub calls on its store (leases only with ``lease_owner``).
_STORE_METHODS = (
    "load",
    "save",
    "journal_append",
    "journal_update",
    "journal_remove",
    "journal_pending",
)


class SessionHub:
    """``async with SessionHub(backend=...) as hub: session = await hub.open(...)``

    Sessions opened by the hub have the full :class:`ChipiSession` API; close one with
    ``await hub.close(session)`` (or ``await session.aclose()``); leaving the hub closes all.
    ``key`` names a session slot (e.g. your user id): with a store, ``open(key=...)`` resumes
    what was stored under it. With ``lease_owner`` (a name unique to this process), opening a
    key takes the store's lease on it (renewed every ``lease_ttl / 3`` s) and every write of
    the session carries its fencing token, so one session's budget lives in one process at a
    time (see docs/scaling.md); a session whose lease is lost is closed.
    """

    def __init__(
        self,
        *,
        backend: SessionReader | None = None,
        clock: Clock | None = None,
        vault: Vault | None = None,
        store: SessionStore | AsyncSessionStore | None = None,
        get_bearer_token: BearerTokenSource | None = None,
        status_interval: float = 30.0,
        poll_batch_size: int = 100,
        max_polls_per_second: float = 20.0,
        renewal: RenewalPolicy | None = None,
        event_buffer_size: int = 256,
        lease_owner: str | None = None,
        lease_ttl: float = 30.0,
        lease_renewal: bool = True,
    ) -> None:
        if lease_owner is not None and (not isinstance(lease_owner, str) or not lease_owner):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "lease_owner must be a string")
        if lease_owner is not None and store is None:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "leases need a store")
        validate.check_number(lease_ttl, "lease_ttl", positive=True)
        if store is not None:
            validate.check_methods(store, "store", _STORE_METHODS, "a SessionStore")
        if renewal is not None:
            validate.check_instance(renewal, "renewal", RenewalPolicy, "a RenewalPolicy")
        #: what every session of the hub runs on, resolved and checked once (session_options)
        self._runtime = runtime = SessionRuntime.resolve(
            backend=backend,
            clock=clock,
            vault=vault,
            get_bearer_token=get_bearer_token,
            status_interval=status_interval,
            event_buffer_size=event_buffer_size,
        )
        self._clock = clock = runtime.clock
        self._store: AsyncSessionStore | None = None
        if store is not None:  # every store call is awaited: none blocks the loop
            from .asyncstore import as_async_store

            self._store = as_async_store(store)
        self._renewal = renewal
        #: False: the caller renews the leases (chipi_session.fleet: one batch per tick)
        self._lease_renewal = bool(lease_renewal)
        self._scheduler = Scheduler(
            clock,
            backend_status_reader(runtime.backend),
            status_interval=runtime.status_interval,
            poll_batch_size=poll_batch_size,
            max_polls_per_second=max_polls_per_second,
        )
        self._events: Broadcaster[Event] = Broadcaster()
        self._sessions: dict[str, ChipiSession] = {}
        self._slots: dict[int, str] = {}  # id(session) -> slot, so close() is O(1)
        self._auto_keys = itertools.count()
        self._opening: set[str] = set()  # slots whose open() has not finished yet
        self._closing: set[str] = set()  # slots whose close() has not finished yet
        self._entered = False
        #: with ``lease_owner``: the leases on the keys open here (hub_leases.py)
        self._leases: HubLeases | None = None
        if self._store is not None and lease_owner is not None:
            self._leases = HubLeases(
                self._store,
                lease_owner,
                float(lease_ttl),
                clock=clock,
                timers=self._scheduler.timers,
                current=self._sessions.get,
                on_lost=self._drop_lost,
            )

    # ------------------------------------------------------------------ context
    async def __aenter__(self) -> SessionHub:
        if self._entered:
            raise ChipiSessionError(ErrorCode.CLOSED, "a SessionHub can be entered once")
        self._entered = True
        await self._scheduler.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        sessions = list(self._sessions.values())
        # closed first, so none changes after its record is saved (a renewal finishing
        # while another session's record is saved would switch keys the store never sees)
        for session in sessions:
            session.shutdown()
        with anyio.CancelScope(shield=True):  # a clean shutdown saves what is pending
            for session in sessions:
                await flush_journal(session.journal)
            if self._leases is not None:
                for slot in list(self._sessions):
                    if not slot.startswith("#"):
                        await self._leases.release(slot)
        self._sessions.clear()
        self._slots.clear()
        self._events.close()
        return await self._scheduler.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------------ sessions
    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[ChipiSession]:
        return iter(list(self._sessions.values()))

    def get(self, key: str) -> ChipiSession | None:
        return self._sessions.get(key)

    async def open(
        self, *, key: str | None = None, **options: Unpack[SessionParams]
    ) -> ChipiSession:
        """Open (or, with a store and a known ``key``, resume) one session.

        ``key`` names the slot (without one, the session gets a fresh slot and nothing is
        stored); the other keywords (``wallet`` and ``encrypt_key`` required) are those of
        ``ChipiSession``: :class:`~chipi_session.session_options.SessionOptions`, where a
        ``renewal`` left out is the hub's. Cost is independent of how many sessions are open.
        With a store, pending journal entries of this key are resolved from the chain before
        the session is reconciled.
        """
        if not self._scheduler.running:
            raise ChipiSessionError(ErrorCode.CLOSED, "use the hub inside 'async with'")
        if key is not None and (not isinstance(key, str) or not key):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "key must be a non-empty string")
        if options.get("renewal") is None and self._renewal is not None:
            options["renewal"] = self._renewal
        # checked before anything is taken (lease, slot), so a refusal leaves no trace
        validated = SessionOptions(**options)
        slot = key if key is not None else f"#{next(self._auto_keys)}"
        if slot in self._sessions:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"session {slot!r} is already open")
        if slot in self._opening or slot in self._closing:
            # two live sessions on one key would spend one budget twice
            doing = "opened" if slot in self._opening else "closed"
            raise ChipiSessionError(
                ErrorCode.ACTION_IN_PROGRESS, f"session {slot!r} is being {doing}", retryable=True
            )
        self._opening.add(slot)
        fencing_token: int | None = None
        try:
            if self._leases is not None and key is not None:
                fencing_token = await self._leases.acquire(key)
            session = await self._open_slot(
                slot,
                key,
                fencing_token,
                validated,
            )
        except BaseException:
            if self._leases is not None and fencing_token is not None and key is not None:
                with anyio.CancelScope(shield=True):  # a refused open keeps no lease
                    await self._leases.release(key)
            raise
        finally:
            self._opening.discard(slot)
        if self._leases is not None and fencing_token is not None and key is not None:
            if self._lease_renewal:
                self._leases.keep(session, key)
        return session

    async def _open_slot(
        self,
        slot: str,
        key: str | None,
        fencing_token: int | None,
        options: SessionOptions,
    ) -> ChipiSession:
        """The open's records, and the session built in it, carry the slot
        (docs/observability.md, "Logging")."""
        opening = logs.LogContext(slot=slot, wallet=options.wallet.address)  # whoever calls
        with logs.action(opening, "open"):
            return await self._load_slot(slot, key, fencing_token, options)

    async def _load_slot(
        self,
        slot: str,
        key: str | None,
        fencing_token: int | None,
        options: SessionOptions,
    ) -> ChipiSession:
        """Load what the store holds for ``key``, build the session and resolve its journal."""
        seen_registered = False
        pending: list[JournalEntry] = []
        successor: SessionKeyData | None = None
        retiring: tuple[int, ...] = ()
        if self._store is not None and key is not None:
            record = await self._store.load(key)
            if record is not None:
                if record.wallet.address != options.wallet.address:
                    raise ChipiSessionError(
                        ErrorCode.INVALID_STORED_DATA,
                        f"stored session {key!r} belongs to another wallet",
                    )
                if options.stored_session is None and record.session is not None:
                    options = attrs.evolve(options, stored_session=record.session)
                seen_registered = record.seen_registered
                successor, retiring = record.successor, record.retiring
            pending = await self._store.journal_pending(key)
        session = ChipiSession.from_options(options, self._runtime)
        stored = options.stored_session
        store = self._store
        journal = None
        if store is not None and key is not None:
            clock, store_key = self._clock, key

            def journal(attached: AttachedSession) -> ActionJournal:
                assert isinstance(attached, ChipiSession)
                return StoreJournal(store, store_key, attached, clock, fencing_token)

        session.attach(HubAttachment(self._scheduler, self._events, journal, seen_registered))
        self._sessions[slot] = session
        self._slots[id(session)] = slot
        try:
            await resume(
                session,
                pending,
                current_key=None if stored is None else stored.public_key,
                successor=successor,
                retiring=retiring,
            )
        except BaseException:
            self._sessions.pop(slot, None)
            self._slots.pop(id(session), None)
            session.shutdown()
            raise
        return session

    # -------------------------------------------------------------------- leases
    def lease_lost(self, key: str) -> bool:
        """The caller's lease renewal (``lease_renewal=False``) found ``key``'s lease lost:
        close its session without saving (another process may own it now). True if open."""
        session = self._sessions.get(key)
        if session is None:
            return False
        self._drop_lost(session, key)
        return True

    def _drop_lost(self, session: AttachedSession, key: str) -> None:
        from .store import LeaseLostError

        lost = LeaseLostError(
            ErrorCode.ACTION_IN_PROGRESS,
            f"lost the lease on session {key!r}: another process may act on it now",
            False,
        )
        log.warning("lease on %r lost; closing the session", key)
        session.record_failure("lease", lost)
        self._sessions.pop(key, None)
        self._slots.pop(id(session), None)
        session.shutdown()

    async def close(self, session: ChipiSession | str) -> None:
        """Close one session: cancel its actions, drop its timers, zero its key."""
        if isinstance(session, str):
            found = self._sessions.get(session)
            if found is None:
                return
            session = found
        slot = self._slots.pop(id(session), None)
        if slot is not None:
            self._sessions.pop(slot, None)
            # until its last record is saved and its lease released, the key cannot reopen:
            # a reopen would load a stale record, and this release would drop its lease
            self._closing.add(slot)
        try:
            with (
                anyio.CancelScope(shield=True),
                logs.bind(owner=session, slot=slot, action="close"),
            ):
                await flush_journal(session.journal)
                await session.aclose()
                if slot is not None and self._leases is not None:
                    await self._leases.release(slot)
        finally:
            if slot is not None:
                self._closing.discard(slot)

    # -------------------------------------------------------------------- events
    def subscribe(
        self, buffer_size: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[Event]]:
        """Every event of every session (``event.session_public_key`` says whose)."""
        size = self._runtime.event_buffer_size if buffer_size is None else buffer_size
        return self._events.subscribe(size)

    def add_listener(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        return self._events.add_listener(callback)

    def __repr__(self) -> str:
        return f"SessionHub(sessions={len(self._sessions)}, timers={len(self._scheduler.timers)})"
