"""The lifecycle table's guards and edges (chipi_session.lifecycle; mutation/config.toml)."""

from __future__ import annotations

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionState, SessionStatus
from chipi_session.lifecycle import (
    TRANSITIONS,
    SessionModel,
    can_fire,
    derive_state,
    fire,
    machine,
    mermaid_diagram,
)

S = SessionState


def model_in(state: SessionState) -> SessionModel:
    return SessionModel(state, "setup")


@pytest.mark.parametrize("source", [S.CREATED, S.ACTIVE, S.EXPIRED])
def test_register_is_allowed_at_exactly_valid_until(source: SessionState) -> None:
    model = model_in(source)
    assert fire(model, "register", now=100, valid_until=100) == (source, S.ACTIVE)
    assert model.reason == "register"


def test_register_one_second_past_valid_until_is_refused_and_changes_nothing() -> None:
    model = model_in(S.CREATED)
    with pytest.raises(ChipiSessionError) as info:
        fire(model, "register", reason="late", now=101, valid_until=100)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "guard" in info.value.message
    assert (model.current, model.reason) == (S.CREATED, "setup")


@pytest.mark.parametrize("kwargs", [{}, {"now": 10**9}, {"valid_until": 0}])
def test_register_without_both_times_is_not_guarded(kwargs: dict[str, int]) -> None:
    model = model_in(S.CREATED)
    assert fire(model, "register", **kwargs) == (S.CREATED, S.ACTIVE)


def test_fire_returns_both_states_and_records_the_reason() -> None:
    model = SessionModel()
    assert model.current is S.NONE and model.reason == ""
    assert fire(model, "create") == (S.NONE, S.CREATED)
    assert model.reason == "create"
    assert fire(model, "expire", reason="calls") == (S.CREATED, S.EXPIRED)
    assert (model.current, model.reason) == (S.EXPIRED, "calls")
    assert fire(model, "revoke", reason="") == (S.EXPIRED, S.REVOKED)
    assert model.reason == ""  # an explicit empty reason is kept, not replaced


def test_an_illegal_trigger_names_the_state_and_changes_nothing() -> None:
    model = model_in(S.REVOKED)
    with pytest.raises(ChipiSessionError) as info:
        fire(model, "execute", reason="x")
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert "cannot execute" in info.value.message and "revoked" in info.value.message
    assert (model.current, model.reason) == (S.REVOKED, "setup")


def test_can_fire_follows_the_table_exactly() -> None:
    for trigger in {t.trigger for t in TRANSITIONS}:
        sources = {s for t in TRANSITIONS if t.trigger == trigger for s in t.sources}
        for state in S:
            assert can_fire(model_in(state), trigger) is (state in sources), (trigger, state)
    assert not can_fire(model_in(S.ACTIVE), "no_such_trigger")


@pytest.mark.parametrize("source", [S.CREATED, S.ACTIVE, S.EXPIRED, S.REVOKED])
@pytest.mark.parametrize("target", [S.CREATED, S.ACTIVE, S.EXPIRED, S.REVOKED])
def test_reconcile_goes_exactly_to_its_target(source: SessionState, target: SessionState) -> None:
    model = model_in(source)
    assert fire(model, "reconcile", target=target, reason="chain") == (source, target)
    assert model.reason == "chain"


def test_reconcile_needs_a_target_and_never_leaves_none() -> None:
    model = model_in(S.ACTIVE)
    with pytest.raises(ChipiSessionError):
        fire(model, "reconcile")
    assert model.current is S.ACTIVE
    with pytest.raises(ChipiSessionError):
        fire(SessionModel(), "reconcile", target=S.ACTIVE)


def test_the_shared_machine_has_no_automatic_transitions() -> None:
    m = machine()
    assert m is machine()
    assert not any(name.startswith("to_") for name in m.events)
    assert set(m.states) == {s.value for s in S}


def test_session_model_repr_shows_state_and_reason() -> None:
    assert repr(SessionModel(S.ACTIVE, "register")) == (
        "SessionModel(state='active', reason='register')"
    )
    assert repr(SessionModel()) == "SessionModel(state='none', reason='')"


# -- derive_state edges ------------------------------------------------------------------------


def test_active_up_to_and_including_the_earlier_bound() -> None:
    status = SessionStatus(100, 3, 2)
    assert derive_state(status, 100, seen_registered=True) == (S.ACTIVE, "active")
    assert derive_state(status, 100, local_valid_until=200, seen_registered=True) == (
        S.ACTIVE, "active"
    )
    assert derive_state(status, 101, local_valid_until=200, seen_registered=True) == (
        S.EXPIRED, "time"
    )
    assert derive_state(status, 50, local_valid_until=50, seen_registered=False) == (
        S.ACTIVE, "active"
    )
    assert derive_state(status, 51, local_valid_until=50, seen_registered=False) == (
        S.EXPIRED, "time"
    )


def test_calls_exhausted_only_when_used_reaches_max() -> None:
    assert derive_state(SessionStatus(100, 3, 2), 5, seen_registered=True)[0] is S.ACTIVE
    assert derive_state(SessionStatus(100, 3, 3), 5, seen_registered=True) == (S.EXPIRED, "calls")


def test_an_unregistered_session_without_a_local_bound_is_created() -> None:
    unknown = SessionStatus(0, 0, 0)
    assert derive_state(unknown, 10**12, seen_registered=False) == (S.CREATED, "not registered")
    assert derive_state(unknown, 10**12, local_valid_until=10**12, seen_registered=False)[0] is (
        S.CREATED
    )
    # revoked wins over "too late", whatever the local bound
    assert derive_state(unknown, 10**12, local_valid_until=1, seen_registered=True) == (
        S.REVOKED, "revoked"
    )


def test_mermaid_diagram_lists_every_edge_and_the_reconcile_note() -> None:
    text = mermaid_diagram()
    assert text.startswith("stateDiagram-v2\n    [*] --> none\n") and text.endswith("\n")
    for t in TRANSITIONS:
        if not t.derived:
            for src in t.sources:
                assert f"    {src.value} --> {t.dest.value}: {t.trigger}\n" in text
    assert "reconcile" not in text.split("note right of none")[0]
    assert "        created, active, expired, revoked\n" in text
