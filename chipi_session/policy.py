"""The session policy of the Chipi v33 wallet contract as pure functions.

One implementation, used twice: LocalChain runs it as the contract, and the engine runs it as a
pre-flight check before signing, so a call the chain would refuse is refused locally with the
same reason and no round trip. Order of checks is the contract's (docs/contract.md §4.1, §8),
because which check fails first decides the error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import attrs

from .errors import ChipiSessionError, ErrorCode
from .felts import U64_MAX, U128_BOUND, U256_BOUND, join_u256, selector
from .types import Call, SessionStatus, SpendingPolicy

__all__ = [
    "ADMIN_SELECTORS",
    "SPENDING_SELECTORS",
    "Denial",
    "check_session_allowed",
    "denial_error",
    "SpendingViolation",
    "apply_spending",
]

#: The 9 admin entrypoints a session may never call, whatever its whitelist (Layer 1).
ADMIN_SELECTORS: frozenset[int] = frozenset(
    selector(n)
    for n in (
        "upgrade",
        "add_or_update_session_key",
        "revoke_session_key",
        "__execute__",
        "set_public_key",
        "setPublicKey",
        "execute_from_outside_v2",
        "set_spending_policy",
        "remove_spending_policy",
    )
)

#: ERC-20 entrypoints whose amount (u256 at calldata[1..2]) counts against a spending policy.
SPENDING_SELECTORS: frozenset[int] = frozenset(
    selector(n) for n in ("transfer", "approve", "increase_allowance", "increaseAllowance")
)


class Denial(enum.StrEnum):
    """Why ``is_session_allowed_for_calls`` said no, in the contract's check order."""

    NOT_REGISTERED = "not_registered"  # valid_until == 0: unknown or revoked
    EXPIRED = "expired"  # now > stored valid_until
    EXHAUSTED = "exhausted"  # calls_used >= max_calls
    ADMIN_SELECTOR = "admin_selector"
    SELF_CALL = "self_call"  # empty whitelist and a call to the account itself
    NOT_WHITELISTED = "not_whitelisted"


def check_session_allowed(
    status: SessionStatus, account: int, calls: Sequence[Call], now: int
) -> Denial | None:
    """``is_session_allowed_for_calls``: None if allowed, else the first failing rule.

    ``now`` is the block time the caller's phase sees: the real time for SNIP-9 and the
    engine's pre-flight, the time rounded down to the hour inside a direct INVOKE's
    ``__validate__`` (docs/contract.md §9.1).
    """
    if status.valid_until == 0:
        return Denial.NOT_REGISTERED
    if now > status.valid_until:
        return Denial.EXPIRED
    if status.calls_used >= status.max_calls:
        return Denial.EXHAUSTED
    if any(c.selector in ADMIN_SELECTORS for c in calls):
        return Denial.ADMIN_SELECTOR
    if not status.allowed_entrypoints:
        if any(c.to == account for c in calls):
            return Denial.SELF_CALL
        return None
    allowed = set(status.allowed_entrypoints)
    if any(c.selector not in allowed for c in calls):
        return Denial.NOT_WHITELISTED
    return None


_DENIAL_CODES = {
    Denial.NOT_REGISTERED: ErrorCode.SESSION_NOT_REGISTERED,
    Denial.EXPIRED: ErrorCode.SESSION_EXPIRED,
    Denial.EXHAUSTED: ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
    Denial.ADMIN_SELECTOR: ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED,
    Denial.SELF_CALL: ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED,
    Denial.NOT_WHITELISTED: ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED,
}

_DENIAL_TEXT = {
    Denial.NOT_REGISTERED: "the session is not registered on the wallet (or was revoked)",
    Denial.EXPIRED: "the session has expired",
    Denial.EXHAUSTED: "the session has used all of its calls",
    Denial.ADMIN_SELECTOR: "a session may never call the wallet's admin entrypoints",
    Denial.SELF_CALL: "a session with an empty whitelist may not call the wallet itself",
    Denial.NOT_WHITELISTED: "an entrypoint is not in the session's whitelist",
}


def denial_error(denial: Denial, *, revoked: bool = False) -> ChipiSessionError:
    if denial is Denial.NOT_REGISTERED and revoked:
        return ChipiSessionError(ErrorCode.SESSION_REVOKED, "the session was revoked")
    return ChipiSessionError(_DENIAL_CODES[denial], _DENIAL_TEXT[denial])


@attrs.frozen
class SpendingViolation(Exception):
    """A spending check failed; ``panic`` is the contract's message."""

    panic: str
    code: ErrorCode

    def to_error(self) -> ChipiSessionError:
        return ChipiSessionError(self.code, self.panic)


def apply_spending(
    policies: Mapping[int, SpendingPolicy], calls: Sequence[Call], now: int
) -> dict[int, SpendingPolicy]:
    """``check_and_update_spending`` for one batch (docs/contract.md §8).

    ``policies`` maps token address -> policy for the signing session. Returns the policies that
    changed (token -> new policy); raises :class:`SpendingViolation` with the contract's panic
    message, including the corelib overflow panics of Cairo's checked arithmetic
    (``window_start + window_seconds`` is a u64 add, ``spent + amount`` a u256 add). Pure: the
    caller decides whether to commit the result.
    """
    updated: dict[int, SpendingPolicy] = {}
    for call in calls:
        if call.selector not in SPENDING_SELECTORS:
            continue
        policy = updated.get(call.to) or policies.get(call.to)
        if policy is None or policy.max_per_window == 0:
            continue
        if len(call.calldata) < 3:
            raise SpendingViolation("Spending: calldata too short", ErrorCode.INVALID_INPUT)
        low, high = call.calldata[1], call.calldata[2]
        if low >= U128_BOUND or high >= U128_BOUND:
            raise SpendingViolation("Spending: invalid amount", ErrorCode.INVALID_INPUT)
        amount = join_u256(low, high)
        if amount > policy.max_per_call:
            raise SpendingViolation(
                "Spending: exceeds per-call", ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
            )
        spent, start = policy.spent_in_window, policy.window_start
        if start + policy.window_seconds > U64_MAX:
            raise SpendingViolation("u64_add Overflow", ErrorCode.TRANSACTION_REJECTED)
        if now >= start + policy.window_seconds:
            spent, start = 0, now
        if spent + amount >= U256_BOUND:
            raise SpendingViolation("u256_add Overflow", ErrorCode.TRANSACTION_REJECTED)
        if spent + amount > policy.max_per_window:
            raise SpendingViolation(
                "Spending: exceeds window limit", ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
            )
        updated[call.to] = attrs.evolve(policy, spent_in_window=spent + amount, window_start=start)
    return updated
