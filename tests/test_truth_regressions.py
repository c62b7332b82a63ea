"""Plain regression tests for what the truth-model state machine (tests/test_truth_model.py)
found or needs, each minimized to one scenario (issue 9), on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from chipi_session.backends.base import (
    ExecutionResultReader,
    NonceReader,
    SessionBackend,
    TransactionConfirmer,
)
from chipi_session.backends.faults import FaultInjectingBackend, FaultRates
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import TransactionConfirmed, TransactionFailed
from chipi_session.types import ExecutionStatus

from .gated import GatedChain
from .helpers import RECIPIENT, World, settle
from .outcome_helpers import active, record, transfer

pytestmark = pytest.mark.anyio


class _WritesAndStatusOnly:
    """A backend with only the SessionBackend methods (no optional capability)."""

    requires_bearer_token = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("outside_nonce_used", "confirm_transaction", "get_execution_result"):
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_fault_wrapper_keeps_the_inner_backends_confirmation_reads(world: World) -> None:
    """Wrapped in FaultInjectingBackend, LocalChain still confirms executes (it used to hide
    get_execution_result / confirm_transaction: every result read UNKNOWN, no event)."""
    fb = FaultInjectingBackend(world.chain)
    assert isinstance(fb, ExecutionResultReader) and isinstance(fb, TransactionConfirmer)
    assert isinstance(fb, NonceReader) and isinstance(fb, SessionBackend)
    plain = FaultInjectingBackend(_WritesAndStatusOnly(world.chain))
    assert isinstance(plain, SessionBackend)
    assert not isinstance(plain, (ExecutionResultReader, TransactionConfirmer, NonceReader))
    with pytest.raises(ValueError):
        plain.fail_next("get_execution_result", "error_before_send")
    with pytest.raises(ValueError):
        fb.fail_next("get_execution_result", "drop_response")  # a read fails only before send

    async with active(world, backend=fb) as session:
        events = record(session)
        result = await session.execute_with_session(transfer(world.token, 7), wait=True)
        assert result.status is ExecutionStatus.SUCCEEDED
        await session.execute_with_session(transfer(world.token, 8))
        await settle()
        confirmed = [e for e in events if isinstance(e, TransactionConfirmed)]
        assert [e.result.status for e in confirmed] == [ExecutionStatus.SUCCEEDED] * 2
        assert fb.calls["get_execution_result"] == 0  # not named: not planned, not counted

        fb.fail_next("get_execution_result", "error_before_send")
        unknown = await session.execute_with_session(transfer(world.token, 9), wait=True)
        assert unknown.status is ExecutionStatus.UNKNOWN and not unknown.succeeded
        assert fb.count("error_before_send", "get_execution_result") == 1
        assert not any(isinstance(e, TransactionFailed) for e in events)
        assert session.remaining_calls == 2


# -- found by the truth model ---------------------------------------------------------------------


async def test_an_execute_landing_after_a_reregister_is_still_counted(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session(duration_seconds=3600)
        await s.register_session(max_calls=2)
        gate = gated.hold("add_or_update_session_key")  # registered; the response is late
        tg.start_soon(s.register_session, 2)
        await gate.reached.wait()
        await s.execute_with_session(world.transfer(1))  # lands after the register: used 1
        gate.release()
        await settle()
        assert s.session is not None
        chain = world.chain.session_status(world.wallet.address, s.session.public_key)
        assert chain.calls_used == 1
        assert s.remaining_calls is not None and s.remaining_calls <= chain.remaining_calls
        # what the under-count costs: an execute sent that the chain refuses for its budget
        refused_by_chain = 0
        for amount in (2, 3):
            sent = gated.calls["execute_with_session"]
            try:
                await s.execute_with_session(world.transfer(amount))
            except ChipiSessionError as exc:
                if gated.calls["execute_with_session"] > sent:
                    assert exc.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
                    refused_by_chain += 1
        assert refused_by_chain == 0


async def test_an_execute_cancelled_while_its_outcome_is_resolved_stays_counted(
    world: World,
) -> None:
    """A caller cancelled while the engine resolves an execute's UNKNOWN_OUTCOME (the nonce
    read after the request was sent) must not lose it: held in doubt / counted like a timeout,
    else the pre-flight sends an execute the chain refuses for its budget."""
    gated = GatedChain(world.chain)
    fb = FaultInjectingBackend(gated)
    async with active(world, max_calls=1, backend=fb) as s:
        fb.fail_next("execute_with_session", "drop_response")  # it runs; the answer is lost
        gate = gated.hold("outside_nonce_used", when="before")  # "did it execute?" pending
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.execute_with_session, world.transfer(1))
                await gate.reached.wait()
                scope.cancel()  # the caller's fail_after fires now
        gate.release()
        await settle()
        assert world.balance(RECIPIENT) == 1  # it executed: the chain used the only call
        assert s.remaining_calls == 0 or len(s.in_doubt) == 1
        sent = (
            fb.applied["execute_with_session"]
            + fb.rejected[("execute_with_session", ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)]
        )
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(2))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        refused = fb.rejected[("execute_with_session", ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)]
        assert refused == 0 and sent == 1  # refused by the pre-flight, never sent


async def test_an_in_doubt_execute_resolved_as_executed_stays_counted(world: World) -> None:
    fb = FaultInjectingBackend(world.chain)
    async with world.session(backend=fb) as s:
        await s.create_session(duration_seconds=20_000)
        await s.register_session(max_calls=1)
        fb.fail_next("execute_with_session", "drop_response")  # it runs; the answer is lost
        fb.fail_next("outside_nonce_used", "error_before_send")  # cannot tell yet
        fb.per_method["get_session_status"] = FaultRates(error_before_send=1.0)  # re-reads fail
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.UNKNOWN_OUTCOME and info.value.applied is None
        await settle()
        assert len(s.in_doubt) == 1
        world.clock.advance(3601)  # its SNIP-9 window closed: resolved from the nonce
        await settle()
        assert not s.in_doubt and world.balance(RECIPIENT) == 1
        del fb.per_method["get_session_status"]  # reads work again; none is due
        assert s.remaining_calls == 0  # the chain used the only call
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(2))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert (
            fb.rejected[("execute_with_session", ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0
        )
