"""The expiry timer: one session's "expired by time" deadline in the scheduler's timer heap.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"). The deadline itself is the
core's rule (``SessionCore.expiry_bound``); this class only keeps one timer armed at it and
asks the facade to expire the session once the clock is past it. It holds the session (an
:class:`~.context.ExpiryContext`) and the armed handle, nothing else: one per session, so a
hub of thousands carries no bound methods for it. Expiry is inclusive (at
``now == valid_until`` the session still signs), so the timer fires at the first instant
after the deadline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..scheduling import TimerHandle, TimerHeap
    from .context import ExpiryContext

__all__ = ["ExpiryTimer"]


class ExpiryTimer:
    """One armed expiry deadline of ``ctx``: its ``expiry_deadline()`` (the core's bound, or
    None when nothing can expire by time), its ``clock``, ``expire_by_time()`` (the facade's
    expiry by time) and ``reschedule()`` (for a timer that fired early because the deadline
    moved later)."""

    __slots__ = ("_ctx", "_handle", "_timers")

    def __init__(self, ctx: ExpiryContext) -> None:
        self._ctx = ctx
        self._handle: TimerHandle | None = None
        self._timers: TimerHeap | None = None  # the heap ``_handle`` is in

    def arm(self, timers: TimerHeap | None) -> None:
        """Arm the timer at the current deadline (none without a timer heap: a closed or
        not yet started session). A timer still armed at that deadline in that heap is
        kept: every execute re-arms, and the deadline rarely moves (a heap entry saved)."""
        deadline = self._ctx.expiry_deadline()
        if deadline is None or timers is None:
            self.cancel()
            return
        at = math.nextafter(deadline, math.inf)
        handle = self._handle
        if handle is not None and handle.active and handle.deadline == at:
            if self._timers is timers:
                return
        self.cancel()
        self._handle = timers.schedule(at, self._due)
        self._timers = timers

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._timers = None

    def _due(self) -> None:
        self._handle = None
        ctx = self._ctx
        deadline = ctx.expiry_deadline()
        if deadline is None:
            return
        if ctx.clock.now() > deadline:
            ctx.expire_by_time()
        else:
            ctx.reschedule()
