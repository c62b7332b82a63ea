"""Execution outcomes (issue 9 §1): what the engine reports for an execute is what the chain did.

The v33 account runs a multicall non-atomically: a call that panics leaves an empty result and
the transaction still succeeds, spending one call. Each failing call kind is run over LocalChain
and over ChipiApiBackend + localnet (receipt + ``starknet_traceTransaction``); ``wait=True``
raises ``CALL_FAILED``, ``wait=False`` confirms in the background. A reverted transaction (a
spending-limit revert on a direct INVOKE) and a backend that cannot read outcomes are covered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
import pytest

from chipi_session.backends.base import ExecutionResultReader
from chipi_session.clock import ManualClock
from chipi_session.engine import ChipiSession
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import (
    Event,
    TransactionConfirmed,
    TransactionFailed,
    TransactionSubmitted,
)
from chipi_session.execution import (
    InnerCall,
    build_execution_result,
    fit_to_calls,
    multicall_from_rpc_trace,
    panic_data,
    panic_text,
)
from chipi_session.felts import selector
from chipi_session.hashing import session_validate_hash
from chipi_session.keys import SecretKey, generate_private_key
from chipi_session.types import (
    Call,
    CallOutcome,
    ExecutedEvent,
    ExecutionResult,
    ExecutionStatus,
    WalletData,
)
from chipi_session.vault import KdfCost, Vault

from .helpers import PIN, RECIPIENT, World, make_world, settle

pytestmark = pytest.mark.anyio

OTHER = 0xC0FFEE
NOWHERE = 0x1234567

#: (name, call factory given the token, the panic text the chain reports for it)
FailingCall = tuple[str, Callable[[int], Call], str]
FAILING_CALLS: list[FailingCall] = [
    (
        "unaffordable transfer",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT, 10**15, 0]),
        "ERC20: insufficient balance",
    ),
    (
        "transfer to 0",
        lambda t: Call(to=t, selector="transfer", calldata=[0, 5, 0]),
        "ERC20: transfer to 0",
    ),
    (
        "missing entrypoint",
        lambda t: Call(to=t, selector="no_such_entrypoint", calldata=[]),
        "ENTRYPOINT_NOT_FOUND",
    ),
    (
        "short calldata",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT]),
        "Failed to deserialize param #2",
    ),
    (
        "bad u256",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT, 2**128, 0]),
        "Failed to deserialize param #2",
    ),
    (
        "transfer_from without allowance",
        lambda t: Call(to=t, selector="transfer_from", calldata=[OTHER, RECIPIENT, 5, 0]),
        "ERC20: insufficient allowance",
    ),
    (
        "no contract at the address",
        lambda t: Call(to=NOWHERE, selector="transfer", calldata=[RECIPIENT, 5, 0]),
        "Contract not found",
    ),
]
KINDS = [pytest.param(k, id=k[0]) for k in FAILING_CALLS]


def transfer(token: int, amount: int, to: int = RECIPIENT) -> Call:
    return Call(to=token, selector="transfer", calldata=[to, amount, 0])


@contextlib.asynccontextmanager
async def active(world: World, max_calls: int = 5, **kw: Any) -> AsyncIterator[ChipiSession]:
    async with world.session(**kw) as session:
        await session.create_session(duration_seconds=3600)
        await session.register_session(max_calls=max_calls)
        yield session


def record(session: ChipiSession) -> list[Event]:
    events: list[Event] = []
    session.add_listener(events.append)
    return events


def calls_used(world: World, session: ChipiSession) -> int:
    assert session.session is not None
    return world.chain.session_status(world.wallet.address, session.session.public_key).calls_used


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
    about) is REVERTED, yet its validate phase consumed a call (contract.md §14.2)."""
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


def invoke_as_session(
    chain: Any, wallet: int, key: SecretKey, valid_until: int, calls: Sequence[Call]
) -> str:
    h = session_validate_hash(
        account=wallet,
        chain_id=chain.chain_id,
        nonce=chain.get_nonce(wallet),
        valid_until=valid_until,
        calls=list(calls),
    )
    r, s = key.sign(h)
    return str(chain.invoke(wallet, list(calls), [key.public_key, r, s, valid_until]).tx_hash)


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


