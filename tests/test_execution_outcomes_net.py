"""Execution outcomes over the network (issue 9 §1): ChipiApiBackend + localnet (receipt and
``starknet_traceTransaction`` with RPC 0.8's per-call ``is_reverted``), and StarknetRpcBackend
against a scripted node (a reverted receipt, no trace API, a pre-0.8 trace, a relayer that
caught the outside execution's revert)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
import pytest

from chipi_session.clock import ManualClock
from chipi_session.engine import ChipiSession
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import TransactionFailed
from chipi_session.execution_results import panic_data, panic_text
from chipi_session.felts import selector
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

from .helpers import PIN, RECIPIENT
from .outcome_helpers import (
    KINDS,
    NOWHERE,
    OTHER,
    FailingCall,
    invoke_as_session,
    record,
    transfer,
)

pytestmark = pytest.mark.anyio

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
    server: Any,
    clock: ManualClock,
    net: Net,
    wrap: Callable[[Any], Any] = lambda b: b,
    on_exchange: Callable[[Any], None] | None = None,
) -> AsyncIterator[ChipiSession]:
    from chipi_session.backends.chipi_api import ChipiApiBackend

    async def token() -> str:
        return "user-jwt"

    api = ChipiApiBackend(
        server.api_key,
        base_url=server.url,
        rpc_url=server.rpc_url,
        clock=clock,
        timeout=5.0,
        on_exchange=on_exchange,
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


# -- StarknetRpcBackend against a scripted node ------------------------------------------------


def fake_node(
    receipt: dict[str, Any], trace: Any, statuses: list[str] | None = None
) -> tuple[Any, list[str]]:
    """An httpx transport answering like a node (single requests and batches); ``trace`` None =
    no trace API (-32601). ``statuses``: the finality the node reports, advanced by each status
    read; the receipt is not found while the transaction is only RECEIVED."""
    import json

    import httpx

    seen: list[str] = []
    pending = list(statuses or [])

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        method = body["method"]
        seen.append(method)
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        finality = pending[0] if pending else "ACCEPTED_ON_L2"
        if method == "starknet_getTransactionStatus":
            if pending:
                pending.pop(0)
            out["result"] = {
                "finality_status": finality,
                "execution_status": receipt["execution_status"],
            }
        elif method == "starknet_getTransactionReceipt" and finality == "RECEIVED":
            out["error"] = {"code": 29, "message": "Transaction hash not found"}
        elif method == "starknet_getTransactionReceipt":
            out["result"] = {**receipt, "finality_status": finality}
        elif method == "starknet_traceTransaction" and trace is not None:
            out["result"] = trace
        else:
            out["error"] = {"code": -32601, "message": "Method not found"}
        return out

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if isinstance(body, list):
            return httpx.Response(200, json=[answer(item) for item in body])
        return httpx.Response(200, json=answer(body))

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
    assert "starknet_getTransactionStatus" not in node[1]  # the receipt said it all
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
