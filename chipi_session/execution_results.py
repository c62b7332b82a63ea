"""Building an :class:`~chipi_session.types.ExecutionResult` from what a chain records.

Every backend reduces its data to the same two facts: did the transaction revert, and, for the
account's multicall, which inner calls panicked (a node's ``starknet_traceTransaction``
FUNCTION_INVOCATION carries ``is_reverted`` since RPC 0.8; LocalChain records the same tree).
One function turns those facts into the result, so every backend reports alike
(docs/execution-results.md). Panic data is encoded and decoded the way Cairo writes it: short
strings one per felt, longer texts as a serialized ByteArray after Cairo's byte-array marker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .errors import ChipiSessionError
from .felts import decode_short_string, encode_short_string, parse_felts, selector
from .types import CallOutcome, ExecutedEvent, ExecutionResult, ExecutionStatus

__all__ = [
    "InnerCall",
    "MULTICALL_SELECTORS",
    "OUTSIDE_EXECUTION_SELECTORS",
    "build_execution_result",
    "fit_to_calls",
    "panic_data",
    "panic_text",
    "multicall_from_rpc_trace",
    "result_from_rpc",
]

#: Cairo's marker that panic data holds a serialized ByteArray (corelib ``BYTE_ARRAY_MAGIC``).
BYTE_ARRAY_MAGIC = 0x46A6158A16A947E5916B2A2CA68501A45E93D7110E81AA2D6438B1C57C879A3
_WORD = 31

#: The entrypoints through which an account runs the calls a session signed.
OUTSIDE_EXECUTION_SELECTORS = frozenset(
    {selector("execute_from_outside_v2"), selector("execute_from_outside")}
)
EXECUTE_SELECTOR = selector("__execute__")
MULTICALL_SELECTORS = OUTSIDE_EXECUTION_SELECTORS | {EXECUTE_SELECTOR}


@attrs.frozen
class InnerCall:
    """One call of the account's multicall as a trace shows it (``reverted`` None: the trace
    does not say, e.g. a node older than RPC 0.8)."""

    reverted: bool | None
    result: tuple[int, ...] = ()
    reason: str | None = None


def build_execution_result(
    tx_hash: str,
    *,
    reverted: bool,
    revert_reason: str | None = None,
    events: Iterable[ExecutedEvent] = (),
    inner: Sequence[InnerCall] | None = None,
    block_number: int | None = None,
) -> ExecutionResult:
    """The result for a transaction: ``REVERTED`` if it reverted (no call applied),
    ``UNKNOWN`` if the per-call outcomes are not known, else ``CALL_FAILED`` or ``SUCCEEDED``."""
    calls: tuple[CallOutcome, ...] = ()
    if inner is not None:
        calls = tuple(
            CallOutcome(
                index=i,
                ok=None if c.reverted is None else not c.reverted,
                reason=c.reason if c.reverted else None,
                result=c.result,
            )
            for i, c in enumerate(inner)
        )
    if reverted:
        calls = tuple(attrs.evolve(c, ok=False, result=()) for c in calls)
        status = ExecutionStatus.REVERTED
    elif inner is None or any(c.ok is None for c in calls):
        status = ExecutionStatus.UNKNOWN
    elif any(c.ok is False for c in calls):
        status = ExecutionStatus.CALL_FAILED
    else:
        status = ExecutionStatus.SUCCEEDED
    return ExecutionResult(
        tx_hash=tx_hash,
        status=status,
        calls=calls,
        events=tuple(events),
        revert_reason=revert_reason if reverted else None,
        block_number=block_number,
    )


def fit_to_calls(result: ExecutionResult, call_count: int) -> ExecutionResult:
    """Match a result to the calls that were sent: a reverted transaction applied none of
    them; per-call outcomes that do not line up with the calls sent are not trusted
    (``UNKNOWN``, every call unknown)."""
    if len(result.calls) == call_count:
        return result
    if result.status is ExecutionStatus.REVERTED:
        known = {c.index: c for c in result.calls}
        calls = tuple(known.get(i, CallOutcome(i, False)) for i in range(call_count))
        return attrs.evolve(result, calls=calls)
    return attrs.evolve(
        result,
        status=ExecutionStatus.UNKNOWN,
        calls=tuple(CallOutcome(i, None) for i in range(call_count)),
    )


# -- panic data ------------------------------------------------------------------------------


def panic_data(message: str) -> list[int]:
    """A panic text as Cairo's panic data: one short string if it fits, else a ByteArray."""
    raw = message.encode("utf-8", "replace")
    if len(raw) <= _WORD and message.isascii():
        return [encode_short_string(message)]
    words = [int.from_bytes(raw[i : i + _WORD], "big") for i in range(0, len(raw), _WORD)]
    pending_len = len(raw) % _WORD
    full = words if pending_len == 0 else words[:-1]
    pending = 0 if pending_len == 0 else words[-1]
    return [BYTE_ARRAY_MAGIC, len(full), *full, pending, pending_len]


