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

    __slots__ = ("_ctx", "_handle")

    def __init__(self, ctx: ExpiryContext) -> None:
        self._ctx = ctx
        self._handle: TimerHandle | None = None

    def arm(self, timers: TimerHeap | None) -> None:
        """Cancel the armed timer and arm one at the current deadline (none without a
        timer heap: a closed or not yet started session)."""
        self.cancel()
        deadline = self._ctx.expiry_deadline()
        if deadline is not None and timers is not None:
            self._handle = timers.schedule(math.nextafter(deadline, math.inf), self._due)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

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
