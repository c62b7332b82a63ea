"""Hypothesis strategies for fuzzing code built on chipi-session.

Every strategy produces values the library accepts by default and values it rejects with
``valid=False``, so a project can check both that its happy paths work for any well-formed
input and that its own validation (or ours, underneath) refuses malformed input with a
:class:`~chipi_session.ChipiSessionError` and no state change. What "rejected" means, per
strategy, is stated in its docstring (the test suite checks each claim).
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from ..backends.faults import (
    FAULT_KINDS,
    READ_METHODS,
    WRITE_METHODS,
    FaultInjectingBackend,
    FaultKind,
)
from ..felts import FIELD_PRIME, U32_MAX, U64_MAX, U256_BOUND, selector
from ..policy import ADMIN_SELECTORS
from ..types import Call, SessionState, SessionStatus

__all__ = [
    "felts",
    "entrypoints",
    "calls",
    "whitelists",
    "SpendingLimits",
    "spending_policies",
    "session_statuses",
    "session_states",
    "FaultPlan",
    "fault_plans",
]

#: Entrypoint names a bot typically whitelists (any non-admin name is fine).
COMMON_ENTRYPOINTS = ("transfer", "approve", "transfer_from", "mint", "burn", "swap", "tip")
_BEFORE_SEND: tuple[FaultKind, ...] = ("error_before_send", "restart")


def felts(*, valid: bool = True, max_value: int = FIELD_PRIME - 1) -> st.SearchStrategy[Any]:
    """Field elements ``0 <= x < P`` as ints; invalid: negative or ``>= P`` ints, booleans,
    floats, and strings that are neither ``0x`` hex nor decimal (``parse_felt`` refuses)."""
    if valid:
        return st.integers(0, min(max_value, FIELD_PRIME - 1))
    return st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=FIELD_PRIME),
        st.booleans(),
        st.floats(allow_nan=True),
        st.sampled_from(["", "0x", "0xZZ", "-1", "1.5", "ten", " "]),
        st.none(),
    )


def entrypoints(*, valid: bool = True) -> st.SearchStrategy[Any]:
    """Entrypoint names or selector felts a session may be allowed to call; invalid: values
    that are neither (not a name, not a felt)."""
    if valid:
        names = st.sampled_from(COMMON_ENTRYPOINTS) | st.from_regex(
            r"[a-z][a-z0-9_]{0,30}", fullmatch=True
        )
        chosen = names | names.map(selector)
        return chosen.filter(lambda e: _selector_of(e) not in ADMIN_SELECTORS)
    return st.one_of(st.integers(max_value=-1), st.integers(min_value=FIELD_PRIME), st.none())


def _selector_of(entry: int | str) -> int:
    return entry if isinstance(entry, int) else selector(entry)


def calls(
    *,
    valid: bool = True,
    to: st.SearchStrategy[int] | None = None,
    min_size: int = 1,
    max_size: int = 4,
) -> st.SearchStrategy[Any]:
    """A list of :class:`Call` (``to`` defaults to any non-zero felt address); invalid: call
    lists ``coerce_calls`` refuses (empty, a bare string, dicts missing a field or with a
    malformed felt)."""
    if valid:
        address = to if to is not None else st.integers(1, 2**251 - 1)
        one = st.builds(
            Call,
            to=address,
            selector=entrypoints(),
            calldata=st.lists(felts(), max_size=6).map(tuple),
        )
        return st.lists(one, min_size=max(min_size, 1), max_size=max_size)
    bad_dict = st.one_of(
        st.fixed_dictionaries({"entrypoint": st.just("transfer")}),
        st.fixed_dictionaries({"contractAddress": st.just("0x1")}),
        st.fixed_dictionaries(
            {
                "contractAddress": felts(valid=False).filter(lambda v: v is not None),
                "entrypoint": st.just("transfer"),
            }
        ),
        st.fixed_dictionaries(
            {
                "contractAddress": st.just("0x1"),
                "entrypoint": st.just("transfer"),
                "calldata": st.lists(felts(valid=False), min_size=1, max_size=3),
            }
        ),
    )
    return st.one_of(st.just([]), st.just("transfer"), st.lists(bad_dict, min_size=1, max_size=3))


def whitelists(*, valid: bool = True, max_size: int = 8) -> st.SearchStrategy[Any]:
    """Allowed-entrypoint lists for ``register_session`` (empty = every non-admin
    entrypoint); invalid: a bare string, or a list with a value that is no entrypoint
    (``SESSION_ENTRYPOINT_NOT_ALLOWED``)."""
    if valid:
        return st.lists(entrypoints(), max_size=max_size, unique_by=_selector_of)
    return st.one_of(
        st.just("transfer"),
        st.lists(entrypoints(), max_size=3).flatmap(
            lambda good: entrypoints(valid=False).map(lambda bad: [*good, bad])
        ),
    )


@attrs.frozen
class SpendingLimits:
    """The arguments of ``set_spending_policy(token, max_per_call, max_per_window,
    window_seconds)`` (a policy before the chain has counted anything against it)."""

    max_per_call: Any
    max_per_window: Any
    window_seconds: Any


def spending_policies(*, valid: bool = True) -> st.SearchStrategy[SpendingLimits]:
    """:class:`SpendingLimits` the engine accepts (``max_per_call <= max_per_window``,
    u256 amounts, a positive u64 window); invalid: ones it refuses with
    ``INVALID_SPENDING_POLICY``."""
    if valid:

        def build(window_max: int, call_max: int, seconds: int) -> SpendingLimits:
            return SpendingLimits(min(call_max, window_max), window_max, seconds)

        return st.builds(
            build,
            st.integers(1, U256_BOUND - 1),
            st.integers(0, U256_BOUND - 1),
            st.integers(1, U64_MAX),
        )
    return st.one_of(
        st.builds(
            SpendingLimits,
            st.integers(2, 10**6).map(lambda n: n + 1),
            st.integers(1, 2),
            st.integers(1, 86400),
        ),  # per call above per window
        st.builds(SpendingLimits, st.just(1), st.just(10), st.sampled_from([0, -1, U64_MAX + 1])),
        st.builds(
            SpendingLimits,
            st.sampled_from([-1, U256_BOUND, True, "10"]),
            st.just(10),
            st.just(60),
        ),
    )


def session_states() -> st.SearchStrategy[SessionState]:
    """Any lifecycle state (every value is valid)."""
    return st.sampled_from(SessionState)


def session_statuses(*, valid: bool = True, now: int | None = None) -> st.SearchStrategy[Any]:
    """:class:`SessionStatus` values the chain can report (``calls_used <= max_calls``, a
    whitelist as long as its length felt; with ``now``, around that time); invalid:
    ``(felts, whitelist)`` pairs ``SessionStatus.from_felts`` refuses with
    ``SESSION_INVALID_RESPONSE`` (wrong length, out-of-range values, whitelist length
    mismatch)."""
    if valid:
        until = (
            st.integers(0, U64_MAX)
            if now is None
            else st.integers(max(now - 7200, 0), min(now + 7200, U64_MAX))
        )

        @st.composite
        def build(draw: st.DrawFn) -> SessionStatus:
            valid_until = draw(until)
            if valid_until == 0:
                return SessionStatus(0, 0, 0)
            max_calls = draw(st.integers(1, U32_MAX))
            used = draw(st.integers(0, min(max_calls, 1000)))
            allowed = draw(st.lists(entrypoints().map(_selector_of), max_size=4, unique=True))
            return SessionStatus(valid_until, max_calls, used, tuple(allowed))

        return build()
    four = st.tuples(st.integers(1, U64_MAX), st.integers(1, 100), st.integers(0, 100))
    return st.one_of(
        st.lists(st.integers(0, 100), max_size=3).map(lambda f: (f, [])),
        st.lists(st.integers(0, 100), min_size=5, max_size=6).map(lambda f: (f, [])),
        st.integers(U64_MAX + 1, FIELD_PRIME - 1).map(lambda v: ([v, 1, 0, 0], [])),
        st.integers(U32_MAX + 1, FIELD_PRIME - 1).map(lambda v: ([1, v, 0, 0], [])),
        four.map(lambda f: ([*f, 2], [selector("transfer")])),
    )


@attrs.frozen
class FaultPlan:
    """Scripted faults, one per backend call, in order: ``(method, kind)`` pairs for
    :meth:`FaultInjectingBackend.fail_next`."""

    steps: tuple[tuple[str, str], ...]

    def apply(self, backend: FaultInjectingBackend) -> None:
        """Script every step on ``backend`` (``ValueError`` for a step it cannot inject)."""
        for method, kind in self.steps:
            backend.fail_next(method, kind)  # type: ignore[arg-type]


def fault_plans(
    *, valid: bool = True, methods: tuple[str, ...] | None = None, max_size: int = 4
) -> st.SearchStrategy[FaultPlan]:
    """:class:`FaultPlan` s a :class:`FaultInjectingBackend` over LocalChain accepts (writes
    get any fault kind, reads only before-send kinds); invalid: plans with a step it refuses
    (unknown method or kind, or an after-send fault on a read)."""
    pool = methods if methods is not None else (*WRITE_METHODS, *READ_METHODS)

    def kinds_for(method: str) -> st.SearchStrategy[str]:
        return st.sampled_from(_BEFORE_SEND if method in READ_METHODS else FAULT_KINDS)

    step = st.sampled_from(pool).flatmap(lambda m: kinds_for(m).map(lambda k: (m, k)))
    if valid:
        return st.lists(step, max_size=max_size).map(lambda s: FaultPlan(tuple(s)))
    bad = st.one_of(
        st.tuples(st.sampled_from(["transfer", "get_balance", ""]), st.sampled_from(FAULT_KINDS)),
        st.tuples(st.sampled_from(WRITE_METHODS), st.sampled_from(["crash", "slow", ""])),
        st.tuples(
            st.sampled_from(READ_METHODS),
            st.sampled_from(["timeout_after_send", "drop_response", "lost_request"]),
        ),
    )
    return st.tuples(st.lists(step, max_size=max_size - 1), bad).map(
        lambda pair: FaultPlan((*pair[0], pair[1]))
    )
