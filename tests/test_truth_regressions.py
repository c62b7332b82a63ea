"""Plain regression tests for what the truth-model state machine (tests/test_truth_model.py)
found or needs, each minimized to one scenario (issue 9), on asyncio and trio."""

from __future__ import annotations

from typing import Any

import pytest

from chipi_session.backends.base import (
    ExecutionResultReader,
    NonceReader,
    SessionBackend,
    TransactionConfirmer,
)
from chipi_session.backends.faults import FaultInjectingBackend
from chipi_session.events import TransactionConfirmed, TransactionFailed
from chipi_session.types import ExecutionStatus

from .helpers import World, settle
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
