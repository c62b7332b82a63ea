"""Execution outcomes (issue 9 §1): what the engine reports for an execute is what the chain did.

The v33 account runs a multicall non-atomically: a call that panics leaves an empty result and
the transaction still succeeds, spending one call. Each failing call kind is run over LocalChain
(here) and over ChipiApiBackend + localnet (test_execution_outcomes_net.py); ``wait=True``
raises ``CALL_FAILED``, ``wait=False`` confirms in the background. A reverted transaction (a
spending-limit revert on a direct INVOKE), a rejected one, an unreadable result and a backend
that cannot read outcomes are covered, and so are cancellation and close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipi_session.backends.base import ExecutionResultReader
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import (
    TransactionConfirmed,
    TransactionFailed,
    TransactionSubmitted,
)
from chipi_session.execution_results import (
    InnerCall,
    build_execution_result,
    fit_to_calls,
    multicall_from_rpc_trace,
    panic_data,
    panic_text,
)
from chipi_session.felts import selector
from chipi_session.keys import SecretKey
from chipi_session.types import (
    Call,
    CallOutcome,
    ExecutionResult,
    ExecutionStatus,
    WalletData,
)

from .helpers import PIN, RECIPIENT, World, make_world, settle
from .outcome_helpers import (
    FAILING_CALLS,
    KINDS,
    NOWHERE,
    FailingCall,
    active,
    calls_used,
    invoke_as_session,
    record,
    transfer,
)

pytestmark = pytest.mark.anyio

# -- LocalChain ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_failed_inner_call_raises_call_failed_when_waiting(kind: FailingCall) -> None:
    _, make_call, reason = kind
    world = make_world()
    async with active(world) as session:
        events = record(session)
        before = world.balance(world.wallet.address)
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([make_call(world.token)], wait=True)
        err = e.value
        assert err.code is ErrorCode.CALL_FAILED
        assert err.applied is True and err.retryable is False
        assert err.result is not None and err.result.status is ExecutionStatus.CALL_FAILED
        assert err.result.failed_call_index == 0
        assert err.result.calls == (CallOutcome(0, False, reason, ()),)
        assert session.error is err
        # budget and state follow the chain: the transaction executed and consumed a call
        assert calls_used(world, session) == 1 and session.remaining_calls == 4
        assert world.balance(world.wallet.address) == before
        failed = [ev for ev in events if isinstance(ev, TransactionFailed)]
        assert len(failed) == 1 and failed[0].error is err and failed[0].result == err.result
        assert not any(isinstance(ev, TransactionConfirmed) for ev in events)


@pytest.mark.parametrize("kind", KINDS)
async def test_failed_inner_call_confirmed_in_background(kind: FailingCall) -> None:
    _, make_call, reason = kind
    world = make_world()
    async with active(world) as session:
        events = record(session)
        tx = await session.execute_with_session([make_call(world.token)])
        assert isinstance(tx, str) and tx.startswith("0x")
        await settle()
        kinds = [type(ev) for ev in events]
        assert kinds.index(TransactionSubmitted) < kinds.index(TransactionFailed)
        failed = next(ev for ev in events if isinstance(ev, TransactionFailed))
        assert failed.tx_hash == tx and failed.result is not None
        assert session.session is not None
        assert failed.session_public_key == hex(session.session.public_key)
        assert failed.result.calls[0].reason == reason
        assert session.error is failed.error and failed.error.code is ErrorCode.CALL_FAILED
        assert session.remaining_calls == 4 and calls_used(world, session) == 1


async def test_multicall_second_call_fails_half_applied() -> None:
    world = make_world()
    async with active(world) as session:
        calls = [transfer(world.token, 5), transfer(world.token, 10**15)]
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session(calls, wait=True)
        result = e.value.result
        assert e.value.code is ErrorCode.CALL_FAILED and result is not None
        assert result.failed_call_index == 1
        assert result.calls[0] == CallOutcome(0, True, None, (1,))
        assert result.calls[1].ok is False and "insufficient balance" in str(result.calls[1].reason)
        assert len(result.events) == 1  # the first transfer's Transfer event
        assert world.balance(RECIPIENT) == 5  # the first transfer was applied
        assert session.remaining_calls == 4 and calls_used(world, session) == 1


async def test_success_is_confirmed() -> None:
    world = make_world()
    async with active(world) as session:
        events = record(session)
        result = await session.execute_with_session([transfer(world.token, 7)], wait=True)
        assert isinstance(result, ExecutionResult)
        assert result.status is ExecutionStatus.SUCCEEDED and result.succeeded
        assert result.calls == (CallOutcome(0, True, None, (1,)),)
        assert result.failed_call_index is None and session.error is None
        tx = await session.execute_with_session([transfer(world.token, 7)])
        await settle()
        confirmed = [ev for ev in events if isinstance(ev, TransactionConfirmed)]
        assert [ev.tx_hash for ev in confirmed] == [result.tx_hash, tx]
        assert all(ev.result.status is ExecutionStatus.SUCCEEDED for ev in confirmed)
        assert session.remaining_calls == 3 and world.balance(RECIPIENT) == 14


async def test_wait_must_be_a_bool() -> None:
    world = make_world()
    async with active(world) as session:
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([transfer(world.token, 1)], wait="yes")  # type: ignore[call-overload]
        assert e.value.code is ErrorCode.INVALID_INPUT
        assert session.remaining_calls == 5 and world.balance(RECIPIENT) == 0


class Blind:
    """A SessionBackend over LocalChain with no way to read results (explicit delegation)."""

    requires_bearer_token = False

    def __init__(self, world: World) -> None:
        self._chain = world.chain
        self.clock = world.clock
        self.add_or_update_session_key = self._chain.add_or_update_session_key
        self.revoke_session_key = self._chain.revoke_session_key
        self.execute_with_session = self._chain.execute_with_session
        self.get_session_status = self._chain.get_session_status
        self.set_spending_policy = self._chain.set_spending_policy
        self.remove_spending_policy = self._chain.remove_spending_policy
        self.get_spending_policy = self._chain.get_spending_policy


async def test_backend_without_the_capability_is_unknown_never_succeeded() -> None:
    world = make_world()
    backend = Blind(world)
    assert not isinstance(backend, ExecutionResultReader)
    async with active(world, backend=backend) as session:
        events = record(session)
        failing = FAILING_CALLS[0][1](world.token)
        result = await session.execute_with_session([transfer(world.token, 3), failing], wait=True)
        assert result.status is ExecutionStatus.UNKNOWN
        assert not result.succeeded and not result.failed
        assert [c.ok for c in result.calls] == [None, None]
        await session.execute_with_session([transfer(world.token, 3)])
        await settle()
        assert not any(isinstance(ev, (TransactionConfirmed, TransactionFailed)) for ev in events)
        assert session.remaining_calls == 3


class SlowResults:
    """LocalChain whose result reads never answer (to prove close cancels the confirmation)."""

    def __init__(self, world: World) -> None:
        self._chain = world.chain
        self.started = 0
        self.cancelled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        self.started += 1
        try:
            await anyio.sleep_forever()
        finally:
            self.cancelled += 1
        raise AssertionError("unreachable")


async def test_background_confirmation_is_cancelled_on_close() -> None:
    world = make_world()
    backend = SlowResults(world)
    async with active(world, backend=backend) as session:
        await session.execute_with_session([transfer(world.token, 2)])
        await settle()
        assert backend.started == 1 and backend.cancelled == 0
    assert backend.cancelled == 1  # leaving the session cancelled it; nothing leaked


async def test_reverted_invoke_follows_the_chain() -> None:
    """A direct INVOKE whose ``__execute__`` panics (a spending limit the engine did not know
    about) is REVERTED, yet its validate phase consumed a call (docs/contract.md, "A direct
    INVOKE, end to end")."""
    world = make_world()
    backend = InvokeWrites(world)
    async with active(world, backend=backend) as session:
        assert session.session is not None
        owner = world.vault.decrypt(world.wallet.encrypted_private_key, PIN)
        await world.chain.set_spending_policy(
            world.wallet,
            owner,
            session_public_key=session.session.public_key,
            token=world.token,
            max_per_call=10,
            max_per_window=10,
            window_seconds=3600,
        )
        events = record(session)
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([transfer(world.token, 50)], wait=True)
        result = e.value.result
        assert e.value.code is ErrorCode.CALL_FAILED and e.value.applied is True
        assert result is not None and result.status is ExecutionStatus.REVERTED
        assert "Spending: exceeds" in str(result.revert_reason)
        assert [c.ok for c in result.calls] == [False]
        assert world.balance(RECIPIENT) == 0
        assert calls_used(world, session) == 1 and session.remaining_calls == 4
        assert any(isinstance(ev, TransactionFailed) for ev in events)


class InvokeWrites:
    """LocalChain, but executes go as the account's own INVOKE signed by the session key."""

    def __init__(self, world: World) -> None:
        self._chain = world.chain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
        on_submit: Any = None,
    ) -> str:
        return invoke_as_session(self._chain, wallet.address, session_key, valid_until, calls)