# -- ChipiApiBackend + localnet ------------------------------------------------------------------

NET_START = 1_800_000_000


@pytest.fixture(scope="module")
def net_clock() -> ManualClock:
    return ManualClock(NET_START)


@pytest.fixture(scope="module")
def server(net_clock: ManualClock) -> Iterator[Any]:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from chipi_session.localnet import LocalnetServer

    with LocalnetServer(clock=net_clock, kdf_cost=KdfCost.FAST_FOR_TESTS) as srv:
        yield srv


class Net:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.owner = SecretKey(generate_private_key())
        with server.locked() as chain:
            self.wallet = chain.create_wallet(PIN, private_key=self.owner.reveal())
            self.token = chain.deploy_token("TKN", 6)
            chain.mint(self.token, self.wallet.address, 1_000_000)

    def balance(self, owner: int) -> int:
        with self.server.locked() as chain:
            return int(chain.balance_of(self.token, owner))

    def calls_used(self, session: ChipiSession) -> int:
        assert session.session is not None
        with self.server.locked() as chain:
            status = chain.session_status(self.wallet.address, session.session.public_key)
        return int(status.calls_used)


@contextlib.asynccontextmanager
async def net_session(
    server: Any, clock: ManualClock, net: Net, wrap: Callable[[Any], Any] = lambda b: b
) -> AsyncIterator[ChipiSession]:
    from chipi_session.backends.chipi_api import ChipiApiBackend

    async def token() -> str:
        return "user-jwt"

    api = ChipiApiBackend(
        server.api_key, base_url=server.url, rpc_url=server.rpc_url, clock=clock, timeout=5.0
    )
    async with api:
        async with ChipiSession(
            wallet=net.wallet,
            encrypt_key=PIN,
            backend=wrap(api),
            get_bearer_token=token,
            clock=clock,
            vault=Vault(KdfCost.FAST_FOR_TESTS),
            auto_check_status=False,
        ) as session:
            await session.create_session(duration_seconds=3600)
            await session.register_session(max_calls=5)
            yield session


@pytest.mark.parametrize("kind", KINDS)
async def test_localnet_failed_inner_call(
    server: Any, net_clock: ManualClock, kind: FailingCall
) -> None:
    _, make_call, reason = kind
    net = Net(server)
    async with net_session(server, net_clock, net) as session:
        events = record(session)
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([make_call(net.token)], wait=True)
        assert e.value.code is ErrorCode.CALL_FAILED and e.value.applied is True
        result = e.value.result
        assert result is not None and result.status is ExecutionStatus.CALL_FAILED
        assert result.calls == (CallOutcome(0, False, reason, ()),)
        assert session.remaining_calls == 4 and net.calls_used(session) == 1
        assert net.balance(net.wallet.address) == 1_000_000
        # without waiting: the hash now, the failure in the background
        arrived = anyio.Event()
        session.add_listener(
            lambda ev: arrived.set() if isinstance(ev, TransactionFailed) else None
        )
        events.clear()
        tx = await session.execute_with_session([make_call(net.token)])
        with anyio.fail_after(10):  # a bound on real HTTP, not a timing assertion
            await arrived.wait()
        assert [ev.tx_hash for ev in events if isinstance(ev, TransactionFailed)] == [tx]
        assert session.error is not None and session.error.code is ErrorCode.CALL_FAILED
        assert session.remaining_calls == 3 and net.calls_used(session) == 2


async def test_localnet_multicall_second_call_fails(server: Any, net_clock: ManualClock) -> None:
    net = Net(server)
    async with net_session(server, net_clock, net) as session:
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session(
                [transfer(net.token, 5, to=OTHER), transfer(net.token, 10**15)], wait=True
            )
        result = e.value.result
        assert result is not None and result.failed_call_index == 1
        assert [c.ok for c in result.calls] == [True, False]
        assert result.calls[0].result == (1,)
        assert net.balance(OTHER) == 5
        assert session.remaining_calls == 4 and net.calls_used(session) == 1
        ok = await session.execute_with_session([transfer(net.token, 1, to=OTHER)], wait=True)
        assert ok.status is ExecutionStatus.SUCCEEDED and len(ok.events) == 1


