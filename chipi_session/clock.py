"""Injected time.

The engine and LocalChain never read the system clock directly: they take a :class:`Clock`.
:class:`SystemClock` is wall time (unix seconds, which is what ``valid_until`` is measured in);
:class:`ManualClock` only moves when a test (or a simulation) says so, which makes every
time-based behaviour exact and instant to test.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.lowlevel

from .validate import check_number

__all__ = ["Clock", "SystemClock", "ManualClock"]


@runtime_checkable
class Clock(Protocol):
    """Unix time in seconds, and a way to wait for a moment in it."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    """Wall-clock time; sleeps on the event loop's monotonic timer, re-checking wall time."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                # a past deadline still yields: a loop that sleeps until "now" must not
                # starve every other task (and stays cancellable)
                await anyio.lowlevel.checkpoint()
                return
            if remaining <= _SPIN:
                # the loop's timers round up to whole milliseconds: for the last sliver,
                # yield to the loop instead of paying another millisecond of rounding
                await anyio.lowlevel.checkpoint()
                continue
            # The loop sleeps on the monotonic clock, which can run slower than wall time
            # (seen here: ~1 ms per second of sleep): wake a little early and re-check.
            await anyio.sleep(max(0.0, remaining * (1 - _DRIFT) - _SPIN))  # >= 0 just above _SPIN

    def __repr__(self) -> str:
        return "SystemClock()"


_SPIN = 0.0015
_DRIFT = 0.002


class ManualClock:
    """A clock that only moves on :meth:`advance` / :meth:`set`.

    Sleepers wake in deadline order when time reaches their deadline. ``advance`` must be
    called from the event loop's thread (from a blocking facade, go through its portal).
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = check_number(start, "start")
        # entries: [deadline, seq, event]; a cancelled sleeper's event is set to None (lazy
        # deletion keeps cancelling O(1) with thousands of sleepers)
        self._sleepers: list[list[Any]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry: list[Any] = [deadline, next(self._seq), event]
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            entry[2] = None

    def advance(self, seconds: float) -> None:
        if check_number(seconds, "seconds") < 0:
            raise ValueError("a clock does not go backwards")
        self.set(self._now + seconds)

    def set(self, now: float) -> None:
        now = check_number(now, "now")
        if now < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = float(now)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            event = heapq.heappop(self._sleepers)[2]
            if event is not None:
                event.set()

    def next_deadline(self) -> float | None:
        """The earliest deadline a sleeper waits for (None if none): lets a test step time
        from one timer to the next instead of jumping past several at once."""
        while self._sleepers and self._sleepers[0][2] is None:
            heapq.heappop(self._sleepers)
        return float(self._sleepers[0][0]) if self._sleepers else None

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for entry in self._sleepers if entry[2] is not None)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"
