"""An execute confirmed in the execute itself (issue 12): a backend whose results are final at
submit (``FinalExecutionResults``: LocalChain) is confirmed without a background task, and
reports exactly what a background confirmation reports: the same events in the same order,
``CALL_FAILED`` for a failed inner call, the error kept on the session. A subclass or a
wrapper that reads results its own way is always read through its ``get_execution_result``.
Also the lifecycle's short cut for unguarded self-loops (``execute``), which must answer what
the ``transitions`` machine answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from chipi_session import lifecycle
from chipi_session.backends.base import (
    ExecutionResultReader,
    FinalExecutionResults,
    reads_final_results,
)
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import (
    Event,
    StateChanged,
    TransactionConfirmed,
    TransactionFailed,
    TransactionSubmitted,
)
from chipi_session.localchain import LocalChain
from chipi_session.types import ExecutionResult, ExecutionStatus, SessionState

from .helpers import World, make_world, settle
from .outcome_helpers import FAILING_CALLS, active, calls_used, record, transfer

pytestmark = pytest.mark.anyio


class Forwarding:
    """LocalChain behind a wrapper that forwards everything and reads results through its
    own ``get_execution_result`` (counted): a background-confirmed reader."""

    def __init__(self, world: World) -> None:
        self._chain = world.chain
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        self.reads += 1
        return await self._chain.get_execution_result(tx_hash)


class ReadsItsOwnWay(LocalChain):
    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        return await super().get_execution_result(tx_hash)


def test_only_a_backend_whose_own_class_reads_final_results_is_confirmed_inline() -> None:
    world = make_world()
    assert isinstance(world.chain, FinalExecutionResults)
    assert reads_final_results(world.chain)
    wrapper = Forwarding(world)
    # the wrapper forwards final_execution_result, yet reads results its own way
    assert isinstance(wrapper, ExecutionResultReader) and isinstance(wrapper, FinalExecutionResults)
    assert not reads_final_results(wrapper)
    assert not reads_final_results(ReadsItsOwnWay())
    assert not reads_final_results(object())


def _shape(events: list[Event]) -> list[tuple[Any, ...]]:
    """The events without what differs between two worlds (keys, hashes, times)."""
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if isinstance(ev, StateChanged):
            out.append((StateChanged, ev.previous, ev.current, ev.reason))
        elif isinstance(ev, (TransactionSubmitted, TransactionConfirmed, TransactionFailed)):
            out.append((type(ev), ev.action))
        else:
            out.append((type(ev),))
    return out


async def _run(world: World, backend: object | None, wait: bool) -> list[Event]:
    kw = {} if backend is None else {"backend": backend}
    async with active(world, max_calls=2, **kw) as session:
        events = record(session)
        for amount in (1, 2):  # the second one exhausts the budget: expired (calls)
            out = await session.execute_with_session([transfer(world.token, amount)], wait=wait)
            if wait:
                assert isinstance(out, ExecutionResult) and out.succeeded
            await settle()
        assert session.session_state is SessionState.EXPIRED and session.error is None
        return events


@pytest.mark.parametrize("wait", [False, True])
async def test_inline_confirmation_publishes_what_a_background_one_does(wait: bool) -> None:
    inline_world = make_world()
    inline = await _run(inline_world, None, wait)
    background_world = make_world()
    wrapper = Forwarding(background_world)
    background = await _run(background_world, wrapper, wait)
    assert wrapper.reads == 2  # the wrapper really confirmed through its reader
    assert _shape(inline) == _shape(background)
    kinds = [type(ev) for ev in inline]
    assert kinds.count(TransactionConfirmed) == 2
    first_submit = kinds.index(TransactionSubmitted)
    assert kinds.index(TransactionConfirmed) > first_submit
    submitted = [ev.tx_hash for ev in inline if isinstance(ev, TransactionSubmitted)]
    confirmed = [ev for ev in inline if isinstance(ev, TransactionConfirmed)]
    assert [ev.tx_hash for ev in confirmed] == submitted[-2:]
    assert all(ev.result is not None and ev.result.succeeded for ev in confirmed)


async def test_inline_confirmation_is_published_before_execute_returns() -> None:
    world = make_world()
    async with active(world) as session:
        events = record(session)
        tx = await session.execute_with_session([transfer(world.token, 1)])
        # no settle(): confirmed by the execute itself
        confirmed = [ev for ev in events if isinstance(ev, TransactionConfirmed)]
        assert [ev.tx_hash for ev in confirmed] == [tx]
        assert session.session is not None
        assert confirmed[0].session_public_key == hex(session.session.public_key)


@pytest.mark.parametrize("kind", FAILING_CALLS, ids=[k[0] for k in FAILING_CALLS])
async def test_a_failing_inner_call_is_still_call_failed(kind: Any) -> None:
    _, make_call, reason = kind
    world = make_world()
    assert reads_final_results(world.chain)
    async with active(world) as session:
        events = record(session)
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([make_call(world.token)], wait=True)
        assert e.value.code is ErrorCode.CALL_FAILED and session.error is e.value
        assert e.value.result is not None
        assert e.value.result.status is ExecutionStatus.CALL_FAILED
        tx = await session.execute_with_session([make_call(world.token)])
        await settle()
        failed = [ev for ev in events if isinstance(ev, TransactionFailed)]
        assert len(failed) == 2 and failed[1].tx_hash == tx
        assert failed[1].result is not None and failed[1].result.calls[0].reason == reason
        # the background path keeps the error after the action's success cleared it
        assert session.error is failed[1].error and session.error.code is ErrorCode.CALL_FAILED
        assert not any(isinstance(ev, TransactionConfirmed) for ev in events)
        assert calls_used(world, session) == 2


# -- lifecycle.fire's short cut for unguarded self-loops ------------------------------------


def test_an_unguarded_self_loop_answers_what_the_machine_answers() -> None:
    for trigger in ("execute", "create"):
        row = next(t for t in lifecycle.TRANSITIONS if t.trigger == trigger)
        fast = lifecycle.SessionModel(row.dest, "before")
        slow = lifecycle.SessionModel(row.dest, "before")
        assert lifecycle.fire(fast, trigger, reason="why") == (row.dest, row.dest)
        assert lifecycle.machine().events[trigger].trigger(slow, state_reason="before")
        assert fast.state == slow.state == row.dest.value
        assert fast.reason == "why"
        assert lifecycle.fire(fast, trigger) == (row.dest, row.dest)
        assert fast.reason == trigger


@pytest.mark.parametrize("state", [s for s in SessionState if s is not SessionState.ACTIVE])
def test_execute_outside_active_is_still_refused(state: SessionState) -> None:
    model = lifecycle.SessionModel(state, "r")
    with pytest.raises(ChipiSessionError) as e:
        lifecycle.fire(model, "execute")
    assert e.value.code is ErrorCode.INVALID_INPUT
    assert model.current is state and model.reason == "r"
