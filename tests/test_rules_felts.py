"""Felt parsing at its exact edges (chipi_session.felts; mutation/config.toml).

Every parser either returns a canonical int or raises ``INVALID_INPUT``; these tests pin the
bounds (P, 2**32, 2**64, 2**128, 2**256, 31-byte short strings) and the inputs that must be
refused rather than misread (a ``str`` where a list of felts belongs, a non-iterable).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starknet_py.hash.selector import get_selector_from_name

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import (
    ADDRESS_BOUND,
    CURVE_ORDER,
    FIELD_PRIME,
    U32_MAX,
    U64_MAX,
    U128_BOUND,
    U256_BOUND,
    decode_short_string,
    encode_short_string,
    join_u256,
    keccak250,
    parse_felt,
    parse_felt_or_short_string,
    parse_felts,
    parse_selector,
    selector,
    split_u256,
    to_hex,
)
from chipi_session.types import SessionStatus

P = FIELD_PRIME


def invalid(fn: Callable[[], object]) -> ChipiSessionError:
    with pytest.raises(ChipiSessionError) as info:
        fn()
    assert info.value.code is ErrorCode.INVALID_INPUT
    return info.value


def test_the_bounds_are_the_documented_numbers() -> None:
    assert P == 0x800000000000011000000000000000000000000000000000000000000000001
    assert CURVE_ORDER == 0x800000000000010FFFFFFFFFFFFFFFFB781126DCAE7B2321E66A241ADC64D2F
    assert (ADDRESS_BOUND, U128_BOUND, U256_BOUND) == (2**251, 2**128, 2**256)
    assert (U32_MAX, U64_MAX) == (4294967295, 18446744073709551615)


@pytest.mark.parametrize("field", ["max_calls", "calls_used"])
def test_u32_fields_accept_u32_max_and_refuse_2_32(field: str) -> None:
    def felts(value: int) -> list[int]:
        row = {"max_calls": 5, "calls_used": 0, field: value}
        return [100, row["max_calls"], row["calls_used"], 0]

    assert SessionStatus.from_felts(felts(U32_MAX)) is not None
    with pytest.raises(ChipiSessionError) as info:
        SessionStatus.from_felts(felts(U32_MAX + 1))
    assert info.value.code is ErrorCode.SESSION_INVALID_RESPONSE


def test_u64_valid_until_accepts_u64_max_and_refuses_2_64() -> None:
    assert SessionStatus.from_felts([U64_MAX, 1, 0, 0]).valid_until == U64_MAX
    with pytest.raises(ChipiSessionError):
        SessionStatus.from_felts([U64_MAX + 1, 1, 0, 0])


# -- parse_felt ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (0, 0),
        (P - 1, P - 1),
        ("0", 0),
        ("  42 ", 42),
        ("0x0", 0),
        ("0x1f", 31),
        ("0X1F", 31),
        (hex(P - 1), P - 1),
        (str(P - 1), P - 1),
    ],
)
def test_parse_felt_accepts(text: object, value: int) -> None:
    assert parse_felt(text) == value


@pytest.mark.parametrize(
    "bad",
    [P, P + 1, -1, hex(P), str(P), "0x", " 0x ", "", "-1", "1e3", "0x1g", "12a", "x12", True,
     False, 1.0, None, b"1", [1]],
)
def test_parse_felt_refuses(bad: object) -> None:
    error = invalid(lambda: parse_felt(bad, "amount"))
    assert error.message.startswith("amount: not a felt")


def test_parse_felts_refuses_a_string_instead_of_splitting_it() -> None:
    for text in ("123", "0x12", b"12"):
        error = invalid(lambda text=text: parse_felts(text, "calldata"))
        assert "expected a list of felts" in error.message


@pytest.mark.parametrize("bad", [5, None, 1.5, object()])
def test_parse_felts_refuses_a_non_iterable_with_a_typed_error(bad: object) -> None:
    error = invalid(lambda: parse_felts(bad, "calldata"))  # type: ignore[arg-type]
    assert "calldata: expected a list of felts" == error.message


def test_parse_felts_reads_any_iterable_and_names_the_bad_index() -> None:
    assert parse_felts(iter(["0x1", 2, "3"])) == (1, 2, 3)
    assert parse_felts(()) == ()
    error = invalid(lambda: parse_felts([1, "nope", 3], "calldata"))
    assert error.message.startswith("calldata[1]: not a felt")


def test_to_hex_is_lowercase_and_unpadded() -> None:
    assert (to_hex(0), to_hex(255), to_hex(P - 1)) == ("0x0", "0xff", hex(P - 1))


# -- selectors ---------------------------------------------------------------------------------


NAMES = [
    "transfer", "approve", "wave", "balanceOf", "upgrade", "_private", "a", "x1", "__execute__",
    "get_session_data", "increase_allowance", "set_public_key", "SessionKeyAdded", "mint",
    "burn", "name", "symbol", "decimals", "total_supply", "allowance", "permit", "swap",
]


def test_selector_is_starknet_keccak_for_known_and_unknown_names() -> None:
    for name in NAMES:
        expected = get_selector_from_name(name)
        assert selector(name) == expected, name
        assert keccak250(name.encode()) == (0 if name == "__default__" else expected)
    assert all(keccak250(n.encode()) < 2**250 for n in NAMES)
    assert any(keccak250(n.encode()) >= 2**249 for n in NAMES)


def test_default_entrypoints_have_selector_zero() -> None:
    assert selector("__default__") == 0 == get_selector_from_name("__default__")
    assert selector("__l1_default__") == 0


@pytest.mark.parametrize("name", ["_private", "__validate__", "_", "a_b", "A1", "  transfer "])
def test_parse_selector_reads_identifiers_as_names(name: str) -> None:
    assert parse_selector(name) == get_selector_from_name(name.strip())


@pytest.mark.parametrize(("value", "expected"), [("0x10", 16), ("16", 16), (16, 16)])
def test_parse_selector_reads_numbers_as_felts(value: object, expected: int) -> None:
    assert parse_selector(value) == expected


@pytest.mark.parametrize("bad", ["1abc", "a-b", "a b", "é", "tränsfer", "", True, None])
def test_parse_selector_refuses_non_identifiers_that_are_not_felts(bad: object) -> None:
    invalid(lambda: parse_selector(bad))


# -- short strings -----------------------------------------------------------------------------


def test_short_strings_of_exactly_31_bytes_encode_and_32_do_not() -> None:
    text31 = "a" * 31
    assert encode_short_string(text31) == int.from_bytes(text31.encode(), "big")
    assert encode_short_string("") == 0
    assert encode_short_string("VALID") == 0x56414C4944
    error = invalid(lambda: encode_short_string("a" * 32))
    assert "31" in error.message


def test_encode_short_string_refuses_non_text_and_non_ascii() -> None:
    for bad in (5, b"abc", None):
        assert "expected a str" in invalid(lambda bad=bad: encode_short_string(bad)).message
    assert "ASCII" in invalid(lambda: encode_short_string("héllo")).message


def test_parse_felt_or_short_string() -> None:
    assert parse_felt_or_short_string("VALID") == 0x56414C4944
    assert parse_felt_or_short_string(" hi ") == encode_short_string("hi")
    assert parse_felt_or_short_string("a" * 31) == encode_short_string("a" * 31)
    assert parse_felt_or_short_string("0x10") == 16
    assert parse_felt_or_short_string("0X10") == 16
    assert parse_felt_or_short_string("123") == 123
    assert parse_felt_or_short_string(7) == 7
    for bad in ("a" * 32, "héllo", "", "  ", None, True, P):
        invalid(lambda bad=bad: parse_felt_or_short_string(bad, "name"))
    assert "not a felt or a short string" in invalid(
        lambda: parse_felt_or_short_string("a" * 32, "name")
    ).message


def test_decode_short_string_inverts_encode() -> None:
    for text in ("", "a", "VALID", "v33", "a" * 31):
        assert decode_short_string(encode_short_string(text)) == text
    assert decode_short_string(0) == ""
    assert decode_short_string(0x80) == "\ufffd"  # not ASCII: replaced, never raises


# -- u256 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "halves"),
    [
        (0, (0, 0)),
        (U128_BOUND - 1, (U128_BOUND - 1, 0)),
        (U128_BOUND, (0, 1)),
        (U256_BOUND - 1, (U128_BOUND - 1, U128_BOUND - 1)),
        (5 * U128_BOUND + 7, (7, 5)),
    ],
)
def test_split_and_join_u256(value: int, halves: tuple[int, int]) -> None:
    assert split_u256(value) == halves
    assert join_u256(*halves) == value


@pytest.mark.parametrize("bad", [-1, U256_BOUND, True, "1", 1.0, None])
def test_split_u256_refuses_what_is_not_a_u256(bad: object) -> None:
    error = invalid(lambda: split_u256(bad, "max_per_call"))  # type: ignore[arg-type]
    assert error.message.startswith("max_per_call: not a u256")
