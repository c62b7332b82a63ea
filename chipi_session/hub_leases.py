"""The leases a ``SessionHub`` holds on its store's keys (``SessionHub(lease_owner=...)``).

Opening a key takes the store's lease on it; the fencing token it returns goes with every write
of the session (``stores.hub_journal.StoreJournal``), so a process that lost the lease cannot
spend the session's budget any more (docs/scaling.md, "The fencing token"). While the session is open its
lease is renewed every ``ttl / 3`` seconds, measured from when the previous renewal *started*
(a slow store does not stretch the cadence); a store error that may pass is retried at the next
tick, anything else — or a renewal the store refuses — means the lease is lost and the hub
closes the session (``on_lost``). With ``SessionHub(lease_renewal=False)`` the caller renews
instead (``chipi_session.fleet``: one batch per tick) and reports a lost lease through
``SessionHub.lease_lost``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import ChipiSessionError, ErrorCode
from .logs import get_logger

if TYPE_CHECKING:
    from .attachment import AttachedSession
    from .clock import Clock
    from .scheduling import TimerHeap
    from .stores.async_store import AsyncSessionStore

__all__ = ["HubLeases"]

#: the hub's records keep their logger (docs/observability.md, "Logging")
log = get_logger("chipi_session.hub")


class HubLeases:
    """Acquire, renew and release one owner's leases on a store's keys."""

    __slots__ = ("_store", "_owner", "_ttl", "_clock", "_timers", "_current", "_on_lost")

    def __init__(
        self,
        store: AsyncSessionStore,
        owner: str,
        ttl: float,
        *,
        clock: Clock,
        timers: TimerHeap,
        current: Callable[[str], AttachedSession | None],
        on_lost: Callable[[AttachedSession, str], None],
    ) -> None:
        self._store = store
        self._owner = owner
        self._ttl = ttl
        self._clock = clock
        self._timers = timers
        #: the session open under a key now (a renewal for a closed or replaced one stops)
        self._current = current
        #: the hub closes a session whose lease is lost
        self._on_lost = on_lost

    async def acquire(self, key: str) -> int:
        """Take the lease on ``key``; its fencing token. ``ACTION_IN_PROGRESS`` (retryable)
        while another owner holds it."""
        token = await self._store.acquire_lease(key, self._owner, self._ttl, self._clock.now())
        if token is None:
            raise ChipiSessionError(
                ErrorCode.ACTION_IN_PROGRESS,
                f"session {key!r} is held by another process (its lease has not expired)",
                retryable=True,
            )
        return int(token)

    async def release(self, key: str) -> None:
        """Give the lease on ``key`` up; a store error is logged (the lease then expires)."""
        try:
            await self._store.release_lease(key, self._owner)
        except ChipiSessionError as exc:
            log.warning("releasing the lease of %r failed: %s", key, exc.code.value)

    def keep(self, session: AttachedSession, key: str, since: float | None = None) -> None:
        """Renew ``key``'s lease ``ttl / 3`` after ``since`` (default: now) while ``session``
        is open under it."""
        start = self._clock.now() if since is None else since
        self._timers.schedule(
            start + self._ttl / 3,
            lambda: session.spawn(self._renew(session, key)),
        )

    async def _renew(self, session: AttachedSession, key: str) -> None:
        if session.closed or self._current(key) is not session:
            return
        started = self._clock.now()
        try:
            kept = await self._store.renew_lease(key, self._owner, self._ttl, started)
        except ChipiSessionError as exc:
            if exc.retryable:  # the store hiccuped: try again soon, the TTL leaves room
                self.keep(session, key)
                return
            kept = False
        if kept:
            self.keep(session, key, since=started)
            return
        self._on_lost(session, key)
