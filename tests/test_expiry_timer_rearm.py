"""handlers/timers.py: re-arming the expiry timer at an unchanged deadline keeps the armed
timer (every execute re-arms it; issue 12), and a moved deadline, another heap or a timer
that already fired still arms a new one. A heap that counts what is scheduled stands in for
the scheduler's."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import attrs
import pytest

from chipi_session.clock import ManualClock
from chipi_session.handlers.timers import ExpiryTimer
from chipi_session.scheduling import TimerHandle, TimerHeap

from .helpers import START, settle

DEADLINE = START + 100


class CountingHeap(TimerHeap):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.scheduled: list[TimerHandle] = []

    def schedule(self, deadline: float, callback: Callable[[], object]) -> TimerHandle:
        handle = super().schedule(deadline, callback)
        self.scheduled.append(handle)
        return handle


@attrs.define
class Session:
    """The timer's ExpiryContext: a deadline, recorders for expiry and re-arm."""

    clock: ManualClock
    deadline: float | None = DEADLINE
    expired: int = 0
    rearmed: int = 0

    def expiry_deadline(self) -> float | None:
        return self.deadline

    def expire_by_time(self) -> None:
        self.expired += 1

    def reschedule(self) -> None:
        self.rearmed += 1


def test_an_unchanged_deadline_keeps_the_armed_timer() -> None:
    clock = ManualClock(START)
    heap = CountingHeap(clock)
    session = Session(clock)
    timer = ExpiryTimer(session)
    for _ in range(5):
        timer.arm(heap)
    assert len(heap.scheduled) == 1 and len(heap) == 1
    assert heap.scheduled[0].active and heap.scheduled[0].deadline > DEADLINE


@pytest.mark.anyio
async def test_a_moved_deadline_another_heap_or_a_fired_timer_arms_anew() -> None:
    clock = ManualClock(START)
    heap, other = CountingHeap(clock), CountingHeap(clock)
    session = Session(clock)
    timer = ExpiryTimer(session)
    timer.arm(heap)
    session.deadline = DEADLINE + 10  # moved: the old one is cancelled
    timer.arm(heap)
    assert len(heap.scheduled) == 2 and not heap.scheduled[0].active and len(heap) == 1
    timer.arm(other)  # the same deadline in another heap (a new scheduler)
    assert len(other.scheduled) == 1 and len(heap) == 0 and len(other) == 1
    timer.cancel()
    timer.arm(other)  # cancelled: armed again
    assert len(other.scheduled) == 2 and len(other) == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(other.run)
        clock.set(DEADLINE + 11)
        await settle()
        tg.cancel_scope.cancel()
    assert session.expired == 1 and len(other) == 0
    timer.arm(other)  # fired: armed again, not mistaken for the still-armed one
    assert len(other.scheduled) == 3 and len(other) == 1
    session.deadline = None  # nothing can expire by time any more
    timer.arm(other)
    assert len(other) == 0
