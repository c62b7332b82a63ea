"""The pure session core (chipi_session/session_core.py): table-driven, no event loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionState, SessionStatus
from chipi_session.felts import selector
from chipi_session.policy import Denial
from chipi_session.session_core import RenewalState, SessionCore, StateChange
from chipi_session.types import Call, ExpiryReason, SessionKeyData, SubmitInfo

S = SessionState
ACCOUNT = 0xACC0
CALL = Call(to=0x70C, selector=selector("transfer"), calldata=[1, 1, 0])
ROOT = Path(__file__).resolve().parents[1]


def core_in(state: SessionState, reason: str = "setup", status: SessionStatus | None = None) -> SessionCore:
    core = SessionCore()
    core.model.state = state.value
    core.model.reason = reason
    core.status = status
    return core


def test_the_core_imports_no_anyio_backend_or_clock() -> None:
    tree = ast.parse((ROOT / "chipi_session" / "session_core.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    forbidden = {"anyio", "trio", "asyncio", "time", "backends", "backends.base", "clock"}
    assert not imported & forbidden, imported & forbidden


# -- transitions: (start state, trigger, kwargs) -> (event published?, end state) ------------
@pytest.mark.parametrize(
    ("state", "trigger", "kwargs", "event", "end"),
    [
        (S.NONE, "create", {}, True, S.CREATED),
        (S.CREATED, "create", {}, True, S.CREATED),  # a new key: published although same state
        (S.CREATED, "register", {"now": 5, "valid_until": 9}, True, S.ACTIVE),
        (S.ACTIVE, "register", {"now": 5, "valid_until": 9}, True, S.ACTIVE),
        (S.ACTIVE, "execute", {}, False, S.ACTIVE),  # nothing visible changed
        (S.ACTIVE, "expire", {"reason": "calls"}, True, S.EXPIRED),
        (S.EXPIRED, "revoke", {}, True, S.REVOKED),
        (S.REVOKED, "clear", {}, True, S.NONE),
    ],
)
def test_transition_bumps_the_version_and_says_what_to_publish(
    state: SessionState, trigger: str, kwargs: dict[str, object], event: bool, end: SessionState
) -> None:
    core = core_in(state)
    version = core.version
    change = core.transition(trigger, **kwargs)  # type: ignore[arg-type]
    assert core.current is end and core.version == version + 1
    if event:
        assert change == StateChange(state, end, core.model.reason, trigger)
    else:
        assert change is None


def test_a_refused_transition_changes_nothing() -> None:
    core = core_in(S.REVOKED)
    with pytest.raises(ChipiSessionError):
        core.transition("execute")
    assert core.current is S.REVOKED and core.version == 0


@pytest.mark.parametrize(
    ("state", "reason", "status", "code"),
    [
        (S.ACTIVE, "register", SessionStatus(100, 3, 0), None),
        (S.ACTIVE, "register", None, ErrorCode.SESSION_NOT_REGISTERED),
        (S.CREATED, "create", None, ErrorCode.SESSION_NOT_REGISTERED),
        (S.EXPIRED, "calls", SessionStatus(100, 3, 3), ErrorCode.SESSION_MAX_CALLS_EXCEEDED),
        (S.EXPIRED, "time", SessionStatus(100, 3, 0), ErrorCode.SESSION_EXPIRED),
        (S.REVOKED, "revoke", SessionStatus(0, 0, 0), ErrorCode.SESSION_REVOKED),
        (S.NONE, "", None, ErrorCode.NO_SESSION),
    ],
)
def test_require_active_gives_the_tables_code(
    state: SessionState, reason: str, status: SessionStatus | None, code: ErrorCode | None
) -> None:
    core = core_in(state, reason, status)
    if code is None:
        assert core.require_active() is status
    else:
        with pytest.raises(ChipiSessionError) as info:
            core.require_active()
        assert info.value.code is code


# -- pre-flight: reservations and in-doubt writes are counted --------------------------------
def _doubt(n: int) -> SubmitInfo:
    return SubmitInfo("execute", ACCOUNT, n, n, 10**9)


@pytest.mark.parametrize(
    ("used", "reserved", "doubts", "now", "denial", "expiry"),
    [
        (0, 0, 0, 50, None, None),
        (2, 0, 0, 50, Denial.EXHAUSTED, ExpiryReason.CALLS),
        (1, 1, 0, 50, Denial.EXHAUSTED, None),  # the reserved one may still fail
        (1, 0, 1, 50, Denial.EXHAUSTED, None),  # so may the one in doubt
        (0, 0, 0, 101, Denial.EXPIRED, ExpiryReason.TIME),
    ],
)
def test_preflight_counts_reserved_and_in_doubt_executes(
    used: int, reserved: int, doubts: int, now: int, denial: Denial | None,
    expiry: ExpiryReason | None,
) -> None:
    core = core_in(S.ACTIVE, "register", SessionStatus(100, 2, used))
    core.reserved = reserved
    core.in_doubt.extend(_doubt(i) for i in range(doubts))
    found = core.preflight(ACCOUNT, [CALL], now, local_valid_until=200)
    assert found is denial
    if found is not None:
        assert core.expiry_for(found) is expiry


def test_preflight_uses_the_earlier_local_bound() -> None:
    core = core_in(S.ACTIVE, "register", SessionStatus(1000, 5, 0))
    assert core.preflight(ACCOUNT, [CALL], 60, local_valid_until=60) is None
    assert core.preflight(ACCOUNT, [CALL], 61, local_valid_until=60) is Denial.EXPIRED


def test_executed_counts_one_call_and_exhausted_follows() -> None:
    core = core_in(S.ACTIVE, "register", SessionStatus(100, 2, 1))
    assert not core.exhausted()
    core.executed()
    assert core.status == SessionStatus(100, 2, 2) and core.exhausted()
    assert core.expire(ExpiryReason.CALLS) == StateChange(S.ACTIVE, S.EXPIRED, "calls", "expire")
    assert core.expire(ExpiryReason.TIME) is None  # not from expired


# -- stale-read rejection ---------------------------------------------------------------------
def test_a_read_overlapping_a_write_of_its_key_is_stale() -> None:
    core = SessionCore()
    v = core.version
    assert core.fresh(v, 7)
    core.begin_write(7)
    assert not core.fresh(core.version, 7)  # the write is in flight
    assert core.fresh(core.version, 8)  # another key's read is not affected
    core.begin_write(7)
    core.end_write(7)
    assert not core.fresh(core.version, 7)  # one of two still in flight
    core.end_write(7)
    assert core.fresh(core.version, 7)
    assert not core.fresh(v, 7)  # started before the writes


def test_new_generation_drops_what_the_old_key_had_in_flight() -> None:
    core = core_in(S.ACTIVE)
    core.reserved = 2
    core.in_doubt.append(_doubt(1))
    g, v = core.generation, core.version
    core.new_generation()
    assert (core.reserved, core.in_doubt, core.generation) == (0, [], g + 1)
    assert core.version > v


# -- reconcile: (state, seen, status, now) -> (learned, target) -------------------------------
@pytest.mark.parametrize(
    ("state", "reason", "seen", "status", "now", "learned", "target"),
    [
        (S.CREATED, "create", False, SessionStatus(100, 3, 0), 5, True, (S.ACTIVE, "active")),
        (S.ACTIVE, "register", True, SessionStatus(100, 3, 1), 5, False, None),
        (S.ACTIVE, "register", True, SessionStatus(100, 3, 3), 5, False, (S.EXPIRED, "calls")),
        (S.ACTIVE, "register", True, SessionStatus(100, 3, 0), 101, False, (S.EXPIRED, "time")),
        (S.ACTIVE, "register", True, SessionStatus(0, 0, 0), 5, False, (S.REVOKED, "revoked")),
        (S.CREATED, "create", False, SessionStatus(0, 0, 0), 5, False, (S.CREATED, "not registered")),
        (S.CREATED, "not registered", False, SessionStatus(0, 0, 0), 5, False, None),
        (S.REVOKED, "revoke", True, SessionStatus(0, 0, 0), 5, False, None),
        (S.EXPIRED, "calls", True, SessionStatus(100, 3, 0), 5, False, (S.ACTIVE, "active")),
    ],
)
def test_reconcile_table(
    state: SessionState,
    reason: str,
    seen: bool,
    status: SessionStatus,
    now: int,
    learned: bool,
    target: tuple[SessionState, str] | None,
) -> None:
    core = core_in(state, reason)
    core.seen_registered = seen
    assert core.reconcile(status, now, local_valid_until=200) == (learned, target)
    assert core.seen_registered is (seen or status.exists)
    assert core.current is state  # the core says where to go; the transition is fired apart


@pytest.mark.parametrize(
    ("state", "status", "local", "bound"),
    [
        (S.CREATED, None, 50, 50.0),
        (S.ACTIVE, SessionStatus(40, 3, 0), 50, 40.0),
        (S.ACTIVE, SessionStatus(0, 0, 0), 50, 50.0),
        (S.EXPIRED, None, 50, None),
        (S.NONE, None, None, None),
    ],
)
def test_expiry_bound(
    state: SessionState, status: SessionStatus | None, local: int | None, bound: float | None
) -> None:
    assert core_in(state, status=status).expiry_bound(local) == bound


# -- renewal sub-states -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("renewing", "successor", "attempts", "retry_at", "expected"),
    [
        (False, False, 0, 0.0, RenewalState.IDLE),
        (True, False, 0, 0.0, RenewalState.RENEWING),
        (False, True, 0, 0.0, RenewalState.SUCCESSOR_PENDING),
        (False, False, 3, 0.0, RenewalState.GAVE_UP),
        (False, False, 1, 20.0, RenewalState.BACKING_OFF),
        (False, False, 1, 10.0, RenewalState.IDLE),  # the retry time has come
    ],
)
def test_renewal_sub_state(
    renewing: bool, successor: bool, attempts: int, retry_at: float, expected: RenewalState
) -> None:
    core = core_in(S.ACTIVE)
    core.renewing = renewing
    core.successor = SessionKeyData(1, "blob", 100) if successor else None
    core.renewal_attempts, core.renewal_retry_at = attempts, retry_at
    assert core.renewal_state(10.0, max_attempts=3) is expected
    assert core.may_start_renewal(10.0, 3) is (expected is RenewalState.IDLE)
    core.model.state = S.EXPIRED.value
    assert not core.may_start_renewal(10.0, 3)  # only from active


# -- writes applied: each input's effect on the state -----------------------------------------
def test_reserve_and_release_follow_the_generation() -> None:
    core = core_in(S.ACTIVE)
    g = core.reserve()
    assert core.reserved == 1
    assert core.release(g) and core.reserved == 0
    g = core.reserve()
    core.new_generation()  # the key was replaced while it was in flight
    assert not core.release(g) and core.reserved == 0


def test_hold_and_settle_an_in_doubt_execute() -> None:
    core = core_in(S.ACTIVE)
    info = _doubt(1)
    core.hold(info)
    assert core.in_doubt == [info]
    assert core.settle(info) and core.in_doubt == []
    assert not core.settle(info)  # settled once only


@pytest.mark.parametrize(
    ("apply", "status", "seen"),
    [
        (lambda c: c.forget(), None, False),
        (lambda c: c.registered(SessionStatus(9, 5, 0)), SessionStatus(9, 5, 0), True),
        (lambda c: c.revoked(), SessionStatus(0, 0, 0), True),
        (lambda c: c.apply_status(SessionStatus(9, 5, 2)), SessionStatus(9, 5, 2), False),
    ],
)
def test_what_each_applied_write_leaves(
    apply: object, status: SessionStatus | None, seen: bool
) -> None:
    core = core_in(S.ACTIVE, status=SessionStatus(1, 1, 1))
    core.reserved = 1  # in flight: kept by every one of them
    assert callable(apply)
    apply(core)
    assert (core.status, core.seen_registered, core.reserved) == (status, seen, 1)


@pytest.mark.parametrize(
    "apply",
    [
        lambda c: c.apply_status(SessionStatus(9, 5, 2)),
        lambda c: c.local_read(),
        lambda c: c.registered(SessionStatus(9, 5, 0)),
        lambda c: c.revoked(),
    ],
)
def test_a_read_started_before_an_applied_change_is_stale(apply: object) -> None:
    """Two overlapping status reads: once the newer one (or any local change) is applied,
    the older one must not be applied over it."""
    core = core_in(S.ACTIVE, status=SessionStatus(1, 1, 1))
    started = core.version  # an older read leaves
    assert core.fresh(started, 7)
    assert callable(apply)
    apply(core)
    assert not core.fresh(started, 7)
    assert core.fresh(core.version, 7)  # a read started now is fresh


def test_switch_to_successor_starts_the_new_key_from_zero() -> None:
    core = core_in(S.ACTIVE, status=SessionStatus(100, 3, 2))
    core.reserved, core.generation = 2, 7
    core.in_doubt.append(_doubt(1))
    core.successor = SessionKeyData(2, "blob", 200)
    core.renewal_attempts, core.renewal_retry_at = 2, 50.0
    version = core.version
    assert core.switch_to_successor(SessionStatus(200, 3, 0)) == (7, 2)
    assert (core.generation, core.reserved, core.in_doubt, core.successor) == (8, 0, [], None)
    assert core.status == SessionStatus(200, 3, 0) and core.seen_registered
    assert (core.renewal_attempts, core.renewal_retry_at) == (0, 0.0)
    assert core.version > version


def test_renewal_inputs_drive_the_sub_state() -> None:
    core = core_in(S.ACTIVE)
    core.renewal_started()
    assert core.renewal_state(0.0, 3) is RenewalState.RENEWING
    core.renewal_ended()
    assert core.renewal_failed(give_up=False, max_attempts=3) == 1
    core.renewal_retry(20.0)
    assert core.renewal_state(10.0, 3) is RenewalState.BACKING_OFF
    assert core.renewal_state(20.0, 3) is RenewalState.IDLE
    assert core.renewal_failed(give_up=True, max_attempts=3) == 3
    assert core.renewal_state(30.0, 3) is RenewalState.GAVE_UP
    core.renewal_reset()
    assert core.renewal_state(0.0, 3) is RenewalState.IDLE


def test_learn_registered_is_news_once_and_restore_keeps_what_is_in_doubt() -> None:
    core = SessionCore()
    assert core.learn_registered() and not core.learn_registered()
    core.in_doubt.append(_doubt(1))
    g = core.generation
    core.restored()
    assert core.generation == g + 1 and len(core.in_doubt) == 1
    v = core.version
    core.local_read()
    assert core.version == v + 1
