"""Shared background machinery: one timer heap and one status poller for many sessions.

A standalone ``ChipiSession`` owns a private :class:`Scheduler`; a ``SessionHub`` shares one
across thousands of sessions, so background cost is O(1) tasks, not O(sessions): arming or
cancelling a deadline is a heap push or a flag, and idle sessions cost no CPU at all.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.abc

from .backends.base import BatchStatusReader, SessionReader
from .clock import Clock
from .logs import get_logger
from .validate import check_int, check_number

__all__ = [
    "TimerHandle",
    "TimerHeap",
    "Pollable",
    "StatusPoller",
    "Scheduler",
    "backend_status_reader",
]

log = get_logger(__name__)


class TimerHandle:
    """A scheduled callback; :meth:`cancel` is O(1) (the heap drops it lazily)."""

    __slots__ = ("deadline", "callback", "active")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback: Callable[[], object] | None = callback
        self.active = True

    def cancel(self) -> None:
        self.active = False
        self.callback = None


class TimerHeap:
    """Every deadline of a scheduler in one heap, served by one task.

    A callback fires once clock time reaches its deadline (``now >= deadline``); callbacks
    are synchronous and must not block. Exceptions are logged, never propagated.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._sleep_scope: anyio.CancelScope | None = None
        self._sleeping_until = math.inf

    def __len__(self) -> int:
        return sum(1 for _, _, h in self._heap if h.active)

    def schedule(self, deadline: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` once the clock reaches ``deadline``. A NaN deadline is refused
        here (``ValueError``): in the heap it would break the order every session relies on
        and crash the shared timer task."""
        if math.isnan(deadline):
            raise ValueError("timer deadline is NaN")
        handle = TimerHandle(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._seq), handle))
        if deadline < self._sleeping_until and self._sleep_scope is not None:
            self._sleep_scope.cancel()  # wake the runner: an earlier deadline arrived
        return handle

    def _fire_due(self) -> None:
        now = self._clock.now()
        heap = self._heap
        while heap and (not heap[0][2].active or heap[0][0] <= now):
            _, _, handle = heapq.heappop(heap)
            callback = handle.callback
            if not handle.active or callback is None:
                continue
            handle.cancel()
            try:
                callback()
            except Exception:
                log.exception("timer callback failed")

    async def run(self) -> None:
        while True:
            self._fire_due()
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                if self._heap:
                    self._sleeping_until = self._heap[0][0]
                    await self._clock.sleep_until(self._sleeping_until)
                else:
                    self._sleeping_until = math.inf
                    await anyio.sleep_forever()
            self._sleep_scope = None
            self._sleeping_until = math.inf


class Pollable(Protocol):
    """What the poller needs from a polled session (``handlers.polling.StatusPolling``).

    Each round, for every member due: :meth:`poll_target` right before the batch is read;
    then, once the batch is back, exactly one of :meth:`poll_result` / :meth:`poll_failed`
    for each target returned (none for a None target: the member stays registered and is
    asked again next round). All three run on the poller's task: synchronous, they must not
    block or raise (an exception would end the shared scheduler and every session's polls).
    """

    def poll_target(self) -> tuple[int, int] | None:
        """``(wallet address, session public key)`` to read now, or None to skip a round."""
        ...

    def poll_result(self, status: Any) -> None:
        """What the read of the last target returned (a ``SessionStatus``)."""
        ...

    def poll_failed(self, error: Exception) -> None:
        """The read of the last target failed (for the whole batch or this target)."""
        ...


StatusReader = Callable[[list[tuple[int, int]]], Awaitable[list[Any]]]


class StatusPoller:
    """Polls every registered session once per ``interval``, batched and rate-limited.

    Sessions share one interval, so a FIFO ordered by next-due time is all the scheduling
    needed (O(1) per poll). Reads go out in batches of ``batch_size`` through ``read``, at most
    ``max_batches_per_second`` batches a second.
    """

    def __init__(
        self,
        clock: Clock,
        read: StatusReader,
        *,
        interval: float,
        batch_size: int = 100,
        max_batches_per_second: float = 20.0,
    ) -> None:
        self._clock = clock
        self._read = read
        self.interval = check_number(interval, "status_interval", positive=True)
        # a batch of 0 would never take a session off the queue: the poller would spin
        self.batch_size = check_int(batch_size, "poll_batch_size", low=1)
        self._min_gap = 1.0 / check_number(
            max_batches_per_second, "max_polls_per_second", positive=True
        )
        self._queue: deque[tuple[float, Pollable]] = deque()
        self._members: set[int] = set()
        self._wakeup: anyio.Event | None = None
        #: counters for benchmarks and monitoring
        self.batches = 0
        self.reads = 0

    def add(self, session: Pollable) -> None:
        if id(session) in self._members:
            return
        self._members.add(id(session))
        self._queue.append((self._clock.now() + self.interval, session))
        if self._wakeup is not None:
            self._wakeup.set()

    def remove(self, session: Pollable) -> None:
        self._members.discard(id(session))  # dropped lazily from the queue

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            self._wakeup = None
            due_at, _ = self._queue[0]
            await self._clock.sleep_until(due_at)
            now = self._clock.now()
            batch: list[Pollable] = []
            while self._queue and self._queue[0][0] <= now and len(batch) < self.batch_size:
                _, session = self._queue.popleft()
                if id(session) not in self._members:
                    continue
                batch.append(session)
                self._queue.append((now + self.interval, session))
            if batch:
                await self._poll(batch)
                await self._clock.sleep_until(self._clock.now() + self._min_gap)

    async def _poll(self, batch: list[Pollable]) -> None:
        targets: list[tuple[Pollable, tuple[int, int]]] = []
        for session in batch:
            target = session.poll_target()
            if target is not None:
                targets.append((session, target))
        if not targets:
            return
        self.batches += 1
        self.reads += len(targets)
        try:
            results = await self._read([t for _, t in targets])
        except Exception as exc:
            for session, _ in targets:
                session.poll_failed(exc)
            return
        for (session, _), result in zip(targets, results, strict=True):
            if isinstance(result, Exception):
                session.poll_failed(result)
            else:
                session.poll_result(result)


def backend_status_reader(backend: SessionReader, concurrency: int = 16) -> StatusReader:
    """A batch status reader over a backend: its ``get_session_statuses`` if it is a
    :class:`BatchStatusReader` (one request per batch), else ``get_session_status`` per
    session, ``concurrency`` at a time."""
    if isinstance(backend, BatchStatusReader):
        return backend.get_session_statuses

    async def read(targets: list[tuple[int, int]]) -> list[Any]:
        results: list[Any] = [None] * len(targets)
        limiter = anyio.CapacityLimiter(concurrency)

        async def one(i: int, wallet: int, pub: int) -> None:
            async with limiter:
                try:
                    results[i] = await backend.get_session_status(wallet, pub)
                except Exception as exc:  # reported per session
                    results[i] = exc

        async with anyio.create_task_group() as tg:
            for i, (wallet, pub) in enumerate(targets):
                tg.start_soon(one, i, wallet, pub)
        return results

    return read


class Scheduler:
    """The task group, timer heap and status poller that a set of sessions share."""

    def __init__(
        self,
        clock: Clock,
        read_statuses: StatusReader,
        *,
        status_interval: float,
        poll_batch_size: int = 100,
        max_polls_per_second: float = 20.0,
    ) -> None:
        self.clock = clock
        self.timers = TimerHeap(clock)
        self.poller = StatusPoller(
            clock,
            read_statuses,
            interval=status_interval,
            batch_size=poll_batch_size,
            max_batches_per_second=max_polls_per_second,
        )
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("scheduler not started")
        return self._tg

    @property
    def running(self) -> bool:
        return self._tg is not None

    async def __aenter__(self) -> Scheduler:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self.timers.run)
        tg.start_soon(self.poller.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        return await tg.__aexit__(*exc)