async def test_localnet_trace_is_nested_like_a_node(server: Any, net_clock: ManualClock) -> None:
    from chipi_session.backends.starknet_rpc import StarknetRpcBackend

    net = Net(server)
    async with net_session(server, net_clock, net) as session:
        tx = await session.execute_with_session(
            [transfer(net.token, 5), Call(to=NOWHERE, selector="transfer", calldata=[1, 1, 0])]
        )
        async with StarknetRpcBackend(server.rpc_url) as rpc:
            trace = await rpc.request("starknet_traceTransaction", [tx])
            receipt = await rpc.get_transaction_receipt(tx)
    root = trace["execute_invocation"]
    assert root["entry_point_selector"] == hex(selector("__execute__"))
    (outside,) = root["calls"]
    assert outside["entry_point_selector"] == hex(selector("execute_from_outside_v2"))
    assert int(outside["contract_address"], 16) == net.wallet.address
    first, second = outside["calls"]
    assert first["is_reverted"] is False and first["result"] == ["0x1"]
    assert [e["order"] for e in first["events"]] == [0]
    assert second["is_reverted"] is True and second["class_hash"] == "0x0"
    assert panic_text([int(x, 16) for x in second["result"]]) == "Contract not found"
    assert receipt is not None and receipt.execution_status == "SUCCEEDED"


async def test_localnet_reverted_receipt(server: Any, net_clock: ManualClock) -> None:
    """Over RPC: a REVERTED receipt is a REVERTED result; through the engine (executes as a
    direct INVOKE on the localnet chain, reads over RPC) it is CALL_FAILED and the budget is
    the chain's (one call consumed by the validate phase)."""
    from chipi_session.backends.starknet_rpc import StarknetRpcBackend

    net = Net(server)

    class InvokeOnLocalnet:
        def __init__(self, api: Any) -> None:
            self._api = api

        def __getattr__(self, name: str) -> Any:
            return getattr(self._api, name)

        async def execute_with_session(
            self,
            wallet: WalletData,
            session_key: SecretKey,
            *,
            valid_until: int,
            calls: Sequence[Call],
            **_: Any,
        ) -> str:
            with server.locked() as chain:
                return invoke_as_session(chain, wallet.address, session_key, valid_until, calls)

    async with net_session(server, net_clock, net, wrap=InvokeOnLocalnet) as session:
        assert session.session is not None
        with server.locked() as chain:  # a cap the engine does not know about
            key = session.session.public_key
            chain.call(
                net.wallet.address,
                "set_spending_policy",
                [key, net.token, 10, 0, 10, 0, 3600],
                caller=net.wallet.address,
            )
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([transfer(net.token, 50)], wait=True)
        result = e.value.result
        assert e.value.code is ErrorCode.CALL_FAILED
        assert result is not None and result.status is ExecutionStatus.REVERTED
        assert "Spending" in str(result.revert_reason)
        assert net.balance(RECIPIENT) == 0
        assert net.calls_used(session) == 1 and session.remaining_calls == 4
        async with StarknetRpcBackend(server.rpc_url) as rpc:
            direct = await rpc.get_execution_result(result.tx_hash)
        assert direct.status is ExecutionStatus.REVERTED and not direct.succeeded


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
    from chipi_session.blocking import BlockingChipiSession

    world = make_world()
    with BlockingChipiSession(
        backend_name=backend_name,
        wallet=world.wallet,
        encrypt_key=PIN,
        backend=world.chain,
        clock=world.clock,
        vault=world.vault,
        auto_check_status=False,
    ) as session:
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


# -- StarknetRpcBackend against a scripted node ------------------------------------------------


