"""Builders for the wallet's admin self-calls (docs/wire-protocol.md, "The self-calls").

The owner manages sessions by making the wallet call itself; these functions build those
calls, validating every argument first so an out-of-range value is an ``INVALID_INPUT`` error
here instead of a silently failed inner call on chain (a multicall swallows inner failures).
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ChipiSessionError, ErrorCode
from .felts import (
    ADDRESS_BOUND,
    U32_MAX,
    U64_MAX,
    parse_felt,
    parse_selector,
    selector,
    split_u256,
)
from .types import Call

__all__ = [
    "add_or_update_session_key_call",
    "revoke_session_key_call",
    "set_spending_policy_call",
    "remove_spending_policy_call",
]


def _bounded(value: object, upper: int, what: str) -> int:
    n = parse_felt(value, what)
    if n > upper:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: {n} exceeds {upper}")
    return n


def _address(value: object, what: str) -> int:
    return _bounded(value, ADDRESS_BOUND - 1, what)


def add_or_update_session_key_call(
    wallet: int,
    session_public_key: int,
    valid_until: int,
    max_calls: int,
    allowed_entrypoints: Sequence[int | str] = (),
) -> Call:
    """``add_or_update_session_key(key, valid_until: u64, max_calls: u32, Array<felt252>)``;
    entrypoints may be selector felts or names."""
    allowed = [parse_selector(e, "allowed_entrypoints") for e in allowed_entrypoints]
    return Call(
        to=_address(wallet, "wallet"),
        selector=selector("add_or_update_session_key"),
        calldata=[
            parse_felt(session_public_key, "session_public_key"),
            _bounded(valid_until, U64_MAX, "valid_until"),
            _bounded(max_calls, U32_MAX, "max_calls"),
            len(allowed),
            *allowed,
        ],
    )


def revoke_session_key_call(wallet: int, session_public_key: int) -> Call:
    return Call(
        to=_address(wallet, "wallet"),
        selector=selector("revoke_session_key"),
        calldata=[parse_felt(session_public_key, "session_public_key")],
    )


def set_spending_policy_call(
    wallet: int,
    session_public_key: int,
    token: int,
    max_per_call: int,
    max_per_window: int,
    window_seconds: int,
) -> Call:
    """``set_spending_policy(key, token, max_per_call: u256, max_per_window: u256, u64)``."""
    return Call(
        to=_address(wallet, "wallet"),
        selector=selector("set_spending_policy"),
        calldata=[
            parse_felt(session_public_key, "session_public_key"),
            _address(token, "token"),
            *split_u256(max_per_call, "max_per_call"),
            *split_u256(max_per_window, "max_per_window"),
            _bounded(window_seconds, U64_MAX, "window_seconds"),
        ],
    )


def remove_spending_policy_call(wallet: int, session_public_key: int, token: int) -> Call:
    return Call(
        to=_address(wallet, "wallet"),
        selector=selector("remove_spending_policy"),
        calldata=[parse_felt(session_public_key, "session_public_key"), _address(token, "token")],
    )