# -- result building (every backend's shared path) --------------------------------------------


def test_panic_data_round_trips() -> None:
    for text in ("ENTRYPOINT_NOT_FOUND", "x" * 31, "Spending: exceeds max per call" * 3):
        assert panic_text(panic_data(text)) == text
    assert panic_text([0x123456789ABCDEF0123]) == "0x123456789abcdef0123"


def test_unknown_unless_the_trace_says() -> None:
    ok = build_execution_result("0x1", reverted=False, inner=[InnerCall(False, (1,))])
    assert ok.status is ExecutionStatus.SUCCEEDED
    assert build_execution_result("0x1", reverted=False).status is ExecutionStatus.UNKNOWN
    partial = build_execution_result("0x1", reverted=False, inner=[InnerCall(None)])
    assert partial.status is ExecutionStatus.UNKNOWN and partial.calls[0].ok is None
    # outcomes that do not line up with the calls sent are not trusted
    fitted = fit_to_calls(ok, 2)
    assert fitted.status is ExecutionStatus.UNKNOWN and [c.ok for c in fitted.calls] == [None] * 2
    reverted = fit_to_calls(build_execution_result("0x1", reverted=True, revert_reason="r"), 2)
    assert reverted.status is ExecutionStatus.REVERTED
    assert [c.ok for c in reverted.calls] == [False, False]


