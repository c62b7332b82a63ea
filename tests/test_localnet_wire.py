"""localnet's wire parsing: the fast path for ``0x`` hex felts reads exactly what the general
parser (chipi_session.felts.parse_felt_or_short_string) reads, and refuses what it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipi_session.errors import ChipiSessionError
from chipi_session.felts import FIELD_PRIME, parse_felt_or_short_string
from chipi_session.localnet.wire import WireError, wire_felt

HEXISH = st.text(alphabet="0123456789abcdefABCDEF_ +-xX\n\t\u0661", max_size=70)


def reference(value: object) -> int | None:
    try:
        return parse_felt_or_short_string(value, "x")
    except ChipiSessionError:
        return None


def fast(value: object) -> int | None:
    try:
        return wire_felt(value, "x")
    except WireError:
        return None


@given(HEXISH.map(lambda t: "0x" + t))
def test_hex_fast_path_matches_the_general_parser(value: str) -> None:
    assert fast(value) == reference(value)


@given(st.integers(min_value=0, max_value=2 * FIELD_PRIME))
def test_canonical_hex_round_trips(n: int) -> None:
    assert fast(hex(n)) == (n if n < FIELD_PRIME else None)


@pytest.mark.parametrize(
    "value", ["0x", "0x-1", "0x 1", "0x1 ", "0x_1", "0x1_0", "0X10", " 0x10", "0x" + "f" * 64]
)
def test_edge_cases_match(value: str) -> None:
    assert fast(value) == reference(value)
