"""THE session lifecycle: states, the transition table, guards, refusals and reconciliation.

Pure and synchronous: no I/O, no clock, no randomness (time is passed in). The tables below are
the single source of truth: ``TRANSITIONS`` (with each row's guard and the error code a failed
guard gives) and ``REFUSALS`` (the error code an action gets in a state it cannot leave from).
They drive one process-wide ``transitions.Machine`` (sessions are *unregistered* models: firing
``machine.events[name].trigger(model)`` costs O(1) per session, whereas ``add_model`` scans a
list), :func:`refusal` (used by the session core and the engine's pre-flight) and the generated
diagram in ``diagrams/``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from .errors import ChipiSessionError, ErrorCode
from .types import ExpiryReason, SessionState, SessionStatus

__all__ = [
    "Transition",
    "TRANSITIONS",
    "Refusal",
    "REFUSALS",
    "refusal",
    "SessionModel",
    "machine",
    "fire",
    "can_fire",
    "derive_state",
    "mermaid_diagram",
]

S = SessionState
_ANY: Final = tuple(SessionState)
_ANY_BUT_NONE: Final = tuple(s for s in SessionState if s is not S.NONE)


def _not_expired_by_time(
    *,
    state_reason: str = "",
    now: int | None = None,
    valid_until: int | None = None,
    applied: bool = False,
    **_: Any,
) -> bool:
    """register's guard: a key expired by time, or asked to register after its
    ``valid_until``, can never be registered again (its signatures carry that bound). Once the
    chain has ``applied`` a register (a write resolved, a renewal's new key) only the
    ``valid_until`` it registered counts."""
    if state_reason == ExpiryReason.TIME.value and not applied:
        return False
    return now is None or valid_until is None or now <= valid_until


@attrs.frozen
class Transition:
    """One row of the lifecycle table: ``trigger`` moves a session from ``sources`` to
    ``dest`` when ``guard`` (called with the state's reason and the trigger's keyword
    arguments) allows it; when it does not, the action is refused with ``refuse``."""

    trigger: str
    sources: tuple[SessionState, ...]
    dest: SessionState
    note: str = ""
    #: Only for ``reconcile``: fires when the derived state equals ``dest``.
    derived: bool = False
    guard: Callable[..., bool] | None = attrs.field(default=None, eq=False)
    #: What the guard checks, as shown in the diagram.
    guard_text: str = ""
    refuse: ErrorCode | None = None
    refuse_message: str = ""


@attrs.frozen
class Refusal:
    """One refusal row: ``action`` asked in ``state`` (and, if set, with that ``reason``)
    fails with ``code`` and changes nothing."""

    action: str
    state: SessionState
    code: ErrorCode
    message: str
    reason: str | None = None


TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition("create", _ANY, S.CREATED, "new local keypair; replaces the local session"),
    Transition("restore", (S.NONE,), S.CREATED, "from stored_session, then reconciled"),
    Transition(
        "register",
        (S.CREATED, S.ACTIVE, S.EXPIRED),
        S.ACTIVE,
        "owner-signed add_or_update_session_key; resets calls",
        guard=_not_expired_by_time,
        guard_text="not past valid_until, not expired by time",
        refuse=ErrorCode.SESSION_EXPIRED,
        refuse_message="the session has expired",
    ),
    Transition("execute", (S.ACTIVE,), S.ACTIVE, "one call of the budget per transaction"),
    Transition("expire", (S.CREATED, S.ACTIVE), S.EXPIRED, "reason time or calls"),
    Transition("revoke", (S.CREATED, S.ACTIVE, S.EXPIRED), S.REVOKED, "owner-signed"),
    # clearing "none" is a no-op, not a transition: it publishes nothing
    Transition("clear", _ANY_BUT_NONE, S.NONE, "forget the local session; zero its key"),
    *(
        Transition("reconcile", _ANY_BUT_NONE, dest, "from on-chain status", derived=True)
        for dest in _ANY_BUT_NONE
    ),
)


_NO_SESSION = "no session: call create_session()"

REFUSALS: Final[tuple[Refusal, ...]] = (
    *(
        Refusal(action, S.NONE, ErrorCode.NO_SESSION, _NO_SESSION)
        for action in ("register", "execute", "revoke")
    ),
    Refusal(
        "register",
        S.REVOKED,
        ErrorCode.SESSION_REVOKED,
        "the session was revoked; create a new one",
    ),
    Refusal(
        "execute",
        S.CREATED,
        ErrorCode.SESSION_NOT_REGISTERED,
        "the session is not registered: call register_session()",
    ),
    Refusal(
        "execute",
        S.EXPIRED,
        ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
        "the session has used all of its calls",
        reason=ExpiryReason.CALLS.value,
    ),
    Refusal("execute", S.EXPIRED, ErrorCode.SESSION_EXPIRED, "the session has expired"),
    Refusal("execute", S.REVOKED, ErrorCode.SESSION_REVOKED, "the session was revoked"),
    Refusal("revoke", S.REVOKED, ErrorCode.SESSION_REVOKED, "the session is already revoked"),
)


def refusal(
    state: SessionState, reason: str, action: str, **kwargs: Any
) -> ChipiSessionError | None:
    """Why ``action`` may not run in ``state`` (with its ``reason``), or None if it may.

    A source state of the action's row is refused only by the row's guard (with ``refuse``);
    any other state by its ``REFUSALS`` row (the first one whose ``reason`` matches). The
    engine's pre-flight, the session core and the diagram all read these two tables.
    """
    for t in _ROWS.get(action, ()):
        if state in t.sources:
            if t.guard is None or t.guard(state_reason=reason, **kwargs):
                return None
            assert t.refuse is not None
            return ChipiSessionError(t.refuse, t.refuse_message)
    for r in REFUSALS:
        if r.action == action and r.state is state and r.reason in (None, reason):
            return ChipiSessionError(r.code, r.message)
    return ChipiSessionError(
        ErrorCode.INVALID_INPUT, f"cannot {action} a session in state {state.value}"
    )


_BY_VALUE: Final = {s.value: s for s in SessionState}
_ROWS: Final[dict[str, tuple[Transition, ...]]] = {}
for _t in TRANSITIONS:
    _ROWS[_t.trigger] = (*_ROWS.get(_t.trigger, ()), _t)
_SOURCES: Final[dict[str, frozenset[SessionState]]] = {}
for _t in TRANSITIONS:
    _SOURCES[_t.trigger] = _SOURCES.get(_t.trigger, frozenset()) | frozenset(_t.sources)
#: per trigger, the states it loops on unguarded (the trigger's only row, no guard, its
#: ``dest`` among its sources): firing it there changes no state, and the machine has no
#: callbacks, so :func:`fire` answers without the ``transitions`` library (``execute``)
_SELF_LOOPS: Final[dict[str, SessionState]] = {
    trigger: rows[0].dest
    for trigger, rows in _ROWS.items()
    if len(rows) == 1
    and rows[0].guard is None
    and not rows[0].derived
    and rows[0].dest in rows[0].sources
}


class SessionModel:
    """The lifecycle's model: just a state (plus why), so 10,000 of them stay small."""

    __slots__ = ("state", "reason", "__weakref__")

    def __init__(self, state: SessionState = S.NONE, reason: str = "") -> None:
        self.state: str = state.value
        self.reason = reason

    @property
    def current(self) -> SessionState:
        return _BY_VALUE[self.state]

    def __repr__(self) -> str:
        return f"SessionModel(state={self.state!r}, reason={self.reason!r})"


def _guard_derived(dest: SessionState) -> Any:
    def guard(*, target: SessionState | None = None, **_: Any) -> bool:
        return target is dest

    return guard


@functools.cache
def machine() -> Any:
    """The one ``transitions.Machine`` shared by every session of the process."""
    from transitions import Machine

    spec: list[dict[str, Any]] = []
    for t in TRANSITIONS:
        entry: dict[str, Any] = {
            "trigger": t.trigger,
            "source": [s.value for s in t.sources],
            "dest": t.dest.value,
        }
        if t.guard is not None:
            entry["conditions"] = [t.guard]
        if t.derived:
            entry["conditions"] = [_guard_derived(t.dest)]
        spec.append(entry)
    return Machine(
        model=None,
        states=[s.value for s in SessionState],
        transitions=spec,
        initial=S.NONE.value,
        auto_transitions=False,
        send_event=False,
        model_attribute="state",
    )


def can_fire(model: SessionModel, trigger: str) -> bool:
    """Whether ``trigger`` is allowed from the model's current state."""
    return _BY_VALUE[model.state] in _SOURCES.get(trigger, ())


def fire(
    model: SessionModel, trigger: str, *, reason: str | None = None, **kwargs: Any
) -> tuple[SessionState, SessionState]:
    """Fire ``trigger``; returns ``(previous, current)``.

    Raises ``INVALID_INPUT`` (a programming error in the caller, who must check state first)
    if the trigger is not allowed from the current state, or its guard refuses.
    """
    previous = model.current
    if _SELF_LOOPS.get(trigger) is previous:  # no guard, no callback, no state change
        model.reason = reason if reason is not None else trigger
        return previous, previous
    if not can_fire(model, trigger):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"cannot {trigger} a session in state {previous.value}"
        )
    ok = machine().events[trigger].trigger(model, state_reason=model.reason, **kwargs)
    if not ok:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{trigger} refused by its guard in state {previous.value}"
        )
    current = model.current
    model.reason = reason if reason is not None else trigger
    return previous, current


