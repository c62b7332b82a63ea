"""The expiry timer: one session's "expired by time" deadline in the scheduler's timer heap.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"). The deadline itself is the
core's rule (``SessionCore.expiry_bound``); this class only keeps one timer armed at it and
asks the facade to expire the session once the clock is past it. Expiry is inclusive (at
``now == valid_until`` the session still signs), so the timer fires at the first instant
after the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..scheduling import TimerHandle, TimerHeap

__all__ = ["ExpiryTimer"]


class ExpiryTimer:
    """One armed expiry deadline, handed what it needs: ``deadline()`` (the core's bound, or
    None when nothing can expire by time), ``now()`` (the injected clock), ``expire()`` (the
    facade's expiry by time) and ``rearm()`` (the facade's re-scheduling, for a timer that
    fired early because the deadline moved later)."""

    __slots__ = ("_deadline", "_expire", "_handle", "_now", "_rearm")

    def __init__(
        self,
        *,
        deadline: Callable[[], float | None],
        now: Callable[[], float],
        expire: Callable[[], None],
        rearm: Callable[[], None],
    ) -> None:
        self._deadline = deadline
        self._now = now
        self._expire = expire
        self._rearm = rearm
        self._handle: TimerHandle | None = None

    def arm(self, timers: TimerHeap | None) -> None:
        """Cancel the armed timer and arm one at the current deadline (none without a
        timer heap: a closed or not yet started session)."""
        self.cancel()
        deadline = self._deadline()
        if deadline is not None and timers is not None:
            self._handle = timers.schedule(math.nextafter(deadline, math.inf), self._due)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _due(self) -> None:
        self._handle = None
        deadline = self._deadline()
        if deadline is None:
            return
        if self._now() > deadline:
            self._expire()
        else:
            self._rearm()
