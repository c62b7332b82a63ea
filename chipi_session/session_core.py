"""The session core: one session's state and the rules that change it, without I/O.

Theory of operation
-------------------
A session's *truth* is what the chain did; the engine only ever learns it through results
(a write resolved, a status read, a deadline reached). This module holds everything the
engine remembers about one session and decides, for each input, what the new state is — in
the manner of h11's ``_state.py``: no anyio, no backend, no clock. Time is an argument.

State held here:

- ``model``: the lifecycle state and its reason (``lifecycle.py`` holds the table, its guards
  and its refusal codes; :meth:`SessionCore.transition` is the only place that fires it).
- ``status``: the last on-chain status applied (or the one a write just made true).
- ``reserved`` / ``in_doubt``: executes in flight and executes sent whose outcome is not known;
  both are counted against the budget by the pre-flight, so the engine never sends more than
  the chain allows.
- ``version`` / ``writing``: every local change bumps ``version``; a status read started at an
  older version, or overlapping a write of its key, is stale and never applied
  (:meth:`SessionCore.fresh`).
- ``generation``: bumped when the key is replaced; results of an older key's actions do not
  change this session's state.
- ``seen_registered``: the chain has shown this key registered, so a later zero status reads
  as *revoked*, not *never registered*.
- renewal's sub-state (:class:`RenewalState`): idle, renewing, backing off, gave up, or a
  successor on record still being decided.

Inputs are the methods below (``transition``, ``reserve``/``release``, ``begin_write``/
``end_write``, ``reconcile``, ``preflight``…); outputs are their return values: a
:class:`StateChange` to publish, a reconcile target to fire, the expiry a denial implies. The
engine (``engine.py``) runs the effects: backend calls, timers, events, persistence.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from . import lifecycle, policy
from .errors import ChipiSessionError
from .types import Call, ExpiryReason, SessionKeyData, SessionState, SessionStatus, SubmitInfo

__all__ = ["RenewalState", "SessionCore", "StateChange"]

S = SessionState


class RenewalState(enum.Enum):
    """Auto-renewal's sub-state (only meaningful while the session is active)."""

    IDLE = "idle"
    RENEWING = "renewing"  # a successor is being created, registered and switched to
    BACKING_OFF = "backing_off"  # the last attempt failed; a retry timer is armed
    GAVE_UP = "gave_up"  # max_attempts failed (or no retry can help); the error stays
    SUCCESSOR_PENDING = "successor_pending"  # a previous run's successor is being decided


@attrs.frozen
class StateChange:
    """The event a transition asks the engine to publish (``StateChanged``)."""

    previous: SessionState
    current: SessionState
    reason: str
    trigger: str