def panic_text(felts: Sequence[int]) -> str:
    """Panic data as text (ByteArrays and short strings decoded, other felts in hex)."""
    parts: list[str] = []
    i = 0
    while i < len(felts):
        if felts[i] == BYTE_ARRAY_MAGIC and i + 1 < len(felts):
            n = felts[i + 1]
            end = i + 2 + n + 2
            if n <= len(felts) and end <= len(felts):
                words = felts[i + 2 : i + 2 + n]
                pending, pending_len = felts[i + 2 + n], felts[i + 3 + n]
                if pending_len < _WORD and all(w < 1 << 248 for w in (*words, pending)):
                    data = b"".join(w.to_bytes(_WORD, "big") for w in words)
                    data += pending.to_bytes(_WORD, "big")[_WORD - pending_len :]
                    parts.append(data.decode("utf-8", "replace"))
                    i = end
                    continue
        parts.append(_felt_text(felts[i]))
        i += 1
    return ", ".join(parts)


def _felt_text(value: int) -> str:
    try:
        text = decode_short_string(value)
    except (ChipiSessionError, ValueError, OverflowError):
        return hex(value)
    return text if text and text.isprintable() else hex(value)


# -- RPC traces ------------------------------------------------------------------------------


def result_from_rpc(
    tx_hash: str,
    *,
    reverted: bool,
    revert_reason: str | None,
    events: Iterable[ExecutedEvent],
    block_number: int | None,
    trace: Any,
) -> ExecutionResult:
    """The result from a node's receipt facts and its trace (None: no trace).

    An outside execution that itself reverted inside a transaction that succeeded (a relayer
    that caught its failure, possible since Starknet 0.13.4) applied none of its calls: that
    is ``REVERTED`` for this execute, whatever the relayer's transaction did."""
    inner = None
    if not reverted:
        node = _multicall_node(trace)
        if node is not None and node.get("is_reverted") is True:
            reverted = True
            revert_reason = _panic_reason(node.get("result")) or "the outside execution reverted"
        inner = multicall_from_rpc_trace(trace)
    return build_execution_result(
        tx_hash,
        reverted=reverted,
        revert_reason=revert_reason,
        events=events,
        inner=inner,
        block_number=block_number,
    )


def _panic_reason(raw: Any) -> str:
    try:
        return panic_text(parse_felts(raw if isinstance(raw, list) else (), "result"))
    except ChipiSessionError:
        return ""


def _multicall_node(trace: Any) -> Mapping[str, Any] | None:
    """The multicall is the first outside execution in the tree (a sponsored execute runs
    inside a relayer's transaction), else the root ``__execute__`` of the account's INVOKE."""
    if not isinstance(trace, Mapping):
        return None
    root = trace.get("execute_invocation")
    if not isinstance(root, Mapping) or "calls" not in root:
        return None
    node = _find_outside_execution(root)
    if node is None and _selector_of(root) == EXECUTE_SELECTOR:
        return root
    return node


def multicall_from_rpc_trace(trace: Any) -> list[InnerCall] | None:
    """The account multicall's inner calls in a ``starknet_traceTransaction`` answer, or None
    if the trace does not show them (see :func:`_multicall_node`)."""
    node = _multicall_node(trace)
    if node is None:
        return None
    children = node.get("calls")
    if not isinstance(children, list):
        return None
    out: list[InnerCall] = []
    for child in children:
        if not isinstance(child, Mapping):
            return None
        flag = child.get("is_reverted")
        reverted = flag if isinstance(flag, bool) else None
        try:
            result = parse_felts(child.get("result", ()), "result")
        except ChipiSessionError:
            result = ()
        reason = (_panic_reason(child.get("result")) or "reverted") if reverted else None
        out.append(InnerCall(reverted, () if reverted else result, reason))
    return out


def _selector_of(node: Mapping[str, Any]) -> int | None:
    try:
        return parse_felts([node.get("entry_point_selector")], "selector")[0]
    except ChipiSessionError:
        return None


def _find_outside_execution(root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    stack: list[Any] = [root]
    seen = 0
    while stack and seen < 10_000:  # bounded: a hostile node cannot make us loop forever
        node = stack.pop()
        seen += 1
        if not isinstance(node, Mapping):
            continue
        if _selector_of(node) in OUTSIDE_EXECUTION_SELECTORS:
            return node
        calls = node.get("calls")
        if isinstance(calls, list):
            stack.extend(reversed(calls))
    return None
