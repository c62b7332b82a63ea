"""What confirming an execute costs over RPC (issue 12 §1), and that it stays truthful.

``get_execution_result`` reads the receipt and the trace in one JSON-RPC batch: an accepted
transaction costs one HTTP request and no status read; a call that failed inside a SUCCEEDED
multicall is still CALL_FAILED (only the trace says so); a REVERTED receipt decides alone; a
transaction not yet in a block is waited for through the cheap status read; a node that refuses
batches is read one request at a time. Counted with a recording transport, then end to end on
localnet through ``ChipiSession`` (the requests each execute makes).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from chipi_session.backends.starknet_rpc import StarknetRpcBackend
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.execution_results import panic_data
from chipi_session.http import Exchange
from chipi_session.types import ExecutionStatus

from .test_execution_outcomes_net import (
    Net,
    call_node,
    net_clock,  # noqa: F401  (fixture)
    net_session,
    node_receipt,
    node_trace,
    server,  # noqa: F401  (fixture)
    transfer,
)

pytestmark = pytest.mark.anyio


class RecordingNode:
    """A scripted node that records every HTTP request (each a list of JSON-RPC methods)."""

    def __init__(
        self,
        receipt: dict[str, Any],
        trace: Any,
        statuses: list[str] | None = None,
        *,
        batches: bool = True,
    ) -> None:
        self.receipt = receipt
        self.trace = trace
        self.pending = list(statuses or [])
        self.batches = batches
        self.requests: list[list[str]] = []
        self.transport = httpx.MockTransport(self.handle)

    def finality(self) -> str:
        return self.pending[0] if self.pending else "ACCEPTED_ON_L2"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        method = body["method"]
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        finality = self.finality()
        if method == "starknet_getTransactionStatus":
            if self.pending:
                self.pending.pop(0)
            out["result"] = {
                "finality_status": finality,
                "execution_status": self.receipt["execution_status"],
            }
        elif method == "starknet_getTransactionReceipt":
            if finality in ("RECEIVED", "REJECTED"):  # no receipt outside a block
                out["error"] = {"code": 29, "message": "Transaction hash not found"}
            else:
                out["result"] = {**self.receipt, "finality_status": finality}
        elif method == "starknet_traceTransaction" and self.trace is not None:
            out["result"] = self.trace
        else:
            out["error"] = {"code": -32601, "message": "Method not found"}
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if isinstance(body, list):
            self.requests.append([item["method"] for item in body])
            if not self.batches:
                error = {"code": -32600, "message": "batches are not supported"}
                return httpx.Response(200, json={"jsonrpc": "2.0", "id": None, "error": error})
            return httpx.Response(200, json=[self.answer(item) for item in body])
        self.requests.append([body["method"]])
        return httpx.Response(200, json=self.answer(body))

    @property
    def methods(self) -> list[str]:
        return [m for request in self.requests for m in request]


RECEIPT_AND_TRACE = ["starknet_getTransactionReceipt", "starknet_traceTransaction"]


async def read(node: RecordingNode, times: int = 1) -> Any:
    async with StarknetRpcBackend("http://node.test/rpc", transport=node.transport) as rpc:
        for _ in range(times - 1):
            await rpc.get_execution_result("0xabc", poll_interval=0.0)
        return await rpc.get_execution_result("0xabc", poll_interval=0.0)


async def test_accepted_success_is_one_request_without_a_status_read() -> None:
    node = RecordingNode(node_receipt(), node_trace([call_node(False), call_node(False)]))
    result = await read(node)
    assert result.status is ExecutionStatus.SUCCEEDED and result.succeeded
    assert [c.ok for c in result.calls] == [True, True]
    assert node.requests == [RECEIPT_AND_TRACE]  # one HTTP round trip, one batch


async def test_failed_inner_call_in_a_succeeded_tx_is_never_success() -> None:
    failing = call_node(True, panic_data("u256_sub Overflow"))
    node = RecordingNode(node_receipt(), node_trace([call_node(False), failing]))
    result = await read(node)
    assert result.status is ExecutionStatus.CALL_FAILED and not result.succeeded
    assert result.failed_call_index == 1 and result.calls[1].reason == "u256_sub Overflow"
    assert node.requests == [RECEIPT_AND_TRACE]


async def test_reverted_receipt_decides_whatever_the_trace_says() -> None:
    rosy = node_trace([call_node(False)])  # a trace claiming success is not consulted
    node = RecordingNode(node_receipt("REVERTED", revert_reason="Spending: exceeds"), rosy)
    result = await read(node)
    assert result.status is ExecutionStatus.REVERTED and result.revert_reason == "Spending: exceeds"
    assert result.calls == ()  # no per-call outcome of a trace that was not consulted
    assert node.requests == [RECEIPT_AND_TRACE]


async def test_not_yet_in_a_block_waits_on_the_status_then_reads_once_more() -> None:
    node = RecordingNode(
        node_receipt(), node_trace([call_node(False)]), ["RECEIVED", "RECEIVED", "ACCEPTED_ON_L2"]
    )
    result = await read(node)
    assert result.status is ExecutionStatus.SUCCEEDED
    status = ["starknet_getTransactionStatus"]
    assert node.requests == [RECEIPT_AND_TRACE, status, status, status, RECEIPT_AND_TRACE]


async def test_pre_confirmed_receipt_is_not_accepted_yet() -> None:
    node = RecordingNode(
        node_receipt(), node_trace([call_node(False)]), ["PRE_CONFIRMED", "ACCEPTED_ON_L2"]
    )
    result = await read(node)
    assert result.status is ExecutionStatus.SUCCEEDED
    assert node.methods.count("starknet_getTransactionStatus") == 2
    assert node.requests[-1] == RECEIPT_AND_TRACE


async def test_rejected_is_rejected_and_never_applied() -> None:
    node = RecordingNode(node_receipt(), node_trace([call_node(False)]), ["REJECTED"])
    with pytest.raises(ChipiSessionError) as e:
        await read(node)
    assert e.value.code is ErrorCode.TRANSACTION_REJECTED and e.value.applied is False


async def test_a_node_refusing_batches_is_read_one_request_at_a_time() -> None:
    failing = call_node(True, panic_data("ERC20: insufficient balance"))
    node = RecordingNode(node_receipt(), node_trace([failing]), batches=False)
    result = await read(node, times=2)
    assert result.status is ExecutionStatus.CALL_FAILED and result.failed_call_index == 0
    single = [["starknet_getTransactionReceipt"], ["starknet_traceTransaction"]]
    # the batch is tried once; afterwards (the second read) only single requests
    assert node.requests == [RECEIPT_AND_TRACE, *single, *single]


async def test_a_node_refusing_batches_skips_the_trace_of_a_revert() -> None:
    node = RecordingNode(node_receipt("REVERTED"), node_trace([call_node(False)]), batches=False)
    result = await read(node)
    assert result.status is ExecutionStatus.REVERTED
    assert node.requests == [RECEIPT_AND_TRACE, ["starknet_getTransactionReceipt"]]


async def test_localnet_execute_costs_two_rest_requests_and_one_rpc_request(
    server: Any,  # noqa: F811
    net_clock: Any,  # noqa: F811
) -> None:
    net = Net(server)
    exchanges: list[Exchange] = []

    # the backend's one HTTP client reports REST and RPC requests alike
    async with net_session(server, net_clock, net, on_exchange=exchanges.append) as session:
        exchanges.clear()
        result = await session.execute_with_session([transfer(net.token, 1)], wait=True)
        assert result.status is ExecutionStatus.SUCCEEDED
        paths = [e.path for e in exchanges]
        assert sum(p.endswith("/transactions/prepare-typed-data") for p in paths) == 1
        assert sum(p.endswith("/transactions/execute-sponsored-transaction") for p in paths) == 1
        assert paths.count("/<redacted>") == 1  # the RPC: one batch (receipt + trace)
        assert len(paths) == 3
