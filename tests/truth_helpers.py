"""The reference model of tests/test_truth_model.py, kept independent of the engine's code.

What it knows comes from two places only: what the engine *reported* for each execute (its
return value, its error, its confirmation events) and the chain's own ledger (balances, used
SNIP-9 nonces, session data, the ``SessionKeyAdded`` / ``SessionKeyRevoked`` events). A
:class:`WireRecorder` between the engine and the backend says which executes left the engine
(``on_submit``) and with which nonce: "did it execute" is then "is its nonce used on chain".
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Sequence
from typing import Any

import anyio
import attrs
from hypothesis import strategies as st

from chipi_session import Call, ChipiSession, SessionState
from chipi_session.backends.base import OnSubmit
from chipi_session.backends.faults import FaultRates
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import Event, TransactionConfirmed, TransactionFailed
from chipi_session.felts import selector
from chipi_session.localchain import LocalChain
from chipi_session.types import ExecutionResult, ExecutionStatus, SessionStatus, SubmitInfo

NOWHERE = 0x1234567
#: call kinds: "ok" moves its amount to its own fresh recipient, the others always fail inside
#: the multicall (the v33 account runs calls non-atomically: they move nothing)
KINDS = ("ok", "ok", "ok", "unaffordable", "to_zero", "no_contract", "missing_ep")


def make_call(kind: str, token: int, recipient: int, amount: int, tag: int) -> Call:
    """One call; every call made is distinct (``tag``: the attempt's id, for ``to_zero``)."""
    if kind == "ok":
        return Call(to=token, selector="transfer", calldata=[recipient, amount, 0])
    if kind == "unaffordable":
        return Call(to=token, selector="transfer", calldata=[recipient, 10**15, 0])
    if kind == "to_zero":
        return Call(to=token, selector="transfer", calldata=[0, tag + 1, 0])
    if kind == "no_contract":
        return Call(to=NOWHERE, selector="transfer", calldata=[recipient, amount, 0])
    if kind == "missing_ep":
        return Call(to=token, selector="no_such_entrypoint", calldata=[recipient])
    raise ValueError(kind)


class Report(enum.Enum):
    """What the engine told the caller about one execute (final, after its confirmation)."""

    SUCCEEDED = "succeeded"  # SUCCEEDED result returned or confirmed: every call applied
    UNKNOWN_RESULT = "unknown_result"  # accepted, per-call outcome unknown: included
    CALL_FAILED = "call_failed"  # included; result.calls says which call applied
    REVERTED = "reverted"  # included, nothing applied
    NOT_APPLIED = "not_applied"  # an error with applied=False: never executed, never will
    REFUSED = "refused"  # refused (pre-flight or contract): nothing applied
    APPLIED_HASH_LOST = "applied_hash_lost"  # UNKNOWN_OUTCOME applied=True: it executed
    IN_DOUBT = "in_doubt"  # UNKNOWN_OUTCOME applied=None: resolved from the chain
    CANCELLED = "cancelled"  # the caller gave up before it returned
    PENDING = "pending"  # returned a hash; its confirmation has not been read yet


@attrs.define
class Attempt:
    """One execute the test asked for: its calls, and what the engine said about it."""

    id: int
    slot: int
    wallet: int
    plan: list[tuple[str, int, int]]  # (kind, recipient, amount)
    calls: tuple[Call, ...]
    wait: bool
    report: Report = Report.PENDING
    tx_hash: str | None = None
    result: ExecutionResult | None = None
    error: ChipiSessionError | None = None
    #: an owner write of its slot or a clock jump ran concurrently: the chain may refuse what
    #: the pre-flight passed (a lower max_calls, a revoke, an expiry landing first)
    raced: bool = False


def report_error(exc: ChipiSessionError) -> Report:
    """The promise an execute's error makes (docs/execution-results.md, the error table)."""
    if exc.code is ErrorCode.UNKNOWN_OUTCOME:
        assert exc.retryable is False and exc.applied in (None, True), repr(exc)
        return Report.APPLIED_HASH_LOST if exc.applied else Report.IN_DOUBT
    if exc.code is ErrorCode.CALL_FAILED:
        assert exc.applied is True and exc.retryable is False and exc.result is not None
        return (
            Report.REVERTED
            if exc.result.status is ExecutionStatus.REVERTED
            else (Report.CALL_FAILED)
        )
    if exc.code is ErrorCode.BACKEND_UNAVAILABLE:
        assert exc.retryable is True and exc.applied in (None, False), repr(exc)
        return Report.NOT_APPLIED
    assert exc.applied in (None, False), repr(exc)
    assert exc.code is not ErrorCode.CLOSED, repr(exc)  # no session closes mid-test
    return Report.NOT_APPLIED if exc.applied is False else Report.REFUSED


def report_result(result: ExecutionResult) -> Report:
    if result.status is ExecutionStatus.SUCCEEDED:
        return Report.SUCCEEDED
    if result.status is ExecutionStatus.UNKNOWN:
        return Report.UNKNOWN_RESULT
    if result.status is ExecutionStatus.REVERTED:
        return Report.REVERTED
    return Report.CALL_FAILED


class EventLog:
    """Every confirmation event of every session, by transaction hash."""

    def __init__(self) -> None:
        self.by_hash: dict[str, list[Event]] = collections.defaultdict(list)

    def listen(self, session: ChipiSession) -> None:
        session.add_listener(self._on_event)

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, (TransactionConfirmed, TransactionFailed)) and ev.action == "execute":
            self.by_hash[ev.tx_hash].append(ev)