def fake_node(
    receipt: dict[str, Any], trace: Any, statuses: list[str] | None = None
) -> tuple[Any, list[str]]:
    """An httpx transport answering like a node; ``trace`` None = no trace API (-32601)."""
    import json

    import httpx

    seen: list[str] = []
    pending = list(statuses or [])

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        method = body["method"]
        seen.append(method)
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        if method == "starknet_getTransactionStatus":
            finality = pending.pop(0) if pending else "ACCEPTED_ON_L2"
            out["result"] = {
                "finality_status": finality,
                "execution_status": receipt["execution_status"],
            }
        elif method == "starknet_getTransactionReceipt":
            out["result"] = receipt
        elif method == "starknet_traceTransaction" and trace is not None:
            out["result"] = trace
        else:
            out["error"] = {"code": -32601, "message": "Method not found"}
        return httpx.Response(200, json=out)

    return httpx.MockTransport(handle), seen


def node_receipt(status: str = "SUCCEEDED", **extra: Any) -> dict[str, Any]:
    return {
        "type": "INVOKE",
        "transaction_hash": "0xabc",
        "execution_status": status,
        "finality_status": "ACCEPTED_ON_L2",
        "block_number": 7,
        "events": [{"from_address": "0x5", "keys": ["0x1"], "data": ["0x2"]}],
        **extra,
    }


def node_trace(children: list[dict[str, Any]], *, outside_reverted: bool = False) -> Any:
    outside: dict[str, Any] = {
        "entry_point_selector": hex(selector("execute_from_outside_v2")),
        "result": [hex(x) for x in panic_data("SRC9: caught")] if outside_reverted else [],
        "calls": children,
        "is_reverted": outside_reverted,
    }
    return {
        "type": "INVOKE",
        "execute_invocation": {
            "entry_point_selector": hex(selector("__execute__")),
            "calls": [outside],
            "is_reverted": False,
        },
    }


def call_node(reverted: bool | None, result: Sequence[int] = (1,)) -> dict[str, Any]:
    node: dict[str, Any] = {
        "entry_point_selector": hex(selector("transfer")),
        "result": [hex(x) for x in result],
        "calls": [],
    }
    if reverted is not None:
        node["is_reverted"] = reverted
    return node


async def read_from(node: tuple[Any, list[str]]) -> ExecutionResult:
    from chipi_session.backends.starknet_rpc import StarknetRpcBackend

    async with StarknetRpcBackend("http://node.test/rpc", transport=node[0]) as rpc:
        return await rpc.get_execution_result("0xabc", poll_interval=0.0)


async def test_rpc_reverted_receipt_is_reverted() -> None:
    node = fake_node(node_receipt("REVERTED", revert_reason="Spending: exceeds"), trace=None)
    result = await read_from(node)
    assert result.status is ExecutionStatus.REVERTED and not result.succeeded
    assert result.revert_reason == "Spending: exceeds" and result.block_number == 7
    assert "starknet_traceTransaction" not in node[1]
    assert result.events == (ExecutedEvent(5, (1,), (2,)),)


async def test_rpc_without_trace_api_is_unknown() -> None:
    node = fake_node(node_receipt(), trace=None, statuses=["RECEIVED", "ACCEPTED_ON_L2"])
    result = await read_from(node)
    assert result.status is ExecutionStatus.UNKNOWN and not result.succeeded
    assert node[1].count("starknet_getTransactionStatus") == 2  # waited for acceptance


async def test_rpc_trace_outcomes() -> None:
    failing = call_node(True, panic_data("ERC20: insufficient balance"))
    result = await read_from(fake_node(node_receipt(), node_trace([call_node(False), failing])))
    assert result.status is ExecutionStatus.CALL_FAILED and result.failed_call_index == 1
    assert result.calls[1].reason == "ERC20: insufficient balance"
    old_node = await read_from(fake_node(node_receipt(), node_trace([call_node(None)])))
    assert old_node.status is ExecutionStatus.UNKNOWN  # a trace without is_reverted
    caught = node_trace([call_node(False)], outside_reverted=True)
    relayed = await read_from(fake_node(node_receipt(), caught))
    assert relayed.status is ExecutionStatus.REVERTED  # the relayer caught our revert
    assert relayed.revert_reason == "SRC9: caught" and [c.ok for c in relayed.calls] == [False]


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
