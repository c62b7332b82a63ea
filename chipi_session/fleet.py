"""Sharding and failover: a fleet of processes, each with a ``SessionHub``, on one shared store.

Every process runs a :class:`Fleet` next to its hub (``docs/scaling.md``, ``docs/operations.md``):

* **Membership.** Each tick the process writes its heartbeat row (``PostgresStore.heartbeat``);
  members whose heartbeat expired are dead, members that are draining get no keys.
* **Assignment.** A key belongs to the live member with the highest rendezvous score
  (:func:`rendezvous_owner`): every process computes the same answer from the same member list,
  and a member joining or leaving moves only the keys it gains or loses.
* **Acquisition.** A process opens its keys through the hub (which takes the lease, resolves the
  key's journal from the chain, then reconciles the session), at most
  ``max_acquisitions_per_tick`` per tick, each after a random delay (``jitter``), so a fleet
  restart is not a thundering herd. A key still leased by a dead member is refused until its
  lease expires; it is retried every tick.
* **Renewal.** One statement per tick renews every lease the process holds
  (``renew_leases``); a key whose lease was lost is dropped at once without saving.
* **Handover.** A key assigned elsewhere stops taking new work (:meth:`Fleet.use` refuses it),
  its in-flight uses finish, its record is saved and its lease released, so the new owner
  takes it over on its next tick instead of after a TTL.

The application calls ``async with fleet.use(key) as session:`` around every action, which
refuses (``ACTION_IN_PROGRESS``, retryable) keys this process does not serve (any more), or does
not serve safely (its last successful renewal is older than the lease's safety margin).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from .errors import ChipiSessionError, ErrorCode
from .logs import get_logger

if TYPE_CHECKING:
    from .clock import Clock
    from .engine import ChipiSession
    from .hub import SessionHub
    from .pgstore import Member

__all__ = ["Fleet", "FleetStats", "FleetStore", "OpenSession", "rendezvous_owner"]

log = get_logger(__name__)

#: ``await open_session(hub, key)``: open (and if needed create/register) ``key``'s session.
OpenSession = Callable[["SessionHub", str], Awaitable["ChipiSession"]]


class FleetStore(Protocol):
    """What a fleet needs from its store besides leases (``PostgresStore`` has it all)."""

    def heartbeat(
        self, owner: str, ttl_seconds: float, now: float, *, draining: bool = False
    ) -> None: ...

    def members(self, now: float) -> list[Member]: ...

    def leave(self, owner: str) -> None: ...

    def renew_leases(
        self, keys: Iterable[str], owner: str, ttl_seconds: float, now: float
    ) -> set[str]: ...


def _score(owner: str, key: str) -> int:
    digest = hashlib.blake2b(f"{owner}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_owner(key: str, owners: Collection[str]) -> str | None:
    """The owner with the highest score for ``key`` (highest random weight hashing)."""
    return max(owners, key=lambda owner: (_score(owner, key), owner), default=None)


@attrs.define
class FleetStats:
    """Counters for monitoring (``docs/operations.md``)."""

    ticks: int = 0  #: ticks started
    ticks_done: int = 0  #: ticks whose heartbeat, renewal and rebalance have finished
    acquired: int = 0  #: keys opened here (first owner or takeover)
    refused: int = 0  #: acquisitions refused: another member still holds the lease
    open_failures: int = 0  #: opens that failed otherwise (chain or store unavailable)
    handed_over: int = 0  #: keys released gracefully to their new owner
    lost: int = 0  #: leases found lost at renewal (the session was dropped unsaved)
    renew_batches: int = 0
    renew_failures: int = 0
    heartbeat_failures: int = 0


class Fleet:
    """One member of a fleet: ``async with Fleet(...) as fleet: ... fleet.use(key) ...``.

    ``hub`` must be entered, built with ``Fleet.hub_options(owner, lease_ttl)`` (its leases
    are renewed here, in batches). ``keys``: every key of the fleet (or a function returning
    them). ``tick`` defaults to ``lease_ttl / 3``; ``member_ttl`` (how long a silent member
    counts as alive) to ``lease_ttl``.
    """

    def __init__(
        self,
        hub: SessionHub,
        store: FleetStore,
        *,
        owner: str,
        keys: Collection[str] | Callable[[], Collection[str]],
        open_session: OpenSession,
        lease_ttl: float = 30.0,
        member_ttl: float | None = None,
        tick: float | None = None,
        max_acquisitions_per_tick: int = 50,
        open_concurrency: int = 8,
        jitter: float = 0.5,
        handover_timeout: float = 10.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (("lease_ttl", lease_ttl), ("jitter", jitter + 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{name} must be a number > 0")
        if not isinstance(owner, str) or not owner:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "owner must be a non-empty string")
        for name, count in (
            ("max_acquisitions_per_tick", max_acquisitions_per_tick),
            ("open_concurrency", open_concurrency),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{name} must be an int >= 1")
        self._hub = hub
        self._store = store
        self._owner = owner
        self._keys = keys
        self._open_session = open_session
        self._lease_ttl = float(lease_ttl)
        self._member_ttl = float(member_ttl if member_ttl is not None else lease_ttl)
        self._tick = float(tick if tick is not None else lease_ttl / 3)
        self._max_acquisitions = max_acquisitions_per_tick
        self._open_limiter = anyio.CapacityLimiter(open_concurrency)
        #: a thread of its own for heartbeats and renewals: never queued behind other work
        self._io_limiter = anyio.CapacityLimiter(1)
        self._jitter = float(jitter)
        self._handover_timeout = float(handover_timeout)
        self._clock: Clock = clock if clock is not None else hub.scheduler.clock
        self._rng = rng or random.Random()
        self._held: set[str] = set()  # keys open in the hub under our lease
        self._opening: set[str] = set()
        self._leaving: set[str] = set()
        self._inflight: dict[str, int] = {}
        self._idle: dict[str, anyio.Event] = {}
        self._serve_until = 0.0  # last successful renewal + TTL - margin
        self._members: tuple[str, ...] = ()
        self._draining = False
        self._acquiring = False
        self._tg: anyio.abc.TaskGroup | None = None
        self.stats = FleetStats()

    @staticmethod
    def hub_options(owner: str, lease_ttl: float = 30.0) -> dict[str, Any]:
        """The ``SessionHub`` arguments a fleet member needs: ``SessionHub(**opts, ...)``."""
        return {"lease_owner": owner, "lease_ttl": lease_ttl, "lease_renewal": False}

    # ------------------------------------------------------------------ queries
    @property
    def owner(self) -> str:
        return self._owner

    @property
    def members(self) -> tuple[str, ...]:
        """Live, non-draining members as of the last tick."""
        return self._members

    @property
    def keys(self) -> frozenset[str]:
        """The keys this member serves (open and not being handed over)."""
        return frozenset(self._held - self._leaving)

    def serves(self, key: str) -> bool:
        return (
            key in self._held
            and key not in self._leaving
            and not self._draining
            and self._clock.now() < self._serve_until
        )

    @asynccontextmanager
    async def use(self, key: str) -> AsyncIterator[ChipiSession]:
        """The session of ``key``, if this member serves it; a handover waits for the block."""
        session = self._hub.get(key)
        if session is None or not self.serves(key):
            raise ChipiSessionError(
                ErrorCode.ACTION_IN_PROGRESS,
                f"session {key!r} is not served by this member now (moving or not ours)",
                retryable=True,
            )
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            yield session
        finally:
            self._inflight[key] -= 1
            if self._inflight[key] == 0:
                del self._inflight[key]
                idle = self._idle.pop(key, None)
                if idle is not None:
                    idle.set()

    # ------------------------------------------------------------------ running
    async def __aenter__(self) -> Fleet:
        self._cm = anyio.create_task_group()
        self._tg = await self._cm.__aenter__()
        first = self._clock.now()
        await self._tick_once()
        self._tg.start_soon(self._loop, first)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        result = await self._cm.__aexit__(*exc_info)
        with anyio.CancelScope(shield=True):  # the hub saves and releases; we leave the table
            try:
                await self._call(self._store.leave, self._owner)
            except ChipiSessionError as exc:
                log.warning("leaving the fleet failed: %s", exc.code.value)
        return result

    async def drain(self) -> None:
        """Leave gracefully (deploys): stop taking keys, hand every key over, then leave.

        Other members stop assigning keys here at their next tick; each key is released as
        soon as its in-flight uses finish, so its new owner takes it without waiting a TTL.
        """
        self._draining = True
        await self._heartbeat(self._clock.now())
        async with anyio.create_task_group() as tg:
            for key in list(self._held):
                tg.start_soon(self._handover, key)
        await self._call(self._store.leave, self._owner)

    async def _loop(self, next_at: float) -> None:
        """Tick every ``tick`` seconds from the first one (a slow tick does not shift them)."""
        while True:
            next_at = max(next_at + self._tick, self._clock.now())
            await self._clock.sleep_until(next_at)
            await self._tick_once()

    async def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: func(*args), limiter=self._io_limiter)

    async def _heartbeat(self, now: float) -> None:
        try:
            await self._call(
                lambda: self._store.heartbeat(
                    self._owner, self._member_ttl, now, draining=self._draining
                )
            )
        except ChipiSessionError as exc:
            self.stats.heartbeat_failures += 1
            log.warning("fleet heartbeat failed: %s", exc.code.value)

    async def _tick_once(self) -> None:
        """Heartbeat, renew every lease in one batch, then rebalance."""
        self.stats.ticks += 1
        try:
            await self._tick_work(self._clock.now())
        finally:
            self.stats.ticks_done += 1

    async def _tick_work(self, started: float) -> None:
        await self._heartbeat(started)
        await self._renew(started)
        try:
            members: list[Member] = await self._call(self._store.members, started)
        except ChipiSessionError as exc:
            log.warning("reading fleet members failed: %s", exc.code.value)
            return
        self._members = tuple(m.owner for m in members if not m.draining)
        self._rebalance()

    async def _renew(self, started: float) -> None:
        held = sorted(self._held)
        # keys being opened too: their lease is taken before the session is reconciled, which
        # may take a while (a slow chain); a key not acquired yet is simply not renewed
        batch = held + sorted(self._opening - self._held)
        if not held and not self._opening:
            self._serve_until = started + self._lease_ttl * 0.8
            return
        try:
            kept: set[str] = await self._call(
                self._store.renew_leases, batch, self._owner, self._lease_ttl, started
            )
        except ChipiSessionError as exc:
            # the TTL leaves room for a retry next tick; serves() stops work meanwhile if late
            self.stats.renew_failures += 1
            log.warning("renewing %d leases failed: %s", len(held), exc.code.value)
            return
        self.stats.renew_batches += 1
        self._serve_until = started + self._lease_ttl * 0.8
        for key in held:
            if key not in kept and key in self._held and key not in self._leaving:
                self.stats.lost += 1
                self._held.discard(key)
                self._leaving.discard(key)
                self._hub.lease_lost(key)

    def _wanted(self) -> set[str]:
        if self._draining or self._owner not in self._members:
            return set()
        keys = self._keys() if callable(self._keys) else self._keys
        return {k for k in keys if rendezvous_owner(k, self._members) == self._owner}

    def _rebalance(self) -> None:
        assert self._tg is not None
        # a session closed by the application is no longer ours (the hub released it)
        self._held = {k for k in self._held if self._hub.get(k) is not None}
        wanted = self._wanted()
        for key in self._held - wanted - self._leaving:
            self._tg.start_soon(self._handover, key)
        todo = sorted(wanted - self._held - self._opening)
        if todo and not self._acquiring:
            self._rng.shuffle(todo)
            self._acquiring = True
            self._tg.start_soon(self._acquire_batch, todo[: self._max_acquisitions])

    async def _acquire_batch(self, keys: list[str]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for key in keys:
                    self._opening.add(key)
                    tg.start_soon(self._acquire, key)
        finally:
            self._acquiring = False

    async def _acquire(self, key: str) -> None:
        try:
            delay = self._rng.uniform(0, self._jitter)
            if delay > 0:  # spreads a fleet restart in real time (the clock may be manual)
                await anyio.sleep(delay)
            async with self._open_limiter:
                if self._draining or key in self._held:
                    return
                try:
                    await self._open_session(self._hub, key)
                except ChipiSessionError as exc:
                    await self._abandon(key)
                    if exc.code is ErrorCode.ACTION_IN_PROGRESS:
                        self.stats.refused += 1  # still leased elsewhere: retried next tick
                    else:
                        self.stats.open_failures += 1
                        log.warning("opening %r failed: %s", key, exc.code.value)
                    return
                except Exception:
                    await self._abandon(key)
                    self.stats.open_failures += 1
                    log.exception("opening %r failed", key)
                    return
                self._held.add(key)
                self.stats.acquired += 1
        finally:
            self._opening.discard(key)

    async def _abandon(self, key: str) -> None:
        """An open that failed half way: close what the hub has (it saves and releases)."""
        if self._hub.get(key) is not None:
            await self._hub.close(key)

    async def _handover(self, key: str) -> None:
        """Stop new work, let in-flight uses settle, save, release."""
        if key in self._leaving:
            return
        self._leaving.add(key)
        try:
            with anyio.move_on_after(self._handover_timeout):
                if self._inflight.get(key):
                    await self._idle.setdefault(key, anyio.Event()).wait()
                # the session's own writes (an auto-renewal) settle too, so their journal
                # entries are finished under our lease instead of left to the next owner
                while (session := self._hub.get(key)) is not None and _busy(session):
                    await anyio.sleep(0.05)
            if key in self._held:
                await self._hub.close(key)  # flushes the record (fenced) and releases
                self._held.discard(key)
                self.stats.handed_over += 1
        finally:
            self._leaving.discard(key)


def _busy(session: ChipiSession) -> bool:
    return (
        session.is_executing
        or session.is_registering
        or session.is_revoking
        or session.is_creating
        or session.is_renewing
    )