def derive_state(
    status: SessionStatus,
    now: int,
    *,
    local_valid_until: int | None = None,
    seen_registered: bool,
) -> tuple[SessionState, str]:
    """The state the chain says, with its reason (docs/engine.md, "Deriving the state from the
    chain").

    ``valid_until == 0`` is revoked if we saw the session registered (or revoked it), else
    created (never registered) — or expired (``time``) once the local ``valid_until`` has
    passed, since a session that can no longer be registered is not merely "created". Expiry is inclusive: at ``now == valid_until`` still valid.
    Signatures carry the *local* ``valid_until``, so the earlier of the two bounds.
    """
    if not status.exists:
        if seen_registered:
            return S.REVOKED, "revoked"
        if local_valid_until is not None and now > local_valid_until:
            return S.EXPIRED, ExpiryReason.TIME.value  # never registered, and now too late
        return S.CREATED, "not registered"
    bound = status.valid_until
    if local_valid_until is not None:
        bound = min(bound, local_valid_until)
    if now > bound:
        return S.EXPIRED, ExpiryReason.TIME.value
    if status.calls_used >= status.max_calls:
        return S.EXPIRED, ExpiryReason.CALLS.value
    return S.ACTIVE, "active"


def mermaid_diagram(
    transitions: Sequence[Transition] = TRANSITIONS, refusals: Sequence[Refusal] = REFUSALS
) -> str:
    """The lifecycle as a mermaid ``stateDiagram-v2`` (generated, checked in under diagrams/):
    every edge, every guard with the code it refuses with, and every refusal row."""
    lines = ["stateDiagram-v2", "    [*] --> none"]
    reconcile_targets = sorted(
        {t.dest.value for t in transitions if t.derived}, key=[s.value for s in S].index
    )
    for t in transitions:
        if t.derived:
            continue
        sources = [s.value for s in t.sources]
        label = t.trigger
        for src in sources:
            lines.append(f"    {src} --> {t.dest.value}: {label}")
    lines.append(
        "    note right of none\n"
        "        reconcile (from on-chain status) moves any state but none to\n"
        f"        {', '.join(reconcile_targets)}\n"
        "    end note"
    )
    guarded = [t for t in transitions if t.guard is not None and not t.derived]
    if guarded:
        lines.append("    note right of active")
        for t in guarded:
            code = t.refuse.value if t.refuse is not None else "refused"
            lines.append(f"        {t.trigger} only if {t.guard_text}, else {code}")
        lines.append("    end note")
    if refusals:
        lines.append("    note left of created")
        lines.append("        refused (nothing changes):")
        for r in refusals:
            when = r.state.value if r.reason is None else f"{r.state.value} ({r.reason})"
            lines.append(f"        {r.action} in {when}: {r.code.value}")
        lines.append("    end note")
    return "\n".join(lines) + "\n"
