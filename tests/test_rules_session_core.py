"""The session core's rules at their edges (chipi_session/session_core.py; mutation/config.toml).

Complements tests/test_session_core.py's tables with the boundaries a mutation run probes:
budget and retry counts one below their limit, reads with no status, unknown keys.
"""

from __future__ import annotations

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionState, SessionStatus
from chipi_session.felts import selector
from chipi_session.policy import Denial
from chipi_session.session_core import RenewalState, SessionCore
from chipi_session.types import Call, ExpiryReason, SubmitInfo

S = SessionState
ACCOUNT = 0xACC0
CALL = Call(to=0x70C, selector=selector("transfer"), calldata=[1, 1, 0])


def core_in(state: SessionState, status: SessionStatus | None = None,
            reason: str = "setup") -> SessionCore:
    core = SessionCore()
    core.model.state = state.value
    core.model.reason = reason
    core.status = status
    return core


def test_repr_shows_state_and_counts_only() -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 3, 1), reason="register")
    core.reserved = 2
    assert repr(core) == "SessionCore(state='active', reason='register', reserved=2, in_doubt=0)"


def test_exhausted_needs_a_status_an_active_state_and_the_full_budget() -> None:
    assert not core_in(S.ACTIVE).exhausted()
    assert not core_in(S.ACTIVE, SessionStatus(100, 3, 2)).exhausted()
    assert core_in(S.ACTIVE, SessionStatus(100, 3, 3)).exhausted()
    assert not core_in(S.EXPIRED, SessionStatus(100, 3, 3)).exhausted()


def test_executed_without_a_status_changes_nothing() -> None:
    core = core_in(S.ACTIVE)
    core.executed()
    assert core.status is None


def test_an_active_session_never_read_is_refused_as_not_registered() -> None:
    with pytest.raises(ChipiSessionError) as info:
        core_in(S.ACTIVE).require_active()
    assert info.value.code is ErrorCode.SESSION_NOT_REGISTERED
    status = SessionStatus(100, 3, 0)
    assert core_in(S.ACTIVE, status).require_active() is status


@pytest.mark.parametrize(
    "denial", [Denial.NOT_REGISTERED, Denial.ADMIN_SELECTOR, Denial.SELF_CALL,
               Denial.NOT_WHITELISTED],
)
def test_only_time_and_calls_denials_imply_an_expiry(denial: Denial) -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 3, 0))
    assert core.expiry_for(denial) is None
    assert core.expiry_for(Denial.EXHAUSTED) is ExpiryReason.CALLS
    assert core.expiry_for(Denial.EXPIRED) is ExpiryReason.TIME


def test_preflight_at_exactly_the_budget_is_exhausted() -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 3, 1))
    core.reserved = 1
    assert core.preflight(ACCOUNT, [CALL], 50, local_valid_until=100) is None  # 2 of 3 used
    core.reserved = 2
    assert core.preflight(ACCOUNT, [CALL], 50, local_valid_until=100) is Denial.EXHAUSTED


def test_expiry_bound_takes_the_earlier_bound_either_way() -> None:
    assert core_in(S.ACTIVE, SessionStatus(60, 3, 0)).expiry_bound(50) == 50.0
    assert core_in(S.ACTIVE, SessionStatus(40, 3, 0)).expiry_bound(50) == 40.0
    assert core_in(S.REVOKED, SessionStatus(40, 3, 0)).expiry_bound(50) is None
    assert core_in(S.ACTIVE, SessionStatus(40, 3, 0)).expiry_bound(None) is None


def test_ending_a_write_that_never_began_leaves_no_count() -> None:
    core = SessionCore()
    core.end_write(7)
    assert core.fresh(core.version, 7)
    core.begin_write(7)
    core.end_write(7)
    core.end_write(7)
    assert core.fresh(core.version, 7)
    core.begin_write(7)
    assert not core.fresh(core.version, 7)  # not cancelled by the extra end above