class WireRecorder:
    """A pass-through backend recording which executes left the engine, with their nonce.

    Executes are keyed by their calls (every call the test makes is distinct)."""

    def __init__(
        self,
        inner: Any,
        *,
        seed: int = 0,
        max_response_checkpoints: int = 0,
        max_owner_response_checkpoints: int = 0,
    ) -> None:
        self.inner = inner
        self.requires_bearer_token = bool(inner.requires_bearer_token)
        self.clock = inner.clock
        self.sent: dict[tuple[Call, ...], SubmitInfo] = {}
        self.execute_calls: collections.Counter[tuple[Call, ...]] = collections.Counter()
        self._rng = random.Random(seed)
        self._max_late = max_response_checkpoints
        self._max_owner_late = max_owner_response_checkpoints
        #: set (and replaced) each time an owner write has run on chain, before its response
        self.owner_write_landed = anyio.Event()

    def _landed(self) -> None:
        self.owner_write_landed.set()
        self.owner_write_landed = anyio.Event()

    async def _late(self, owner: bool = False) -> None:
        """Response latency: the chain already answered, the answer arrives a little later
        (what makes a status read stale, or a write's response trail a later one)."""
        most = self._max_owner_late if owner else self._max_late
        for _ in range(self._rng.randint(0, most)):
            await anyio.sleep(0)

    async def execute_with_session(self, *args: Any, **kwargs: Any) -> str:
        calls = tuple(kwargs["calls"])
        self.execute_calls[calls] += 1
        hook: OnSubmit | None = kwargs.get("on_submit")

        async def on_submit(info: SubmitInfo) -> None:
            self.sent[calls] = info
            if hook is not None:
                result = hook(info)
                if result is not None:
                    await result

        kwargs["on_submit"] = on_submit
        tx = str(await self.inner.execute_with_session(*args, **kwargs))
        await self._late()
        return tx

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        tx = str(await self.inner.add_or_update_session_key(*args, **kwargs))
        self._landed()
        await self._late(owner=True)
        return tx

    async def revoke_session_key(self, *args: Any, **kwargs: Any) -> str:
        tx = str(await self.inner.revoke_session_key(*args, **kwargs))
        self._landed()
        await self._late(owner=True)
        return tx

    async def set_spending_policy(self, *args: Any, **kwargs: Any) -> str:
        tx = str(await self.inner.set_spending_policy(*args, **kwargs))
        self._landed()
        await self._late(owner=True)
        return tx

    async def remove_spending_policy(self, *args: Any, **kwargs: Any) -> str:
        tx = str(await self.inner.remove_spending_policy(*args, **kwargs))
        self._landed()
        await self._late(owner=True)
        return tx

    async def get_session_status(self, *args: Any) -> Any:
        answer = await self.inner.get_session_status(*args)
        await self._late()
        return answer

    async def get_spending_policy(self, *args: Any) -> Any:
        answer = await self.inner.get_spending_policy(*args)
        await self._late()
        return answer

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        used = bool(await self.inner.outside_nonce_used(wallet_address, nonce))
        await self._late()
        return used

    async def chain_time(self) -> int:
        return int(await self.inner.chain_time())

    async def confirm_transaction(self, tx_hash: str) -> None:
        await self.inner.confirm_transaction(tx_hash)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        result = await self.inner.get_execution_result(tx_hash)
        assert isinstance(result, ExecutionResult)
        return result


