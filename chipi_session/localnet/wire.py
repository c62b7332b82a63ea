"""Parsing what the official SDKs send (docs/wire-protocol.md), without any web framework.

Tolerant on purpose, because both SDKs must work: calls as ``contractAddress`` or
``contract_address``; felts as ints, hex, decimal or short-string text (encoded as starknet.js
does, which reproduces the old TS whitelist bug faithfully); the owner signature as ``{r, s}``
(``recovery`` ignored) and the session signature as a 4-element array or as
``{"sessionSignature": [...]}``. Anything else is a :class:`WireError` with a Chipi code and an
HTTP status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ChipiSessionError, ErrorCode
from ..felts import FIELD_PRIME, parse_felt_or_short_string, selector
from ..types import Call

__all__ = [
    "WireError",
    "wire_felt",
    "wire_selector",
    "wire_call",
    "wire_calls",
    "wire_signature",
    "API_KEY_PATTERN",
]

API_KEY_PATTERN = re.compile(r"pk_(dev|prod)_[A-Za-z0-9]{32,}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_CALLS = 64
_MAX_CALLDATA = 4096


class WireError(Exception):
    """A request the server refuses: ``{message, code}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, "status": self.status}

    @classmethod
    def bad(cls, message: str, code: str = ErrorCode.INVALID_INPUT.value) -> WireError:
        return cls(400, code, message)


def wire_felt(value: Any, what: str) -> int:
    """int, ``0x`` hex, decimal, or (like starknet.js) text as a short string."""
    if type(value) is str and value[:2] == "0x":  # what the SDKs send: the fast path
        try:
            n = int(value[2:], 16)  # as parse_felt reads it; anything odd takes the long way
        except ValueError:
            pass
        else:
            if 0 <= n < FIELD_PRIME:
                return n
    try:
        return parse_felt_or_short_string(value, what)
    except ChipiSessionError as exc:
        raise WireError.bad(exc.message) from None


def wire_selector(value: Any, what: str) -> int:
    """An entrypoint: a Cairo name (hashed to its selector) or a selector felt."""
    if isinstance(value, str) and _IDENTIFIER.fullmatch(value.strip()):
        return selector(value.strip())
    return wire_felt(value, what)


def wire_call(data: Any, index: int) -> Call:
    if not isinstance(data, Mapping):
        raise WireError.bad(f"calls[{index}]: not an object")
    to = data.get("contractAddress", data.get("contract_address"))
    entry = data.get("entrypoint", data.get("entry_point", data.get("entry_point_selector")))
    if to is None or entry is None:
        raise WireError.bad(f"calls[{index}]: needs contractAddress and entrypoint")
    raw = data.get("calldata", [])
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise WireError.bad(f"calls[{index}].calldata: not a list")
    if len(raw) > _MAX_CALLDATA:
        raise WireError.bad(f"calls[{index}].calldata: too long")
    return Call(
        to=wire_felt(to, f"calls[{index}].contractAddress"),
        selector=wire_selector(entry, f"calls[{index}].entrypoint"),
        calldata=tuple(wire_felt(v, f"calls[{index}].calldata[{i}]") for i, v in enumerate(raw)),
    )


def wire_calls(value: Any) -> tuple[Call, ...]:
    if isinstance(value, Mapping):
        value = [value]  # starknet.js also accepts a single call
    if not isinstance(value, list) or not value:
        raise WireError.bad("calls: a non-empty list is required")
    if len(value) > _MAX_CALLS:
        raise WireError.bad(f"calls: at most {_MAX_CALLS}")
    return tuple(wire_call(c, i) for i, c in enumerate(value))


def wire_signature(value: Any) -> tuple[tuple[int, ...], bool]:
    """``(felts, is_session)`` from any of the SDKs' signature shapes."""
    bad = WireError.bad(
        "userSignature must be {r, s}, a 4-element array, or {sessionSignature: [4]}",
        ErrorCode.INVALID_SIGNATURE.value,
    )
    if isinstance(value, Mapping):
        if "sessionSignature" in value:
            value = value["sessionSignature"]
        elif "r" in value and "s" in value:
            return (
                wire_felt(value["r"], "userSignature.r"),
                wire_felt(value["s"], "userSignature.s"),
            ), False
        else:
            raise bad
    if isinstance(value, list) and len(value) in (2, 4):
        felts = tuple(wire_felt(v, f"userSignature[{i}]") for i, v in enumerate(value))
        return felts, len(felts) == 4
    raise bad
