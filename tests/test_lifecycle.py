"""The pure lifecycle + policy core, against an independent reference model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chipi_session import ChipiSessionError, ErrorCode, SessionState, SessionStatus
from chipi_session.felts import selector
from chipi_session.lifecycle import (
    REFUSALS,
    TRANSITIONS,
    SessionModel,
    can_fire,
    derive_state,
    fire,
    mermaid_diagram,
    refusal,
)
from chipi_session.policy import ADMIN_SELECTORS, check_session_allowed
from chipi_session.types import Call

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = 0xACC0
TOKEN = 0x70C
TRANSFER = selector("transfer")
APPROVE = selector("approve")
UPGRADE = selector("upgrade")


def test_checked_in_diagram_is_current() -> None:
    checked_in = (ROOT / "diagrams" / "lifecycle.mmd").read_text()
    assert checked_in == mermaid_diagram(), "run: chipi-session diagram"


def test_table_has_the_spec_transitions() -> None:
    table = {(t.trigger, t.dest) for t in TRANSITIONS}
    assert ("create", SessionState.CREATED) in table
    assert ("restore", SessionState.CREATED) in table
    assert ("register", SessionState.ACTIVE) in table
    assert ("expire", SessionState.EXPIRED) in table
    assert ("revoke", SessionState.REVOKED) in table
    assert ("clear", SessionState.NONE) in table
    assert {d for t, d in table if t == "reconcile"} == set(SessionState) - {SessionState.NONE}


def test_illegal_trigger_is_a_typed_error_and_changes_nothing() -> None:
    model = SessionModel()
    with pytest.raises(ChipiSessionError):
        fire(model, "register", now=1, valid_until=2)
    assert model.current is SessionState.NONE
    fire(model, "create")
    with pytest.raises(ChipiSessionError):
        fire(model, "register", now=3, valid_until=2)  # guard: past valid_until
    assert model.current is SessionState.CREATED


# -- every row of the tables, driven ---------------------------------------------------------

S = SessionState
_TRIGGER_ARGS = {
    "register": {"now": 10, "valid_until": 20},
    "reconcile": {},
}


@pytest.mark.parametrize(
    ("trigger", "source", "dest"),
    [
        (t.trigger, s, t.dest)
        for t in TRANSITIONS
        if not t.derived
        for s in t.sources
    ],
)
def test_each_transition_row_fires_and_is_allowed_by_refusal(
    trigger: str, source: SessionState, dest: SessionState
) -> None:
    model = SessionModel(source, "setup")
    assert refusal(source, "setup", trigger, **_TRIGGER_ARGS.get(trigger, {})) is None
    assert fire(model, trigger, **_TRIGGER_ARGS.get(trigger, {})) == (source, dest)
    assert "    " + f"{source.value} --> {dest.value}: {trigger}\n" in mermaid_diagram()


@pytest.mark.parametrize("row", REFUSALS, ids=lambda r: f"{r.action}-{r.state.value}-{r.reason}")
def test_each_refusal_row_gives_its_code_and_changes_nothing(row: object) -> None:
    from chipi_session.lifecycle import Refusal

    assert isinstance(row, Refusal)
    reason = row.reason if row.reason is not None else "setup"
    error = refusal(row.state, reason, row.action)
    assert error is not None and error.code is row.code and error.message == row.message
    model = SessionModel(row.state, reason)
    if not can_fire(model, row.action):
        with pytest.raises(ChipiSessionError):
            fire(model, row.action)
    assert (model.current, model.reason) == (row.state, reason)
    assert f"{row.action} in {row.state.value}" in mermaid_diagram()


@pytest.mark.parametrize(
    ("state", "reason", "kwargs", "code"),
    [
        (S.EXPIRED, "time", {"now": 5, "valid_until": 9}, ErrorCode.SESSION_EXPIRED),
        (S.CREATED, "create", {"now": 10, "valid_until": 9}, ErrorCode.SESSION_EXPIRED),
        (S.ACTIVE, "register", {"now": 10, "valid_until": 9}, ErrorCode.SESSION_EXPIRED),
        (S.EXPIRED, "calls", {"now": 9, "valid_until": 9}, None),
        (S.EXPIRED, "time", {"now": 5, "valid_until": 9, "applied": True}, None),
    ],
)
def test_the_register_guard_refuses_with_its_code(
    state: SessionState, reason: str, kwargs: dict[str, int], code: ErrorCode | None
) -> None:
    error = refusal(state, reason, "register", **kwargs)
    assert (None if error is None else error.code) is code
    model = SessionModel(state, reason)
    if code is None:
        assert fire(model, "register", **kwargs)[1] is S.ACTIVE
    else:
        with pytest.raises(ChipiSessionError):
            fire(model, "register", **kwargs)
        assert model.current is state


def test_an_action_without_a_row_is_a_programming_error() -> None:
    error = refusal(S.ACTIVE, "x", "restore")
    assert error is not None and error.code is ErrorCode.INVALID_INPUT


def test_clear_never_fires_from_none_and_the_diagram_does_not_show_it() -> None:
    assert not can_fire(SessionModel(), "clear")
    assert "none --> none" not in mermaid_diagram()


@pytest.mark.parametrize(
    ("status", "now", "seen", "expected"),
    [
        (SessionStatus(0, 0, 0), 5, False, (SessionState.CREATED, "not registered")),
        (SessionStatus(0, 0, 0), 11, False, (SessionState.CREATED, "not registered")),
        (SessionStatus(0, 0, 0), 5, True, (SessionState.REVOKED, "revoked")),
        (SessionStatus(10, 3, 0), 10, True, (SessionState.ACTIVE, "active")),
        (SessionStatus(10, 3, 0), 11, True, (SessionState.EXPIRED, "time")),
        (SessionStatus(10, 3, 3), 5, True, (SessionState.EXPIRED, "calls")),
        (SessionStatus(10, 3, 3), 11, True, (SessionState.EXPIRED, "time")),
    ],
)
def test_derive_state(
    status: SessionStatus, now: int, seen: bool, expected: tuple[SessionState, str]
) -> None:
    assert derive_state(status, now, seen_registered=seen) == expected


def test_derive_state_uses_the_earlier_local_bound() -> None:
    status = SessionStatus(100, 3, 0)
    assert derive_state(status, 60, local_valid_until=50, seen_registered=True)[0] == "expired"


def test_never_registered_session_past_its_valid_until_is_expired() -> None:
    unknown = SessionStatus(0, 0, 0)
    assert derive_state(unknown, 50, local_valid_until=50, seen_registered=False) == (
        SessionState.CREATED,
        "not registered",
    )
    assert derive_state(unknown, 51, local_valid_until=50, seen_registered=False) == (
        SessionState.EXPIRED,
        "time",
    )


CALL_KINDS = {
    "transfer": Call(to=TOKEN, selector=TRANSFER, calldata=[1, 1, 0]),
    "approve": Call(to=TOKEN, selector=APPROVE, calldata=[1, 1, 0]),
    "self_transfer": Call(to=ACCOUNT, selector=TRANSFER, calldata=[1, 1, 0]),
    "upgrade": Call(to=ACCOUNT, selector=UPGRADE, calldata=[1]),
}


class LifecycleMachine(RuleBasedStateMachine):
    """Drives the core the way the engine does; checks every step against a reference."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000
        self.model = SessionModel()
        self.chain: dict[str, object] | None = None  # the on-chain record of the current key
        self.seen_registered = False
        self.local_valid_until = 0
        # reference model
        self.ref_state = "none"
        self.ref_reason = ""

    def status(self) -> SessionStatus:
        if self.chain is None:
            return SessionStatus(0, 0, 0)
        c = self.chain
        return SessionStatus(
            int(c["valid_until"]),  # type: ignore[call-overload]
            int(c["max_calls"]),  # type: ignore[call-overload]
            int(c["used"]),  # type: ignore[call-overload]
            tuple(c["allowed"]),  # type: ignore[call-overload]
        )

    @rule(duration=st.integers(1, 500))
    def create(self, duration: int) -> None:
        fire(self.model, "create")
        self.chain = None
        self.seen_registered = False
        self.local_valid_until = self.now + duration
        self.ref_state, self.ref_reason = "created", "create"

    @rule(max_calls=st.integers(0, 4), whitelist=st.sampled_from(["", "transfer", "approve"]))
    def register(self, max_calls: int, whitelist: str) -> None:
        allowed_ref = self.ref_state in ("created", "active") or (
            self.ref_state == "expired" and self.ref_reason == "calls"
        )
        allowed_ref = allowed_ref and self.now <= self.local_valid_until
        if not allowed_ref:
            if can_fire(self.model, "register") and not (
                self.model.current is SessionState.EXPIRED and self.model.reason == "time"
            ):
                with pytest.raises(ChipiSessionError):
                    fire(
                        self.model, "register", now=self.now, valid_until=self.local_valid_until
                    )
            return
        fire(self.model, "register", now=self.now, valid_until=self.local_valid_until)
        self.seen_registered = True
        allowed = () if not whitelist else (selector(whitelist),)
        self.chain = {
            "valid_until": self.local_valid_until,
            "max_calls": max_calls,
            "used": 0,
            "allowed": allowed,
        }
        self.ref_state, self.ref_reason = "active", "register"
        if max_calls == 0:
            fire(self.model, "expire", reason="calls")
            self.ref_state, self.ref_reason = "expired", "calls"

    @rule(kind=st.sampled_from(sorted(CALL_KINDS)))
    def execute(self, kind: str) -> None:
        call = CALL_KINDS[kind]
        if self.model.current is not SessionState.ACTIVE:
            assert self.ref_state != "active"
            return
        status = self.status()
        denial = check_session_allowed(status, ACCOUNT, [call], self.now)
        # reference: written independently from docs/contract.md, "Order of checks"
        c = self.chain
        assert c is not None
        ok = int(c["valid_until"]) != 0 and self.now <= int(c["valid_until"])  # type: ignore[call-overload]
        ok = ok and int(c["used"]) < int(c["max_calls"])  # type: ignore[call-overload]
        ok = ok and call.selector not in ADMIN_SELECTORS
        if ok:
            allowed = tuple(c["allowed"])  # type: ignore[call-overload]
            ok = (call.to != ACCOUNT) if not allowed else (call.selector in allowed)
        assert (denial is None) == ok, (denial, kind, c)
        if ok:
            c["used"] = int(c["used"]) + 1  # type: ignore[call-overload]
            fire(self.model, "execute")
            if int(c["used"]) >= int(c["max_calls"]):  # type: ignore[call-overload]
                fire(self.model, "expire", reason="calls")
                self.ref_state, self.ref_reason = "expired", "calls"
            else:
                self.ref_reason = "execute"

    @rule(seconds=st.integers(0, 400))
    def advance_time(self, seconds: int) -> None:
        self.now += seconds
        if self.ref_state in ("created", "active") and self.now > self.local_valid_until:
            fire(self.model, "expire", reason="time")
            self.ref_state, self.ref_reason = "expired", "time"

    @rule()
    def revoke(self) -> None:
        if self.ref_state in ("created", "active", "expired"):
            fire(self.model, "revoke")
            self.chain = {"valid_until": 0, "max_calls": 0, "used": 0, "allowed": ()}
            self.seen_registered = True
            self.ref_state, self.ref_reason = "revoked", "revoke"
        else:
            assert not can_fire(self.model, "revoke")

    @rule()
    def clear(self) -> None:
        if self.ref_state == "none":  # clearing nothing is a no-op, not a transition
            assert not can_fire(self.model, "clear")
            return
        fire(self.model, "clear")
        self.chain = None
        self.ref_state, self.ref_reason = "none", "clear"

    @precondition(lambda self: self.ref_state != "none")
    @rule()
    def reconcile(self) -> None:
        status = self.status()
        target, reason = derive_state(
            status,
            self.now,
            local_valid_until=self.local_valid_until,
            seen_registered=self.seen_registered,
        )
        # reference derivation
        if status.valid_until == 0:
            if self.seen_registered:
                expected = "revoked"
            elif self.now > self.local_valid_until:
                expected = "expired"
            else:
                expected = "created"
        elif self.now > min(status.valid_until, self.local_valid_until):
            expected = "expired"
        elif status.calls_used >= status.max_calls:
            expected = "expired"
        else:
            expected = "active"
        assert target.value == expected
        fire(self.model, "reconcile", target=target, reason=reason)
        self.ref_state, self.ref_reason = expected, reason

    @invariant()
    def same_state(self) -> None:
        assert self.model.state == self.ref_state

    @invariant()
    def budget_never_overspent(self) -> None:
        if self.chain is not None:
            assert int(self.chain["used"]) <= int(self.chain["max_calls"])  # type: ignore[call-overload]


TestLifecycleMachine = LifecycleMachine.TestCase