def test_renewal_gives_up_only_at_max_attempts_and_reset_clears_it() -> None:
    core = core_in(S.ACTIVE)
    core.renewal_attempts = 2
    assert core.renewal_state(0.0, max_attempts=3) is RenewalState.IDLE
    core.renewal_attempts = 3
    assert core.renewal_state(0.0, max_attempts=3) is RenewalState.GAVE_UP
    core.renewal_retry_at = 5.0
    core.renewal_reset()
    assert (core.renewal_attempts, core.renewal_retry_at) == (0, 0.0)
    assert core.renewal_state(0.0, max_attempts=3) is RenewalState.IDLE


def test_backing_off_until_exactly_the_retry_time() -> None:
    core = core_in(S.ACTIVE)
    core.renewal_attempts, core.renewal_retry_at = 1, 10.0
    assert core.renewal_state(9.5, max_attempts=3) is RenewalState.BACKING_OFF
    assert core.renewal_state(10.0, max_attempts=3) is RenewalState.IDLE


def test_reconcile_from_revoked_ignores_a_zero_status_but_not_a_registered_one() -> None:
    core = core_in(S.REVOKED, reason="revoke")
    core.seen_registered = True
    assert core.reconcile(SessionStatus(0, 0, 0), 5, local_valid_until=100) == (False, None)
    assert core.reconcile(SessionStatus(100, 3, 0), 5, local_valid_until=100) == (
        False, (S.ACTIVE, "active")
    )


@pytest.mark.parametrize("change", ["begin_write", "end_write", "new_generation", "transition"])
def test_every_local_change_makes_earlier_reads_stale(change: str) -> None:
    """The module's rule: every local change bumps ``version``, so a read of *any* key that
    started before it is not applied."""
    core = core_in(S.ACTIVE, SessionStatus(100, 3, 0))
    core.begin_write(7)
    core.end_write(7)
    before = core.version
    assert core.fresh(before, 8)
    if change == "transition":
        core.transition("execute")
    elif change == "new_generation":
        core.new_generation()
    else:
        getattr(core, change)(7)
    assert not core.fresh(before, 8)


def _info(action: str, nonce: int) -> SubmitInfo:
    return SubmitInfo(action, ACCOUNT, nonce, nonce, 10_000)


def test_a_register_keeps_the_executes_accepted_while_it_was_in_flight() -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 5, 4))
    core.executed()  # accepted before the register was sent: the register resets it
    mark = core.landed_mark()
    core.executed()
    core.executed()  # accepted while the register was in flight: may have landed after it
    core.registered(SessionStatus(100, 5, 0), landed_since=mark)
    assert core.status is not None and core.status.calls_used == 2
    core.registered(SessionStatus(100, 5, 0), landed_since=core.landed_mark())
    assert core.status.calls_used == 0
    core.registered(SessionStatus(100, 5, 0))  # no mark: the chain's own figure
    assert core.status.calls_used == 0


def test_a_register_never_counts_more_than_its_budget() -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 9, 0))
    mark = core.landed_mark()
    for _ in range(4):
        core.executed()
    core.registered(SessionStatus(100, 3, 0), landed_since=mark)
    assert core.status is not None and core.status.calls_used == 3


def test_an_in_doubt_execute_decided_as_executed_is_a_used_call() -> None:
    core = core_in(S.ACTIVE, SessionStatus(100, 5, 1))
    ran, never, write = _info("execute", 1), _info("execute", 2), _info("register", 3)
    for info in (ran, never, write):
        core.hold(info)
    assert core.settle(ran, applied=True)
    assert core.status is not None and core.status.calls_used == 2
    assert core.settle(never, applied=False)
    assert core.status.calls_used == 2
    assert core.settle(write, applied=True)  # an owner write uses no call of the budget
    assert core.status.calls_used == 2
    assert not core.in_doubt
    assert not core.settle(ran, applied=True)  # decided once only
    assert core.status.calls_used == 2