def keys_in_events(chain: LocalChain, wallet: int, *names: str) -> set[int]:
    """Session keys named by ``wallet``'s events of these kinds (``SessionKeyAdded``,
    ``SessionKeyRevoked``): the chain's record of what the owner did to which key."""
    wanted = {selector(n) for n in names}
    return {
        e.keys[1]
        for e in chain.events
        if e.from_address == wallet and e.keys[0] in wanted and len(e.keys) > 1
    }


def chain_state(
    status: SessionStatus, now: int, *, local_valid_until: int, owner_acted: bool
) -> SessionState:
    """The lifecycle state the chain implies for a key (README "The lifecycle"), derived here
    from the contract's four fields without the engine's code; ``owner_acted``: the chain
    registered or revoked this key at some point (a zero record is then "revoked")."""
    if status.valid_until == 0:
        if owner_acted:
            return SessionState.REVOKED
        return SessionState.EXPIRED if now > local_valid_until else SessionState.CREATED
    if now > status.valid_until or status.calls_used >= status.max_calls:
        return SessionState.EXPIRED
    return SessionState.ACTIVE


def spending_room(policy: Any, now: int) -> int | None:
    """The largest single transfer the chain's spending policy allows now (None: no policy)."""
    if not policy.exists or policy.max_per_window == 0:
        return None
    spent = policy.spent_in_window
    if now >= policy.window_start + policy.window_seconds:
        spent = 0
    return max(0, min(policy.max_per_call, policy.max_per_window - spent))


def moved_ok(plan: Sequence[tuple[str, int, int]]) -> dict[int, int]:
    """Recipient -> amount for the calls of a plan that apply when the transaction runs."""
    return {to: amount for kind, to, amount in plan if kind == "ok"}


# -- what the state machine generates ------------------------------------------------------------

EXECUTE = "execute_with_session"
SLOTS = 3
POLICY_SLOT = 0  # spending policies are set on this slot's sessions
RENEWING_SLOT = 2
LATENCY = FaultRates(max_checkpoints=3)
ADDED, REVOKED = "SessionKeyAdded", "SessionKeyRevoked"
OWNER_OPS = {"register", "revoke", "create", "clear"}
#: what the pre-flight checks before sending: the chain refusing it means the engine's view
#: of the session was wrong (unless an owner write or a clock jump raced the execute)
PREFLIGHT_CODES = {
    ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
    ErrorCode.SESSION_NOT_REGISTERED,
    ErrorCode.SESSION_REVOKED,
    ErrorCode.SESSION_EXPIRED,
    ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED,
    ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED,
}
#: moved nothing, and never will
NOTHING_MOVED = {Report.NOT_APPLIED, Report.REFUSED, Report.REVERTED}
FAULTS = st.sampled_from(
    [
        (EXECUTE, "error_before_send"),
        (EXECUTE, "timeout_after_send"),
        (EXECUTE, "drop_response"),
        (EXECUTE, "lost_request"),
        (EXECUTE, "restart"),
        ("add_or_update_session_key", "error_before_send"),
        ("add_or_update_session_key", "drop_response"),
        ("add_or_update_session_key", "lost_request"),
        ("revoke_session_key", "timeout_after_send"),
        ("revoke_session_key", "lost_request"),
        ("set_spending_policy", "drop_response"),
        ("get_session_status", "error_before_send"),
        ("get_execution_result", "error_before_send"),
    ]
)

SLOT_IDS = st.integers(0, SLOTS - 1)
PLANS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(1, 40)), min_size=1, max_size=3)
_EXEC = st.tuples(st.just("exec"), SLOT_IDS, PLANS, st.booleans())
OPS = st.one_of(
    _EXEC,
    _EXEC,
    _EXEC,
    st.tuples(st.just("cancel"), SLOT_IDS, PLANS, st.integers(0, 12)),
    st.tuples(st.just("register"), SLOT_IDS, st.integers(1, 5)),
    st.tuples(st.just("revoke"), SLOT_IDS),
    st.tuples(st.just("refetch"), SLOT_IDS),
    st.tuples(st.just("create"), SLOT_IDS, st.sampled_from([600, 20_000])),
    st.tuples(st.just("clear"), SLOT_IDS),
    st.tuples(
        st.just("policy"), st.integers(1, 60), st.integers(1, 120), st.sampled_from([60, 3600])
    ),
    st.tuples(st.just("unpolicy")),
    st.tuples(st.just("jump"), st.sampled_from([1, 45, 700, 3601]), st.integers(0, 6)),
    # an execute sent the moment an owner write (register, revoke, policy) landed on chain,
    # while that write's response is still on its way back
    st.tuples(st.just("exec_after_write"), SLOT_IDS, PLANS, st.booleans()),
)


