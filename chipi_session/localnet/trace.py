"""``starknet_traceTransaction`` answers (Trace API 0.8 shapes) from LocalChain receipts.

A FUNCTION_INVOCATION is rendered as a node renders it: the call, its caller and class, its
result, its nested calls, its events (``{order, keys, data}``), and, since RPC 0.8,
``is_reverted`` — a reverted inner call's ``result`` is its panic data, encoded as Cairo does
(chipi_session.execution_results.panic_data). An INVOKE has ``validate_invocation`` and an
``execute_invocation`` that is ``{revert_reason}`` when it reverted.

LocalChain runs a sponsored execute as the relayer calling ``execute_from_outside_v2``; the
relayer is not a contract there, so its ``__execute__`` root is synthesized (class hash 0)
around the recorded outside execution, which is where a node's trace shows it. Resources are
reported as 0 (LocalChain meters no gas).
"""

from __future__ import annotations

from typing import Any

from ..execution_results import OUTSIDE_EXECUTION_SELECTORS, panic_data
from ..felts import selector, to_hex
from ..localchain import Receipt
from ..localchain.abi import encode_calls, encode_spans
from ..localchain.model import Invocation
from ..types import Call

__all__ = ["render_trace"]

_EXECUTE = selector("__execute__")
_VALIDATE = selector("__validate__")
_NO_RESOURCES = {"l1_gas": 0, "l2_gas": 0}


def render_trace(receipt: Receipt, relayer: int) -> dict[str, Any] | None:
    """The TRANSACTION_TRACE of an included transaction (None if none was recorded)."""
    trace = receipt.trace
    out: dict[str, Any] = {
        "type": "INVOKE",
        "execution_resources": {"l1_gas": 0, "l1_data_gas": 0, "l2_gas": 0},
    }
    if len(trace) == 2 and trace[0].selector == _VALIDATE:
        validate, execute = trace
        out["validate_invocation"] = _invocation(validate)
        if execute.is_reverted:
            out["execute_invocation"] = {"revert_reason": execute.revert_reason or "reverted"}
        else:
            out["execute_invocation"] = _invocation(execute)
        return out
    if len(trace) == 1 and trace[0].selector in OUTSIDE_EXECUTION_SELECTORS:
        out["execute_invocation"] = _relayer_execute(trace[0], relayer)
        return out
    return None


def _relayer_execute(outside: Invocation, relayer: int) -> dict[str, Any]:
    call = Call(to=outside.contract_address, selector=outside.selector, calldata=outside.calldata)
    node = _invocation(outside)
    return {
        "contract_address": to_hex(relayer),
        "entry_point_selector": to_hex(_EXECUTE),
        "calldata": [to_hex(x) for x in encode_calls([call])],
        "caller_address": "0x0",
        "class_hash": "0x0",
        "entry_point_type": "EXTERNAL",
        "call_type": "CALL",
        "result": [to_hex(x) for x in encode_spans([outside.result])],
        "calls": [node],
        "events": [],
        "messages": [],
        "execution_resources": dict(_NO_RESOURCES),
        "is_reverted": False,
    }


def _invocation(node: Invocation) -> dict[str, Any]:
    result = panic_data(node.revert_reason or "") if node.is_reverted else node.result
    return {
        "contract_address": to_hex(node.contract_address),
        "entry_point_selector": to_hex(node.selector),
        "calldata": [to_hex(x) for x in node.calldata],
        "caller_address": to_hex(node.caller),
        "class_hash": to_hex(node.class_hash),
        "entry_point_type": "EXTERNAL",
        "call_type": "CALL",
        "result": [to_hex(x) for x in result],
        "calls": [_invocation(c) for c in node.calls],
        "events": [
            {
                "order": order,
                "keys": [to_hex(k) for k in e.keys],
                "data": [to_hex(d) for d in e.data],
            }
            for order, e in node.events
        ],
        "messages": [],
        "execution_resources": dict(_NO_RESOURCES),
        "is_reverted": node.is_reverted,
    }
