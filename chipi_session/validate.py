"""Argument checks shared by every public constructor and function.

One helper per kind of value, each raising ``ChipiSessionError(INVALID_INPUT)`` with a message
that names the argument and describes the bad value without echoing it whole: :func:`describe`
never calls ``repr`` on a large int (``str(int)`` refuses more than 4,300 digits, which used to
turn a bad input into a raw ``ValueError`` while the error message was being built) nor on an
object of a caller's type (its ``__repr__`` may raise or hold secrets).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ChipiSessionError, ErrorCode

__all__ = [
    "describe",
    "invalid",
    "check_int",
    "check_number",
    "check_instance",
    "check_callable",
    "check_path",
]

_T = TypeVar("_T")

#: Ints up to this many bits are shown as numbers in messages; larger ones by bit length.
_SHOWN_INT_BITS = 256
_SHOWN_TEXT = 60


def describe(value: object) -> str:
    """A short, safe description of a bad value for an error message."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        if bits > _SHOWN_INT_BITS:
            sign = "a negative" if value < 0 else "an"
            return f"{sign} int of {bits} bits"
        return int.__repr__(value)
    if isinstance(value, (str, bytes)):
        if len(value) <= _SHOWN_TEXT:
            return repr(value)
        return f"{value[:_SHOWN_TEXT]!r}... ({len(value)} long)"
    return f"a {type(value).__name__}"


def invalid(message: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_INPUT, message)


def check_int(
    value: object, what: str, *, low: int | None = None, high: int | None = None
) -> int:
    """An int (not a bool) in ``[low, high]`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{what} must be an integer, got {describe(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bounds = f">= {low}"
        elif low is None:
            bounds = f"<= {_bound(high)}"
        else:
            bounds = f"in [{low}, {_bound(high)}]"
        raise invalid(f"{what} must be an integer {bounds}, got {describe(value)}")
    return int(value)


def _bound(n: int) -> str:
    """Bounds like 2**32-1 read better as powers of two."""
    if n > 1_000_000 and (n + 1) & n == 0:
        return f"2**{(n + 1).bit_length() - 1}-1"
    return str(n)


def check_number(
    value: object, what: str, *, positive: bool = False, non_negative: bool = False
) -> float:
    """A finite real number (int or float, not a bool), optionally > 0 or >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{what} must be a number, got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise invalid(f"{what} is out of range, got {describe(value)}") from None
    if not math.isfinite(number):
        raise invalid(f"{what} must be finite, got {describe(value)}")
    if positive and not number > 0:
        raise invalid(f"{what} must be > 0, got {describe(value)}")
    if non_negative and not number >= 0:
        raise invalid(f"{what} must be >= 0, got {describe(value)}")
    return number


def check_instance(value: _T, what: str, kind: type | tuple[type, ...], expected: str) -> _T:
    if not isinstance(value, kind):
        raise invalid(f"{what} must be {expected}, got {describe(value)}")
    return value


def check_callable(value: object, what: str) -> Callable[..., Any]:
    if not callable(value):
        raise invalid(f"{what} must be callable, got {describe(value)}")
    return value


def check_path(value: object, what: str = "path") -> str:
    """A filesystem path (str or os.PathLike of str): non-empty, no NUL, encodable."""
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError:
            raise invalid(f"{what} must be a file path") from None
    if not isinstance(value, str):
        raise invalid(f"{what} must be a file path (str or os.PathLike), got {describe(value)}")
    if not value:
        raise invalid(f"{what} must not be empty")
    if "\x00" in value:
        raise invalid(f"{what} must not contain NUL characters")
    try:
        os.fsencode(value)
    except UnicodeError:
        raise invalid(f"{what} cannot be encoded for this filesystem") from None
    return value


def check_methods(value: _T, what: str, methods: tuple[str, ...], expected: str) -> _T:
    """Duck typing, checked up front: ``value`` has every method in ``methods``."""
    missing = [name for name in methods if not callable(getattr(value, name, None))]
    if missing:
        raise invalid(
            f"{what} must be {expected} (missing {', '.join(missing)}), got {describe(value)}"
        )
    return value


#: What every backend answers (``SessionReader``); writes and the optional capabilities are
#: checked where they are used (docs/architecture.md, "Backends").
_BACKEND_METHODS = ("get_session_status", "get_spending_policy")


_is_reader: Callable[[object], bool] | None = None


def check_backend(value: _T) -> _T:
    global _is_reader
    if _is_reader is None:  # imported once, late: the backends depend on this module
        from .backends.base import is_reader

        _is_reader = is_reader
    if _is_reader(value):
        return value
    return check_methods(value, "backend", _BACKEND_METHODS, "a SessionReader")


def check_clock(value: _T) -> _T:
    return check_methods(value, "clock", ("now", "sleep_until"), "a Clock")


def check_vault(value: _T) -> _T:
    from .vault import Vault  # the vault module depends on this one

    return check_instance(value, "vault", Vault, "a Vault")


def check_encrypt_key(value: _T) -> _T:
    """A PIN ``str`` or a ``HighEntropyKey``; the value itself is never shown."""
    from .vault import HighEntropyKey

    if isinstance(value, HighEntropyKey):
        return value
    if not isinstance(value, str):
        raise invalid(
            f"encrypt_key must be a str PIN or a HighEntropyKey, got a {type(value).__name__}"
        )
    if not value:
        raise invalid("encrypt_key must not be empty")
    return value


def check_optional_callable(value: _T, what: str) -> _T:
    if value is not None and not callable(value):
        raise invalid(f"{what} must be callable or None, got {describe(value)}")
    return value


def check_shared_options(
    *,
    backend: object,
    clock: object,
    vault: object,
    get_bearer_token: object,
    status_interval: object,
    event_buffer_size: object,
) -> None:
    """The options ``ChipiSession`` and ``SessionHub`` share (``None`` = the default)."""
    if backend is not None:
        check_backend(backend)
    if clock is not None:
        check_clock(clock)
    if vault is not None:
        check_vault(vault)
    check_optional_callable(get_bearer_token, "get_bearer_token")
    check_number(status_interval, "status_interval", positive=True)
    check_int(event_buffer_size, "event_buffer_size", low=1)
