"""Felt parsing and encoding shared by every layer.

Chipi's SDKs send felts as ints, ``0x`` hex, decimal strings and (for old whitelists) short
strings. Everything here turns them into canonical Python ints in ``[0, P)`` or raises
``INVALID_INPUT``; nothing here does I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .errors import ChipiSessionError, ErrorCode
from .validate import describe

__all__ = [
    "ADDRESS_BOUND",
    "FIELD_PRIME",
    "CURVE_ORDER",
    "parse_felt",
    "parse_felts",
    "to_hex",
    "selector",
    "keccak250",
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
    return ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: not a felt: {describe(value)}")


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
    """A list of felts, each as :func:`parse_felt` accepts it (not a bare string)."""
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


_MASK_250 = 2**250 - 1
#: Selectors of the wallet and ERC-20 entrypoints this library names, precomputed so that
#: importing it does not load Keccak (~40 ms of pycryptodome + cffi). Entry points named
#: ``__default__``/``__l1_default__`` have selector 0 by convention (starknet-py's
#: ``get_selector_from_name``). tests/test_native_hashing.py recomputes every entry.
_KNOWN_SELECTORS: dict[str, int] = {
    "__default__": 0,
    "__l1_default__": 0,
    "__execute__": 0x15d40a3d6ca2ac30f4031e42be28da9b056fef9bb7357ac5e85627ee876e5ad,
    "__validate__": 0x162da33a4585851fe8d3af3c2a9c60b557814e221e0d4f30ff0b2189d9c7775,
    "execute_from_outside": 0x7ec457cd7ed1630225a8328f826a29a327b19486f6b2882b4176545ebdbe3d,
    "execute_from_outside_v2": 0x34cc13b274446654ca3233ed2c1620d4c5d1d32fd20b47146a3371064bdc57d,
    "upgrade": 0xf2f7c15cbe06c8d94597cd91fd7f3369eae842359235712def5584f8d270cd,
    "add_or_update_session_key": 0x27d4f8b711f8a318b18cac75c0b7c9941844dbbece6f62ca10111055acb64c1,
    "revoke_session_key": 0x32d4c11046940bbba0d48557b365ca002c6adc3f58d28671c8b7542ab7d60e9,
    "set_public_key": 0x2e3e21ff5952b2531241e37999d9c4c8b3034cccc89a202a6bf019bdf5294f9,
    "setPublicKey": 0xbc0eb87884ab91e330445c3584a50d7ddf4b568f02fbeb456a6242cce3f5d9,
    "set_spending_policy": 0x27b6399a529753e66438fe0341234566c390277e9c20b0f556016eb33bb698,
    "remove_spending_policy": 0x28dac008d849601a4f136c3a869aa4dcb43907ea63ab552ecddfd2281144040,
    "get_session_data": 0x22ab76a647098ec53b3907885af4dcbe973ac395dd2baba3e0a3cc74a79a175,
    "get_session_allowed_entrypoint_at": 0x2ef2a2e649feb975e271289bcc849cbf61315cba1218f2acd6011853b0df097,
    "get_spending_policy": 0x3dfdf9f26d7d7bb37c449e8a7bf8995bcdf8b21b6a891a370ad299c2beef261,
    "is_valid_outside_execution_nonce": 0x1e6d35df2b9d989fb4b6bbcebda1314e4254cbe5e589dd94ff4f29ea935e91c,
    "transfer": 0x83afd3f4caedc6eebf44246fe54e38c95e3179a5ec9ea81740eca5b482d12e,
    "transfer_from": 0x3704ffe8fba161be0e994951751a5033b1462b918ff785c0a636be718dfdb68,
    "transferFrom": 0x41b033f4a31df8067c24d1e9b550a2ce75fd4a29e1147af9752174f0e6cb20,
    "approve": 0x219209e083275171774dab1df80982e9df2096516f06319c5c6d71ae0a8480c,
    "increase_allowance": 0x1d13ab0a76d7407b1d5faccd4b3d8a9efe42f3d3c21766431d4fafb30f45bd4,
    "increaseAllowance": 0x16cc063b8338363cf388ce7fe1df408bf10f16cd51635d392e21d852fafb683,
    "balance_of": 0x35a73cd311a05d46deda634c5ee045db92f811b4e74bca4437fcb5302b7af33,
    "balanceOf": 0x2e4263afad30923c891518314c3c95dbe830a16874e8abc5777a9a20b54c76e,
    "decrease_allowance": 0x3b076186c19fe96221e4dfacd40c519f612eae02e0555e4e115a2a6cf2f1c1f,
    "decreaseAllowance": 0x1aaf3e6107dd1349c81543ff4221a326814f77dadcc5810807b74f1a49ded4e,
    "mint": 0x2f0b3c5710379609eb5495f1ecd348cb28167711b73609fe565a72734550354,
    "burn": 0x3e8cfd4725c1e28fa4a6e3e468b4fcf75367166b850ac5f04e33ec843e82c1,
}


@functools.lru_cache(maxsize=4096)
def selector(name: str) -> int:
    """sn_keccak (Keccak-256 masked to 250 bits) of an entrypoint name.

    pycryptodome's Keccak rather than starknet-py's ``get_selector_from_name``, whose import
    pulls in sympy (~0.5 s); the tests check both agree.
    """
    known = _KNOWN_SELECTORS.get(name)
    if known is not None:
        return known
    return keccak250(name.encode("ascii"))


def keccak250(data: bytes) -> int:
    """Starknet's keccak: Keccak-256 (not SHA3-256) of ``data`` masked to 250 bits."""
    from Crypto.Hash import keccak

    digest = keccak.new(data=data, digest_bits=256).digest()
    return int.from_bytes(digest, "big") & _MASK_250


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


def encode_short_string(text: str, what: str = "short string") -> int:
    """Cairo's short string: at most 31 ASCII characters packed big-endian into a felt."""
    if not isinstance(text, str):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{what}: expected a str, got {describe(text)}"
        )
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: not ASCII text") from None
    if len(data) > 31:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: longer than 31 characters")
    return int.from_bytes(data, "big")


def decode_short_string(value: int) -> str:
    """The ASCII text of a Cairo short string (undecodable bytes replaced)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big").decode("ascii", "replace")


def split_u256(value: int, what: str = "amount") -> tuple[int, int]:
    """A u256 as Cairo's ``(low, high)`` 128-bit halves (``INVALID_INPUT`` if out of range)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < U256_BOUND:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what}: not a u256: {describe(value)}")
    return value & (U128_BOUND - 1), value >> 128


def join_u256(low: int, high: int) -> int:
    """The u256 of Cairo's ``(low, high)`` 128-bit halves."""
    return low + (high << 128)
