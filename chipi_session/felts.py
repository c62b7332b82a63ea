"""Felt parsing and encoding shared by every layer.

Chipi's SDKs send felts as ints, ``0x`` hex, decimal strings and (for old whitelists) short
strings. Everything here turns them into canonical Python ints in ``[0, P)`` or raises
``INVALID_INPUT``; nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .errors import ChipiSessionError, ErrorCode

__all__ = [
    "ADDRESS_BOUND",
    "FIELD_PRIME",
    "CURVE_ORDER",
    "parse_felt",
    "parse_felts",
    "to_hex",
    "selector",
    "parse_selector",
    "encode_short_string",
    "parse_felt_or_short_string",
    "decode_short_string",
    "U64_MAX",
    "U32_MAX",
    "U128_BOUND",
    "U256_BOUND",
    "split_u256",
    "join_u256",
]

FIELD_PRIME = 2**251 + 17 * 2**192 + 1
CURVE_ORDER = 0x800000000000010FFFFFFFFFFFFFFFFB781126DCAE7B2321E66A241ADC64D2F
#: Contract addresses are below 2**251 (Cairo ContractAddress).
ADDRESS_BOUND = 2**251
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
U128_BOUND = 2**128
U256_BOUND = 2**256


def _invalid(what: str, value: object) -> ChipiSessionError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: not a felt: {shown}")


def parse_felt(value: object, what: str = "value") -> int:
    """Return ``value`` as a felt int; accepts int, ``0x`` hex and decimal strings."""
    if isinstance(value, bool):
        raise _invalid(what, value)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            if text[:2].lower() == "0x":
                if len(text) <= 2:
                    raise ValueError
                n = int(text[2:], 16)
            elif text.isdigit():
                n = int(text, 10)
            else:
                raise ValueError
        except ValueError:
            raise _invalid(what, value) from None
    else:
        raise _invalid(what, value)
    if not 0 <= n < FIELD_PRIME:
        raise _invalid(what, value)
    return n


def parse_felts(values: Iterable[object], what: str = "calldata") -> tuple[int, ...]:
    if isinstance(values, (str, bytes)):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: expected a list of felts")
    try:
        items = list(values)
    except TypeError:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{what}: expected a list of felts"
        ) from None
    return tuple(parse_felt(v, f"{what}[{i}]") for i, v in enumerate(items))


def to_hex(value: int) -> str:
    """Canonical wire form: lowercase ``0x`` hex, no zero padding."""
    return hex(value)


@functools.lru_cache(maxsize=4096)
def selector(name: str) -> int:
    """sn_keccak selector of an entrypoint name (starknet-py does the hashing)."""
    from starknet_py.hash.selector import get_selector_from_name

    return int(get_selector_from_name(name))


def _is_identifier(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] == "_") and all(
        c.isalnum() or c == "_" for c in text
    ) and text.isascii()


def parse_selector(value: object, what: str = "entrypoint") -> int:
    """An entrypoint given as a selector felt (int / hex / decimal) or as a Cairo name."""
    if isinstance(value, str) and _is_identifier(value.strip()):
        return selector(value.strip())
    return parse_felt(value, what)


def parse_felt_or_short_string(value: object, what: str = "value") -> int:
    """A felt (int, ``0x`` hex, decimal) or, like starknet.js, ASCII text as a short string
    (SNIP-12 ``shortstring`` fields, old JS SDK whitelists)."""
    if isinstance(value, str):
        text = value.strip()
        if text and text[:2].lower() != "0x" and not text.isdigit():
            try:
                return encode_short_string(text)
            except (ChipiSessionError, UnicodeEncodeError):
                raise ChipiSessionError(
                    ErrorCode.INVALID_INPUT, f"{what}: not a felt or a short string"
                ) from None
    return parse_felt(value, what)


def encode_short_string(text: str) -> int:
    data = text.encode("ascii")
    if len(data) > 31:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "short string longer than 31 bytes")
    return int.from_bytes(data, "big")


def decode_short_string(value: int) -> str:
    return value.to_bytes((value.bit_length() + 7) // 8, "big").decode("ascii", "replace")


def split_u256(value: int, what: str = "amount") -> tuple[int, int]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < U256_BOUND:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: not a u256: {value!r}")
    return value & (U128_BOUND - 1), value >> 128


def join_u256(low: int, high: int) -> int:
    return low + (high << 128)
