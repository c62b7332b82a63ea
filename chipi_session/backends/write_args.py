"""The arguments of the Chipi REST writes, checked before anything is built or sent.

Pure: each check raises ``ChipiSessionError`` (``INVALID_INPUT``, or
``INVALID_SPENDING_POLICY`` for policy limits) with a message that names the argument, never
its value when it may be a secret. Used by :class:`~chipi_session.backends.chipi_api.ChipiApiBackend`.
"""

from __future__ import annotations

import re

from ..errors import ChipiSessionError, ErrorCode
from ..felts import U64_MAX, parse_felt, split_u256

__all__ = ["check_api_key", "check_range", "check_felt", "check_policy_args"]

_API_KEY = re.compile(r"pk_(dev|prod)_[A-Za-z0-9]{32,}")


def check_api_key(api_key: object) -> None:
    """The project's public key (``pk_prod_...`` / ``pk_dev_...``), never the ``sk_`` secret."""
    if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT,
            "api_key must look like pk_prod_<32+ letters/digits> or pk_dev_<...> "
            "(the public API key; never pass the sk_ secret here)",
        )


def check_range(value: int, upper: int, what: str) -> int:
    """An int (not a bool) in ``[0, upper]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must be in [0, {upper}]")
    return value


def check_felt(value: int, what: str) -> int:
    """An int (not a bool) that is a felt."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must be an int felt")
    return parse_felt(value, what)


def check_policy_args(max_per_call: int, max_per_window: int, window_seconds: int) -> None:
    """A spending policy's limits: u256 amounts, a positive u64 window, per call <= per window
    (when the window has a cap)."""
    try:
        split_u256(max_per_call, "max_per_call")  # validates: a u256, as INVALID_SPENDING_POLICY
        split_u256(max_per_window, "max_per_window")
    except ChipiSessionError as exc:
        raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, exc.message) from None
    if (
        isinstance(window_seconds, bool)
        or not isinstance(window_seconds, int)
        or not (0 < window_seconds <= U64_MAX)
    ):
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "window_seconds must be a positive u64"
        )
    if max_per_window > 0 and max_per_call > max_per_window:
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "max_per_call exceeds max_per_window"
        )