# -- the checks at quiescence ---------------------------------------------------------------------


def final_report(attempt: Attempt, events: Sequence[Event]) -> Report:
    """A returned hash's report is its confirmation event (none: the read failed: UNKNOWN)."""
    assert len(events) <= 1, ("confirmed twice", attempt, events)
    if attempt.report is not Report.PENDING:
        if events and attempt.result is not None:  # wait=True: the event says the same
            ev = events[0]
            assert getattr(ev, "result", None) == attempt.result, (attempt, ev)
        return attempt.report
    assert attempt.tx_hash is not None, attempt
    if not events:
        return Report.UNKNOWN_RESULT
    ev = events[0]
    if isinstance(ev, TransactionConfirmed):
        attempt.result = ev.result
        return report_result(ev.result)
    assert isinstance(ev, TransactionFailed)
    if ev.result is None:
        assert ev.error.code is ErrorCode.TRANSACTION_REJECTED and ev.error.applied is False
        return Report.NOT_APPLIED
    attempt.result = ev.result
    return report_result(ev.result)


def check_final(
    a: Attempt, report: Report, *, executed: bool, moved: dict[int, int], sent: bool
) -> None:
    """One execute at quiescence: its report against the chain (``executed``: its nonce is
    used; ``moved``: each recipient's balance; ``sent``: it left the engine)."""
    want = moved_ok(a.plan)
    nothing = {to: 0 for to in moved}
    if report in (Report.SUCCEEDED, Report.UNKNOWN_RESULT, Report.APPLIED_HASH_LOST):
        assert executed, ("reported included, the chain never ran it", a)
    if report is Report.SUCCEEDED:
        assert all(kind == "ok" for kind, _, _ in a.plan), ("a failing call ok'd", a)
    if report is Report.CALL_FAILED:
        assert executed and a.result is not None
        ok = [c.ok for c in a.result.calls]
        assert ok == [kind == "ok" for kind, _, _ in a.plan], ("per-call outcome", a)
        assert not all(ok)
    if report in NOTHING_MOVED:
        assert moved == nothing, ("reported failed, money moved", a, moved)
        if report is not Report.REVERTED:
            assert not executed, ("reported not applied, the chain ran it", a)
    elif report is Report.CANCELLED and not sent:
        assert moved == nothing and not executed, ("cancelled before send moved", a)
    else:  # included, or in doubt and resolved: what the chain ran, all of it or nothing
        expected = {**nothing, **want} if executed else nothing
        assert moved == expected, ("moved is not what the chain ran", report, a, moved)


def check_ledger(
    world: Any, attempts: Sequence[Attempt], start_balance: dict[int, int], sent: set[Any]
) -> None:
    """After every step: each recipient got exactly its call's amount or nothing, what was
    reported succeeded moved, what was reported failed (or cancelled unsent) moved nothing,
    every token that left a wallet reached a recipient of it, the pre-flight never sent what
    the chain refused (unless an owner write or a clock jump raced it), and no session key
    used more calls than its max_calls."""
    chain, balance = world.chain, world.balance
    paid: dict[int, int] = {w: 0 for w in start_balance}
    for a in attempts:
        moved = {to: balance(to) for _, to, _ in a.plan}
        paid[a.wallet] += sum(moved.values())
        want = moved_ok(a.plan)
        for _, to, _ in a.plan:
            assert moved[to] in (0, want.get(to, 0)), ("moved a wrong amount", a, moved)
        if a.report is Report.SUCCEEDED:
            assert all(moved[to] == n for to, n in want.items()), ("succeeded, not moved", a)
        if a.report in NOTHING_MOVED or (a.report is Report.CANCELLED and a.calls not in sent):
            assert not any(moved.values()), ("reported failed, money moved", a, moved)
        if a.error is not None and a.error.code in PREFLIGHT_CODES and not a.raced:
            assert a.calls not in sent, ("sent what the chain refused", a)
    for w, start in start_balance.items():
        assert start - balance(w) == paid[w], "money left a wallet for no recipient"
    for w in start_balance:
        for pub in keys_in_events(chain, w, ADDED):
            status = chain.session_status(w, pub)
            assert status.calls_used <= status.max_calls or not status.exists