class SessionCore(lifecycle.SessionModel):
    """The state of one session and every rule that changes it (see the module docstring).

    It is its own lifecycle model (``state`` and ``reason`` are inherited slots): one object
    per session instead of two, since a hub holds thousands."""

    __slots__ = (
        "status",
        "generation",
        "version",
        "writing",
        "seen_registered",
        "reserved",
        "in_doubt",
        "renewing",
        "renewal_attempts",
        "renewal_retry_at",
        "successor",
        "landed",
    )

    def __init__(self) -> None:
        super().__init__()
        self.status: SessionStatus | None = None
        self.generation = 0
        self.version = 0
        #: writes in flight, by session public key (their effect on chain is not known yet)
        self.writing: dict[int, int] = {}
        self.seen_registered = False
        self.reserved = 0
        self.in_doubt: list[SubmitInfo] = []
        self.renewing = False
        self.renewal_attempts = 0
        self.renewal_retry_at = 0.0
        #: a renewal's successor, on record before it is registered, until it is switched to
        self.successor: SessionKeyData | None = None
        #: executes of this session accepted so far (a register in flight marks it: the ones
        #: accepted while it is in flight may have landed after it on chain)
        self.landed = 0

    def __repr__(self) -> str:
        return (
            f"SessionCore(state={self.model.state!r}, reason={self.model.reason!r}, "
            f"reserved={self.reserved}, in_doubt={len(self.in_doubt)})"
        )

    # ------------------------------------------------------------ lifecycle
    @property
    def model(self) -> lifecycle.SessionModel:
        """The lifecycle model the table's machine fires (this object)."""
        return self

    def transition(
        self, trigger: str, *, reason: str | None = None, **kwargs: Any
    ) -> StateChange | None:
        """Fire ``trigger`` (a refused one raises ``INVALID_INPUT``: the caller checks
        first). Returns the change to publish, or None when nothing visible changed."""
        previous, current = lifecycle.fire(self.model, trigger, reason=reason, **kwargs)
        self.version += 1
        if previous is not current or trigger in ("create", "register"):
            return StateChange(previous, current, self.model.reason, trigger)
        return None

    def can(self, trigger: str) -> bool:
        return lifecycle.can_fire(self.model, trigger)

    def refusal(self, action: str, **kwargs: Any) -> ChipiSessionError | None:
        """Why ``action`` may not run now (the table's guard or refusal row), or None."""
        return lifecycle.refusal(self.model.current, self.model.reason, action, **kwargs)

    def expire(self, reason: ExpiryReason) -> StateChange | None:
        """Expire, if the table allows it from the current state."""
        if self.can("expire"):
            return self.transition("expire", reason=reason.value)
        return None

    def exhausted(self) -> bool:
        """Active, and the chain's count (as we know it) has reached the budget."""
        status = self.status
        return (
            status is not None
            and self.model.current is S.ACTIVE
            and status.calls_used >= status.max_calls
        )

    def new_generation(self) -> None:
        """The key was replaced or forgotten: what the old key had in flight is not ours."""
        self.version += 1
        self.generation += 1
        self.reserved = 0
        self.in_doubt.clear()

    # --------------------------------------------------- stale-read rejection
    def begin_write(self, public_key: int) -> None:
        """A write of ``public_key`` is about to be sent: reads overlapping it are stale."""
        self.writing[public_key] = self.writing.get(public_key, 0) + 1
        self.version += 1

    def end_write(self, public_key: int) -> None:
        left = self.writing.get(public_key, 0) - 1
        if left > 0:
            self.writing[public_key] = left
        else:
            self.writing.pop(public_key, None)
        self.version += 1

    @contextlib.contextmanager
    def writing_key(self, public_key: int) -> Iterator[None]:
        """``begin_write`` now, ``end_write`` when the block is left (however it is left):
        a write of ``public_key`` in flight until its local effect is applied."""
        self.begin_write(public_key)
        try:
            yield
        finally:
            self.end_write(public_key)

    def fresh(self, version: int, public_key: int) -> bool:
        """May a read of ``public_key`` started at ``version`` be applied? Only if nothing
        changed locally since and no write of that key is in flight: the read may or may not
        include such a write, so applying it could undo or double-count it."""
        return self.version == version and public_key not in self.writing

    # ------------------------------------------------------------ execution
    def require_active(self) -> SessionStatus:
        """The status an execute is checked against, or the table's refusal."""
        if self.model.current is S.ACTIVE and self.status is not None:
            return self.status
        error = self.refusal("execute")
        if error is None:  # active but never read: as good as not registered
            error = lifecycle.refusal(S.CREATED, "", "execute")
        assert error is not None
        raise error

    def preflight(
        self, address: int, calls: Sequence[Call], now: int, local_valid_until: int
    ) -> policy.Denial | None:
        """The contract's checks against the known status, with in-flight and in-doubt
        executes counted (the chain may count them before it counts this one)."""
        status = self.require_active()
        projected = attrs.evolve(
            status,
            valid_until=min(status.valid_until, local_valid_until),
            calls_used=status.calls_used + self.reserved + len(self.in_doubt),
        )
        return policy.check_session_allowed(projected, address, calls, now)

    def expiry_for(self, denial: policy.Denial) -> ExpiryReason | None:
        """The expiry a pre-flight denial proves: time always; calls only when nothing is
        in flight or in doubt (else those may still fail and give the calls back)."""
        if denial is policy.Denial.EXPIRED:
            return ExpiryReason.TIME
        if denial is policy.Denial.EXHAUSTED and self.reserved == 0 and not self.in_doubt:
            return ExpiryReason.CALLS
        return None

    def executed(self) -> None:
        """An execute of the current key was accepted: it used one call."""
        self.landed += 1
        if self.status is not None:
            self.status = attrs.evolve(self.status, calls_used=self.status.calls_used + 1)

    def reserve(self) -> int:
        """An execute passed the pre-flight and is about to be sent: count it in flight.
        Returns the generation to :meth:`release` it with."""
        self.reserved += 1
        return self.generation

    def release(self, generation: int) -> bool:
        """The execute reserved at ``generation`` has an outcome; False if the key was
        replaced meanwhile (its count went with the old key)."""
        if generation != self.generation:
            return False
        self.reserved -= 1
        return True

    def hold(self, info: SubmitInfo) -> None:
        """An execute sent without a known outcome: counted until the chain decides it."""
        self.in_doubt.append(info)

    def settle(self, info: SubmitInfo, applied: bool | None = None) -> bool:
        """The chain decided an in-doubt execute: it stops being counted as in doubt, and
        one that executed (``applied``) is counted as a used call from now on — a later
        status read may fail or be stale, and the budget must never be under-counted."""
        if info in self.in_doubt:
            self.in_doubt.remove(info)
            if applied and info.action == "execute":
                self.executed()
            return True
        return False

    def landed_mark(self) -> int:
        """Where the count of accepted executes stands (a register in flight keeps it)."""
        return self.landed

    # ------------------------------------------------------------ writes applied
    def forget(self) -> None:
        """A new key (or none): nothing is known of it on chain yet."""
        self.status = None
        self.seen_registered = False

    def registered(self, status: SessionStatus, *, landed_since: int | None = None) -> None:
        """The chain registered this key with ``status`` (calls_used 0 again). Executes in
        flight or in doubt stay counted: they may land after the register; so do executes
        accepted since ``landed_since`` (a :meth:`landed_mark` taken before the register was
        sent): the chain may have run them after the register, and under-counting the
        budget would let the pre-flight send an execute the chain refuses."""
        self.version += 1
        self.seen_registered = True
        if landed_since is not None and self.landed > landed_since:
            used = min(status.max_calls, status.calls_used + self.landed - landed_since)
            status = attrs.evolve(status, calls_used=used)
        self.status = status

    def revoked(self) -> None:
        """The chain revoked this key: a zero status from now on means revoked."""
        self.version += 1
        self.seen_registered = True
        self.status = SessionStatus(0, 0, 0, ())

    def switch_to_successor(self, status: SessionStatus) -> tuple[int, int]:
        """A renewal's registered successor becomes the session, all at once. Returns the
        old key's generation and its executes still in flight (retired after them)."""
        old = (self.generation, self.reserved)
        self.generation += 1
        self.version += 1
        self.successor = None
        self.status = status
        self.reserved = 0
        self.in_doubt.clear()
        self.seen_registered = True
        self.renewal_reset()
        return old

    # ------------------------------------------------------------ chain reads
    def learn_registered(self) -> bool:
        """The chain has seen this key registered (a write resolved, a journal entry); True
        if that is news (to be persisted)."""
        news = not self.seen_registered
        self.seen_registered = True
        return news

    def restored(self) -> None:
        """A stored key was restored: results of earlier actions are not this key's. In-doubt
        writes a hub resolved from its journal stay counted (unlike :meth:`new_generation`)."""
        self.generation += 1

    def local_read(self) -> None:
        """A fresh local read (a spending policy) was applied: later overlapping reads of the
        status must not undo it."""
        self.version += 1

    def apply_status(self, status: SessionStatus) -> None:
        """A fresh status read (checked with :meth:`fresh`) becomes what we know."""
        self.version += 1
        self.status = status

    def reconcile(
        self, status: SessionStatus, now: int, local_valid_until: int
    ) -> tuple[bool, tuple[SessionState, str] | None]:
        """What a fresh status says: ``(learned, target)`` — whether the chain taught us the
        key was registered (persist it), and the state to reconcile to (None: stay)."""
        current = self.model.current
        if current is S.REVOKED and not status.exists:
            return False, None
        target, reason = lifecycle.derive_state(
            status, now, local_valid_until=local_valid_until, seen_registered=self.seen_registered
        )
        learned = status.exists and not self.seen_registered
        if learned:
            self.seen_registered = True
        if target is current and reason == self.model.reason:
            return learned, None
        if target is S.ACTIVE and current is S.ACTIVE:
            return learned, None
        return learned, (target, reason)

    def expiry_bound(self, local_valid_until: int | None) -> float | None:
        """When the session stops signing (inclusive), or None if no timer is needed."""
        if local_valid_until is None or self.model.current not in (S.CREATED, S.ACTIVE):
            return None
        bound = local_valid_until
        if self.status is not None and self.status.exists:
            bound = min(bound, self.status.valid_until)
        return float(bound)

    # --------------------------------------------------------------- renewal
    def renewal_state(self, now: float, max_attempts: int) -> RenewalState:
        if self.renewing:
            return RenewalState.RENEWING
        if self.successor is not None:
            return RenewalState.SUCCESSOR_PENDING
        if self.renewal_attempts >= max_attempts:
            return RenewalState.GAVE_UP
        if now < self.renewal_retry_at:
            return RenewalState.BACKING_OFF
        return RenewalState.IDLE

    def may_start_renewal(self, now: float, max_attempts: int) -> bool:
        """Renewal starts only from an active session with nothing else in progress."""
        return self.model.current is S.ACTIVE and (
            self.renewal_state(now, max_attempts) is RenewalState.IDLE
        )

    def renewal_started(self) -> None:
        self.renewing = True

    def renewal_ended(self) -> None:
        self.renewing = False

    def renewal_failed(self, *, give_up: bool, max_attempts: int) -> int:
        """One more failed attempt (all of them if no retry can help); returns the count."""
        self.renewal_attempts = max_attempts if give_up else self.renewal_attempts + 1
        return self.renewal_attempts

    def renewal_retry(self, at: float) -> None:
        """Back off: renewal may start again at ``at``."""
        self.renewal_retry_at = at

    def successor_on_record(self, successor: SessionKeyData | None) -> None:
        """A renewal's successor is on record (None: dropped) until it is switched to."""
        self.successor = successor

    def renewal_reset(self) -> None:
        self.renewal_attempts = 0
        self.renewal_retry_at = 0.0
