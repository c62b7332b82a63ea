"""SystemClock.sleep_until just above its spin threshold (a hub's timers hit this in the fleet)."""

from __future__ import annotations

import itertools

import pytest

from chipi_session import clock as clock_module
from chipi_session.clock import SystemClock

pytestmark = pytest.mark.anyio


async def test_sleep_until_a_hair_above_the_spin_window(monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = 1_000.0
    # remaining = 0.0015001 s: above the 1.5 ms spin window, but the early-wake margin would
    # make the computed sleep negative (anyio refuses those)
    readings = itertools.chain([deadline - 0.0015001], itertools.repeat(deadline))
    monkeypatch.setattr(clock_module.time, "time", lambda: next(readings))
    await SystemClock().sleep_until(deadline)
