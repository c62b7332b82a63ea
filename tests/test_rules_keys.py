"""keys.verify / sign / session_signature at their exact bounds (mutation/config.toml).

The range checks in front of the verifier decide what reaches it, so they are tested with the
verifier replaced by a recorder that accepts everything: a value just inside a bound must reach
it, a value exactly on the bound must not. Bounds: hash, ``r``, ``s`` and ``s^-1`` below 2**251,
public key in (0, P), ``valid_until`` a u64.
"""

from __future__ import annotations

from typing import Any

import pytest
import starknet_py.hash.utils as sn_utils

import chipi_session.keys as keys
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import CURVE_ORDER, FIELD_PRIME, U64_MAX
from chipi_session.keys import SecretKey, public_key_of, session_signature, sign, verify

N = CURVE_ORDER
BOUND = 2**251
PRIVATE = 0x53FA35059A0A7F4E0BBC13C0B5D2A0C1A5B5E6E66C5FFF26B71C23E23C1B7F3
KEY = SecretKey(PRIVATE)
PUB = KEY.public_key
HASH = 0x1234567890ABCDEF
R, S = sign(HASH, PRIVATE)


class Recorder:
    """Stands in for the native verifier: accepts everything, remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, ...]] = []

    def verify(self, *args: int) -> bool:
        self.asked.append(args)
        return True


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder()
    monkeypatch.setattr(keys, "_native", fake)
    return fake


def s_with_inverse(inverse: int) -> int:
    s = pow(inverse, -1, N)
    assert 0 < s < BOUND
    return s


@pytest.mark.parametrize(
    ("pub", "msg", "r", "s", "reaches"),
    [
        (PUB, BOUND - 1, R, S, True),
        (PUB, BOUND, R, S, False),
        (PUB, 0, R, S, True),  # a zero hash is verifiable (only signing refuses it)
        (PUB, -1, R, S, False),
        (PUB, HASH, BOUND - 1, S, True),
        (PUB, HASH, BOUND, S, False),
        (PUB, HASH, 1, S, True),
        (PUB, HASH, 0, S, False),
        (PUB, HASH, R, s_with_inverse(BOUND - 1), True),
        (PUB, HASH, R, s_with_inverse(BOUND), False),  # s < 2**251 but s^-1 == 2**251
        (PUB, HASH, R, 1, True),
        (PUB, HASH, R, 0, False),
        (1, HASH, R, S, True),  # x = 1 is on the curve
        (0, HASH, R, S, False),
        (FIELD_PRIME - 1, HASH, R, S, True),  # on the curve too
        (FIELD_PRIME, HASH, R, S, False),
    ],
)
def test_verify_bounds_decide_what_reaches_the_verifier(
    recorder: Recorder, pub: int, msg: int, r: int, s: int, reaches: bool
) -> None:
    assert keys._is_curve_x(pub) or not reaches
    assert verify(pub, msg, r, s) is reaches
    assert recorder.asked == ([(pub, msg, r, s)] if reaches else [])


def test_s_below_the_bound_with_a_large_inverse_is_refused_by_the_real_check() -> None:
    s = s_with_inverse(BOUND)
    assert s < BOUND and pow(s, -1, N) == BOUND
    assert verify(PUB, HASH, R, s) is False


def test_an_x_off_the_curve_never_reaches_the_verifier(recorder: Recorder) -> None:
    off = next(x for x in range(2, 200) if not keys._is_curve_x(x))
    assert verify(off, HASH, R, S) is False
    assert recorder.asked == []


def test_curve_membership_is_eulers_criterion() -> None:
    beta = 0x6F21413EFBE40DE150E596D72F7A8C5609AD26C15C915C1F4CDFCB99CEE9E89
    for x in [*range(1, 60), PUB, FIELD_PRIME - 1, FIELD_PRIME - 2]:
        rhs = (x**3 + x + beta) % FIELD_PRIME
        is_square = rhs == 0 or pow(rhs, (FIELD_PRIME - 1) // 2, FIELD_PRIME) == 1
        assert keys._is_curve_x(x) is is_square
    assert keys._is_curve_x(PUB) is True
    assert not all(keys._is_curve_x(x) for x in range(1, 60))


@pytest.mark.parametrize("error", [ValueError("bad point"), RuntimeError("boom"), Exception()])
def test_verify_is_false_when_the_native_verifier_raises(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    class Raising:
        @staticmethod
        def verify(*_: int) -> bool:
            raise error

    monkeypatch.setattr(keys, "_native", Raising)
    assert verify(PUB, HASH, R, S) is False


def test_verify_is_false_when_the_fallback_verifier_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def raising(*_: Any, **__: Any) -> bool:
        raise ValueError("invalid signature encoding")

    monkeypatch.setattr(keys, "_native", None)
    monkeypatch.setattr(sn_utils, "verify_message_signature", raising)
    assert verify(PUB, HASH, R, S) is False


def test_verify_passes_the_verifiers_answer_through(monkeypatch: pytest.MonkeyPatch) -> None:
    assert verify(PUB, HASH, R, S) is True
    assert verify(PUB, HASH + 1, R, S) is False
    monkeypatch.setattr(keys, "_native", None)  # the starknet-py fallback
    assert verify(PUB, HASH, R, S) is True
    assert verify(PUB, HASH + 1, R, S) is False


def test_a_base_exception_that_is_not_a_panic_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exiting:
        @staticmethod
        def verify(*_: int) -> bool:
            raise SystemExit(3)

    monkeypatch.setattr(keys, "_native", Exiting)
    with pytest.raises(SystemExit):
        verify(PUB, HASH, R, S)


@pytest.mark.parametrize("bad", [True, 1.0, "1", None])
@pytest.mark.parametrize("position", range(4))
def test_verify_refuses_non_int_arguments(recorder: Recorder, bad: object, position: int) -> None:
    args: list[object] = [PUB, HASH, R, S]
    args[position] = bad
    assert verify(*args) is False  # type: ignore[arg-type]
    assert recorder.asked == []


# -- signing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", [1, BOUND - 1])
def test_sign_accepts_the_extreme_hashes(msg: int) -> None:
    r, s = sign(msg, PRIVATE)
    assert verify(PUB, msg, r, s)


@pytest.mark.parametrize("msg", [0, BOUND, True, 1.0])
def test_sign_refuses_hashes_on_or_past_the_bounds(msg: object) -> None:
    with pytest.raises(ChipiSessionError) as info:
        sign(msg, PRIVATE)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("private", [1, N - 1])
def test_extreme_private_keys_are_keys(private: int) -> None:
    assert keys.check_private_key(private) == private
    assert SecretKey(private).public_key == public_key_of(private)


@pytest.mark.parametrize("valid_until", [0, U64_MAX])
def test_session_signature_accepts_every_u64(valid_until: int) -> None:
    pub, r, s, until = session_signature(KEY, HASH, valid_until)
    assert (pub, until) == (PUB, valid_until)
    assert verify(pub, HASH, r, s)


@pytest.mark.parametrize("valid_until", [-1, U64_MAX + 1])
def test_session_signature_refuses_non_u64(valid_until: int) -> None:
    with pytest.raises(ChipiSessionError) as info:
        session_signature(KEY, HASH, valid_until)
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_secret_key_state_shows_in_repr_and_zeroing_blocks_use() -> None:
    key = SecretKey(PRIVATE, public_key=PUB)
    assert key.public_key == PUB and key.reveal() == PRIVATE
    assert "private=<set>" in repr(key) and str(key) == repr(key)
    key.zero()
    assert key.is_zeroed and "private=<zeroed>" in repr(key)
    for use in (key.reveal, lambda: key.sign(HASH)):
        with pytest.raises(ChipiSessionError) as info:
            use()
        assert info.value.code is ErrorCode.NO_SESSION


def test_secret_key_uses_a_given_public_key_without_deriving_it() -> None:
    assert SecretKey(PRIVATE, public_key=12345).public_key == 12345


def test_a_key_with_a_zero_high_byte_is_not_zeroed() -> None:
    assert not SecretKey(1).is_zeroed
    assert SecretKey(1).reveal() == 1