def test_rpc_traces_without_is_reverted_are_unknown() -> None:
    outside = hex(selector("execute_from_outside_v2"))
    child: dict[str, Any] = {
        "entry_point_selector": hex(selector("transfer")),
        "result": ["0x1"],
        "calls": [],
    }
    trace = {
        "execute_invocation": {
            "entry_point_selector": hex(selector("__execute__")),
            "calls": [{"entry_point_selector": outside, "calls": [child]}],
        }
    }
    inner = multicall_from_rpc_trace(trace)
    assert inner == [InnerCall(None, (1,), None)]  # an RPC 0.7 node: cannot tell
    child["is_reverted"] = True
    child["result"] = [hex(x) for x in panic_data("ERC20: transfer to 0")]
    assert multicall_from_rpc_trace(trace) == [InnerCall(True, (), "ERC20: transfer to 0")]
    assert multicall_from_rpc_trace({"execute_invocation": {"revert_reason": "x"}}) is None
    assert multicall_from_rpc_trace(None) is None


class GatedResults:
    """LocalChain whose result reads wait for a gate (to cancel a waiting caller first)."""

    def __init__(self, world: World) -> None:
        self._chain = world.chain
        self.gate = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        await self.gate.wait()
        return await self._chain.get_execution_result(tx_hash)


async def test_a_caller_that_stops_waiting_does_not_stop_the_confirmation() -> None:
    world = make_world()
    backend = GatedResults(world)
    async with active(world, backend=backend) as session:
        events = record(session)
        failing = FAILING_CALLS[0][1](world.token)

        async def caller() -> None:
            await session.execute_with_session([failing], wait=True)

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await settle()
                scope.cancel()  # the caller gives up while the result is being read
        assert not any(isinstance(ev, TransactionFailed) for ev in events)
        backend.gate.set()
        await settle()
        failed = [ev for ev in events if isinstance(ev, TransactionFailed)]
        assert len(failed) == 1 and failed[0].error.code is ErrorCode.CALL_FAILED
        assert session.remaining_calls == 4 and calls_used(world, session) == 1


@pytest.mark.parametrize("backend_name", ["asyncio", "trio"])
def test_blocking_execute_and_wait(backend_name: str) -> None:
    world = make_world()
    with world.blocking(backend_name) as session:
        session.create_session(3600)
        session.register_session(max_calls=5)
        ok = session.execute_and_wait([transfer(world.token, 4)])
        assert ok.status is ExecutionStatus.SUCCEEDED
        with pytest.raises(ChipiSessionError) as e:
            session.execute_and_wait([transfer(world.token, 4), transfer(world.token, 10**15)])
        assert e.value.code is ErrorCode.CALL_FAILED and e.value.result is not None
        assert e.value.result.failed_call_index == 1
        assert world.balance(RECIPIENT) == 8 and session.remaining_calls == 3


async def test_hub_close_cancels_the_confirmation_the_hub_keeps_running() -> None:
    from chipi_session.hub import SessionHub

    world = make_world()
    backend = SlowResults(world)
    async with SessionHub(backend=backend, clock=world.clock, vault=world.vault) as hub:
        session = await hub.open(wallet=world.wallet, encrypt_key=PIN, auto_check_status=False)
        await session.create_session(3600)
        await session.register_session(max_calls=5)
        await session.execute_with_session([transfer(world.token, 2)])
        await settle()
        assert backend.started == 1 and backend.cancelled == 0
        await hub.close(session)
        await settle()
        assert backend.cancelled == 1  # the session's task, not the hub's, was cancelled
        other = await hub.open(wallet=world.wallet, encrypt_key=PIN, auto_check_status=False)
        await other.create_session(3600)
        assert other.session is not None


class ScriptedResults:
    """LocalChain whose result reads raise a given error."""

    def __init__(self, world: World, error: ChipiSessionError) -> None:
        self._chain = world.chain
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        raise self.error


