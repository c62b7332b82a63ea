"""The fault plan behind ``FaultInjectingBackend``: which failure each call suffers.

Why a module of its own: the decision is pure bookkeeping (rates, a seeded draw, scripted faults,
a restart's downtime, counters) and must be deterministic, so a seed replays exactly; the
wrapper in ``faults.py`` only carries the decision out around the inner backend. Draws are made
synchronously when a call starts, in call order (docs/testing.md).
"""

from __future__ import annotations

import collections
import random
from typing import Any, Final, Literal, get_args

import attrs

__all__ = [
    "FaultKind",
    "FAULT_KINDS",
    "DOWN",
    "WRITE_METHODS",
    "READ_METHODS",
    "RESULT_METHODS",
    "READ_KINDS",
    "AFTER_SEND",
    "FaultRates",
    "NO_FAULTS",
    "Plan",
    "FaultSchedule",
]

FaultKind = Literal[
    "error_before_send", "timeout_after_send", "drop_response", "lost_request", "restart"
]
#: Every fault kind, in the order a random draw considers them.
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
#: Counter key of calls refused because a restart is in progress (not a kind you can inject).
DOWN: Final = "down"

WRITE_METHODS: Final = (
    "add_or_update_session_key",
    "revoke_session_key",
    "execute_with_session",
    "set_spending_policy",
    "remove_spending_policy",
)
READ_METHODS: Final = (
    "get_session_status",
    "get_spending_policy",
    "outside_nonce_used",
    "chain_time",
)
#: Confirmation reads, present when the inner backend has them; faulted only when named.
RESULT_METHODS: Final = ("confirm_transaction", "get_execution_result")
#: The kinds a read can suffer: a read has no effect to lose, so it only fails before send.
READ_KINDS: Final[frozenset[FaultKind]] = frozenset({"error_before_send", "restart"})
#: The kinds where the inner write runs and its answer is lost.
AFTER_SEND: Final[frozenset[FaultKind]] = frozenset({"timeout_after_send", "drop_response"})


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class FaultRates:
    """Per-call probabilities of each fault kind, and the latency added before a call.

    One uniform draw per call picks at most one fault, so the probabilities must sum to at most
    1. For reads only ``error_before_send`` and ``restart`` apply (the rest count as no fault).
    Latency: ``0..max_checkpoints`` event-loop checkpoints and ``0..max_delay`` seconds on the
    clock (with a ManualClock the test moves time; see ``waiting_on_clock``).
    """

    error_before_send: float = attrs.field(default=0.0, validator=_probability)
    timeout_after_send: float = attrs.field(default=0.0, validator=_probability)
    drop_response: float = attrs.field(default=0.0, validator=_probability)
    lost_request: float = attrs.field(default=0.0, validator=_probability)
    restart: float = attrs.field(default=0.0, validator=_probability)
    max_checkpoints: int = attrs.field(default=0, validator=_non_negative)
    max_delay: float = attrs.field(default=0.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if sum(self.probability(kind) for kind in FAULT_KINDS) > 1 + 1e-9:
            raise ValueError("fault probabilities must sum to at most 1")

    def probability(self, kind: FaultKind) -> float:
        return float(getattr(self, kind))


NO_FAULTS: Final = FaultRates()


@attrs.frozen
class Plan:
    """What one call will suffer, decided synchronously when it starts (determinism)."""

    fault: FaultKind | Literal["down"] | None
    checkpoints: int
    delay: float


class FaultSchedule:
    """The faults to come and the faults decided: scripted ones per method (first, in order),
    a restart's downtime, then one seeded random draw per call. ``calls`` counts calls by
    method, ``injected`` faults by ``(method, kind)``."""

    __slots__ = ("restart_down_calls", "_rng", "_scripted", "_down", "calls", "injected")

    def __init__(self, seed: int, restart_down_calls: int) -> None:
        self.restart_down_calls = restart_down_calls
        self._rng = random.Random(seed)
        self._scripted: dict[str, collections.deque[FaultKind]] = {}
        self._down = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[tuple[str, str]] = collections.Counter()

    @property
    def down(self) -> int:
        """Calls still to be refused by a restart in progress."""
        return self._down

    def script(self, method: str, kind: FaultKind, times: int) -> None:
        """Queue ``kind`` for the next ``times`` calls of ``method`` (a known method name)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if (method in READ_METHODS or method in RESULT_METHODS) and kind not in READ_KINDS:
            raise ValueError(f"{method} is a read: it can only fail before send")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive int")
        self._scripted.setdefault(method, collections.deque()).extend([kind] * times)

    def is_scripted(self, method: str) -> bool:
        return bool(self._scripted.get(method))

    def restart(self, down_for: int | None = None) -> None:
        count = self.restart_down_calls if down_for is None else down_for
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("down_for must be an int >= 0")
        self._down = count

    def clear(self) -> None:
        self._scripted.clear()
        self._down = 0

    def pending(self, method: str | None = None) -> int:
        if method is not None:
            return len(self._scripted.get(method, ()))
        return sum(len(q) for q in self._scripted.values())

    def count(self, kind: str | None = None, method: str | None = None) -> int:
        return sum(
            n
            for (m, k), n in self.injected.items()
            if (kind is None or k == kind) and (method is None or m == method)
        )

    def plan(self, method: str, rates: FaultRates) -> Plan:
        """Decide the call's fate now, synchronously, so a seed replays the same faults."""
        self.calls[method] += 1
        checkpoints = self._rng.randint(0, rates.max_checkpoints) if rates.max_checkpoints else 0
        delay = self._rng.uniform(0, rates.max_delay) if rates.max_delay else 0.0
        fault: FaultKind | Literal["down"] | None = None
        draw = self._rng.random()
        if self._down > 0:
            self._down -= 1
            fault = DOWN
        elif self._scripted.get(method):
            fault = self._scripted[method].popleft()
        else:
            allowed = READ_KINDS if method not in WRITE_METHODS else FAULT_KINDS
            edge = 0.0
            for kind in FAULT_KINDS:
                edge += rates.probability(kind)
                if draw < edge:
                    fault = kind if kind in allowed else None
                    break
        if fault is not None:
            self.injected[(method, fault)] += 1
        if fault == "restart":
            self._down = self.restart_down_calls
        return Plan(fault, checkpoints, delay)
