"""handlers/timers.py on its own: ``ExpiryTimer`` in a real ``TimerHeap`` on a manual clock.

The heap's task runs in a task group; time only moves when a test moves it. The rig stands
in for the session (the timer's ``ExpiryContext``): its deadline, expiry and re-arm are plain
recorders standing in for the core and the facade.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import anyio
import attrs
import pytest

from chipi_session.clock import ManualClock
from chipi_session.handlers.timers import ExpiryTimer
from chipi_session.scheduling import TimerHeap

from .helpers import START, settle

pytestmark = pytest.mark.anyio

DEADLINE = START + 100


@attrs.define
class Rig:
    """An ExpiryTimer over this rig as its session: ``deadline`` is what the core would
    answer."""

    clock: ManualClock
    heap: TimerHeap
    deadline: float | None = DEADLINE
    expired: list[float] = attrs.Factory(list)
    rearmed: list[float] = attrs.Factory(list)
    timer: ExpiryTimer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.timer = ExpiryTimer(self)

    # ExpiryContext
    def expiry_deadline(self) -> float | None:
        return self.deadline

    def expire_by_time(self) -> None:
        self.expired.append(self.clock.now())

    def reschedule(self) -> None:
        self.rearmed.append(self.clock.now())

    async def at(self, now: float) -> None:
        """Move the clock to ``now`` and let the heap fire what is due."""
        self.clock.set(now)
        await settle()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = ManualClock(START)
    heap = TimerHeap(clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(heap.run)
        await settle()
        yield Rig(clock, heap)
        tg.cancel_scope.cancel()


async def test_expiry_is_inclusive_it_fires_just_after_the_deadline(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    assert len(rig.heap) == 1
    await rig.at(DEADLINE)  # at valid_until the session still signs
    assert rig.expired == []
    await rig.at(math.nextafter(DEADLINE, math.inf))
    assert rig.expired == [math.nextafter(DEADLINE, math.inf)]
    await rig.at(DEADLINE + 1000)
    assert len(rig.expired) == 1  # once
    assert rig.rearmed == []
    assert len(rig.heap) == 0


async def test_nothing_is_armed_without_a_deadline_or_a_heap(rig: Rig) -> None:
    rig.timer.arm(None)  # a closed or not yet started session
    assert len(rig.heap) == 0
    rig.deadline = None  # nothing can expire by time
    rig.timer.arm(rig.heap)
    assert len(rig.heap) == 0
    await rig.at(DEADLINE + 1000)
    assert rig.expired == [] and rig.rearmed == []


async def test_arming_again_replaces_the_armed_deadline(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    rig.deadline = DEADLINE + 50
    rig.timer.arm(rig.heap)
    assert len(rig.heap) == 1  # the first one was cancelled
    await rig.at(DEADLINE + 1)
    assert rig.expired == [] and rig.rearmed == []
    await rig.at(DEADLINE + 51)
    assert rig.expired == [DEADLINE + 51]


async def test_a_deadline_moved_later_asks_for_a_re_arm_instead_of_expiring(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    rig.deadline = DEADLINE + 50  # moved without re-arming: the old timer fires early
    await rig.at(DEADLINE + 1)
    assert rig.expired == []
    assert rig.rearmed == [DEADLINE + 1]


async def test_a_deadline_moved_to_the_firing_instant_is_not_past_yet(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    rig.deadline = DEADLINE + 1  # the timer fires at DEADLINE + 1, which is still valid
    await rig.at(DEADLINE + 1)
    assert rig.expired == []
    assert rig.rearmed == [DEADLINE + 1]


async def test_a_deadline_gone_before_the_timer_fires_does_nothing(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    rig.deadline = None
    await rig.at(DEADLINE + 1)
    assert rig.expired == [] and rig.rearmed == []


async def test_cancel_disarms(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    rig.timer.cancel()
    rig.timer.cancel()  # twice is harmless
    assert len(rig.heap) == 0
    await rig.at(DEADLINE + 1)
    assert rig.expired == []


async def test_a_fired_timer_can_be_armed_again(rig: Rig) -> None:
    rig.timer.arm(rig.heap)
    await rig.at(DEADLINE + 1)
    rig.deadline = DEADLINE + 10  # e.g. a re-register moved valid_until
    rig.timer.arm(rig.heap)
    await rig.at(DEADLINE + 11)
    assert rig.expired == [DEADLINE + 1, DEADLINE + 11]