async def test_rejected_transaction_is_not_applied() -> None:
    world = make_world()
    rejected = ChipiSessionError(ErrorCode.TRANSACTION_REJECTED, "REJECTED: out of gas")
    async with active(world, backend=ScriptedResults(world, rejected)) as session:
        events = record(session)
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([transfer(world.token, 1)], wait=True)
        assert e.value.code is ErrorCode.TRANSACTION_REJECTED and e.value.applied is False
        failed = [ev for ev in events if isinstance(ev, TransactionFailed)]
        assert len(failed) == 1 and failed[0].result is None and session.error is e.value
        # the budget is re-read from the chain (here the transfer did run: the chain counts it)
        assert session.remaining_calls == 5 - calls_used(world, session)


async def test_unreadable_result_is_unknown_not_an_error() -> None:
    world = make_world()
    timeout = ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, "not confirmed within 180s")
    async with active(world, backend=ScriptedResults(world, timeout)) as session:
        events = record(session)
        result = await session.execute_with_session([transfer(world.token, 1)], wait=True)
        assert result.status is ExecutionStatus.UNKNOWN and not result.succeeded
        assert session.error is None and session.remaining_calls == 4
        assert not any(isinstance(ev, (TransactionConfirmed, TransactionFailed)) for ev in events)


# -- property: every reported outcome is what the balances show ----------------------------------

_KIND_CALLS: dict[str, Callable[[int, int, int], Call]] = {
    "ok": lambda t, to, n: Call(to=t, selector="transfer", calldata=[to, n, 0]),
    "unaffordable": lambda t, to, n: Call(to=t, selector="transfer", calldata=[to, 10**15, 0]),
    "to_zero": lambda t, to, n: Call(to=t, selector="transfer", calldata=[0, n, 0]),
    "no_contract": lambda t, to, n: Call(to=NOWHERE, selector="transfer", calldata=[to, n, 0]),
    "missing_ep": lambda t, to, n: Call(to=t, selector="no_such_entrypoint", calldata=[to]),
}
_batches = st.lists(
    st.lists(
        st.tuples(st.sampled_from(sorted(_KIND_CALLS)), st.integers(1, 500)), min_size=1, max_size=4
    ),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("backend_name", ["asyncio", "trio"])
@settings(max_examples=15, deadline=None)
@given(batches=_batches, wait=st.booleans())
def test_reported_outcomes_match_the_balances(
    backend_name: str, batches: list[list[tuple[str, int]]], wait: bool
) -> None:
    """Each call reported applied moved exactly its amount to its own recipient; each call
    reported failed moved nothing; the budget is the chain's."""

    async def scenario() -> None:
        world = make_world()
        moved: dict[int, int] = {}
        reported: list[ExecutionResult] = []
        async with active(world, max_calls=10) as session:
            session.add_listener(
                lambda ev: (
                    reported.append(ev.result)
                    if isinstance(ev, (TransactionConfirmed, TransactionFailed)) and ev.result
                    else None
                )
            )
            recipient = 0x1000
            for batch in batches:
                calls, plan = [], []
                for kind, amount in batch:
                    recipient += 1
                    calls.append(_KIND_CALLS[kind](world.token, recipient, amount))
                    plan.append((kind, recipient, amount))
                try:
                    await session.execute_with_session(calls, wait=wait)
                except ChipiSessionError as exc:
                    assert exc.code is ErrorCode.CALL_FAILED
                await settle()
                result = reported[-1]
                assert len(result.calls) == len(plan)
                assert (result.status is ExecutionStatus.SUCCEEDED) == all(
                    k == "ok" for k, _, _ in plan
                )
                for outcome, (kind, to, amount) in zip(result.calls, plan, strict=True):
                    assert outcome.ok is (kind == "ok")
                    if outcome.ok:
                        moved[to] = amount
            assert len(reported) == len(batches)
            for to in range(0x1001, recipient + 1):
                assert world.balance(to) == moved.get(to, 0)
            assert session.remaining_calls == 10 - len(batches) == 10 - calls_used(world, session)

    anyio.run(scenario, backend=backend_name)


def test_panic_text_never_raises_on_hostile_data() -> None:
    from chipi_session.execution_results import BYTE_ARRAY_MAGIC

    for felts in (
        [BYTE_ARRAY_MAGIC],
        [BYTE_ARRAY_MAGIC, 5, 1],
        [BYTE_ARRAY_MAGIC, 0, 1 << 250, 3],
        [BYTE_ARRAY_MAGIC, 1, 1 << 250, 0, 0],
        [BYTE_ARRAY_MAGIC, 0, 0, 10**9],
        [(1 << 251) + 17],
    ):
        assert isinstance(panic_text(felts), str)
