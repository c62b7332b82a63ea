"""What the session's actions accept, and the errors they build (pure: no I/O).

Checked before anything changes, so bad input is a ``ChipiSessionError`` with a stable code
and no state change (docs/engine.md). Split from ``engine.py`` so the facade stays thin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import validate
from .errors import ChipiSessionError, ErrorCode
from .felts import U32_MAX, U64_MAX, parse_felt, parse_selector
from .types import ExecutionResult, ExecutionStatus, SubmitInfo

__all__ = [
    "AppliedHashLost",
    "call_failed_error",
    "check_count",
    "check_policy",
    "check_positive_int",
    "hash_lost_error",
    "parse_entrypoints",
    "parse_token",
]


def call_failed_error(result: ExecutionResult) -> ChipiSessionError:
    """``CALL_FAILED``: included and counted (``applied=True``), not retryable."""
    if result.status is ExecutionStatus.REVERTED:
        detail = f"the transaction reverted: {result.revert_reason or 'no reason given'}"
    else:
        index = result.failed_call_index
        reason = result.calls[index].reason if index is not None else None
        detail = f"call {index} failed: {reason or 'no reason given'}"
    return ChipiSessionError(
        ErrorCode.CALL_FAILED,
        f"execute {result.tx_hash}: {detail[:300]}",
        retryable=False,
        applied=True,
        result=result,
    )


def hash_lost_error(action: str) -> ChipiSessionError:
    return ChipiSessionError(
        ErrorCode.UNKNOWN_OUTCOME,
        f"{action} executed on chain (its SNIP-9 nonce is used) but the response was lost, so "
        "its transaction hash is unknown; do not resend",
        retryable=False,
        applied=True,
    )


def check_positive_int(value: object, what: str, upper: int) -> None:
    validate.check_int(value, what, low=1, high=upper)


def check_count(value: object, what: str) -> None:
    validate.check_int(value, what, low=0, high=U32_MAX)


def parse_entrypoints(values: Iterable[int | str] | None) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT,
            "allowed_entrypoints must be a list of names or selectors, "
            f"got {validate.describe(values)}",
        )
    try:
        return tuple(parse_selector(v, "allowed_entrypoints") for v in values)
    except ChipiSessionError as exc:
        raise ChipiSessionError(ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED, exc.message) from None


def parse_token(token: object) -> int:
    if isinstance(token, str) and not token.strip():
        raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, "token must not be blank")
    value = parse_felt(token, "token")
    if value == 0:
        raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, "token must not be zero")
    return value


def check_policy(max_per_call: object, max_per_window: object, window_seconds: object) -> None:
    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not (is_int(window_seconds) and 0 < window_seconds <= U64_MAX):  # type: ignore[operator]
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "window_seconds must be a positive u64"
        )
    for name, v in (("max_per_call", max_per_call), ("max_per_window", max_per_window)):
        if not (is_int(v) and 0 <= v < 2**256):  # type: ignore[operator]
            raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, f"{name} must be a u256")
    if max_per_window > 0 and max_per_call > max_per_window:  # type: ignore[operator]
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "max_per_call may not exceed max_per_window"
        )


class AppliedHashLost(Exception):
    """Internal: the write executed on chain (its nonce is used) but its hash was lost."""

    def __init__(self, info: SubmitInfo) -> None:
        self.info = info
