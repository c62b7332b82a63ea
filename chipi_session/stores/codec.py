"""What every store shares: argument checks and the stored JSON (strict, never echoed).

Stores never log, and their error messages name the problem (a field, a key) but never echo
record contents: the helpers here are the only way they build those messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn, TypeVar

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..validate import check_number, describe

STORE_FORMAT: Final = "chipi-session-store"
STORE_VERSION: Final = 1

_T = TypeVar("_T")


def _invalid(message: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_INPUT, message)


def _show(value: object) -> str:
    """A short repr for error messages (keys and field names only, never record contents)."""
    return describe(value)


def _check_text(value: object, what: str) -> str:
    """A non-empty str that every backend can store (UTF-8 encodable, no NUL)."""
    if not isinstance(value, str) or not value:
        raise _invalid(f"{what} must be a non-empty str")
    if "\x00" in value:
        raise _invalid(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{what} is not valid Unicode text") from None
    return value


def _check_number(value: object, what: str) -> float:
    return check_number(value, what)


def _check_ttl(value: object) -> float:
    ttl = _check_number(value, "ttl_seconds")
    if ttl <= 0:
        raise _invalid("ttl_seconds must be positive")
    return ttl


def _check_timeout(value: object) -> float:
    timeout = _check_number(value, "timeout")
    if timeout < 0:
        raise _invalid("timeout must not be negative")
    return timeout


def _check_fence(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("fencing_token must be a positive int (from acquire_lease) or None")
    return value


def _v_text(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    _check_text(value, attribute.name)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-finite number {name}")


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate JSON fields mean a damaged or hand-edited file: refuse, do not pick one."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate field {_show(name)}")
        out[name] = value
    return out


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_fields)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


class _Corrupt(Exception):
    """Internal: a stored value is malformed; turned into INVALID_STORED_DATA with context."""


def _field(
    data: Mapping[str, Any], name: str, kinds: tuple[type, ...], *, default: Any = ...
) -> Any:
    if name not in data:
        if default is ...:
            raise _Corrupt(f"missing field {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _Corrupt(f"field {name!r} has the wrong type")
    return value


def _check_fields(data: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _Corrupt("expected an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        # Rewriting would drop a field we do not understand: refuse instead.
        raise _Corrupt(f"unknown field {_show(unknown[0])}")
    return data


def _stored_error(where: str, detail: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_STORED_DATA, f"{where}: {detail}")


def _closed() -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.CLOSED, "the session store is closed")


def _parse(from_json: Callable[[Mapping[str, Any]], _T], data: object, where: str) -> _T:
    """A stored record or journal entry, its errors prefixed with where it was found."""
    if not isinstance(data, Mapping):
        raise _stored_error(where, "expected an object")
    try:
        return from_json(data)
    except ChipiSessionError as exc:
        raise _stored_error(where, exc.message) from None
