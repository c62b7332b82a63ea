"""chipi_session.keys and the hashes it signs, against the spec vectors.

Vectors: tests/vectors/ (see its README) and session-hash vectors computed independently of
this package (the hash: docs/contract.md, "The session hash").
"""

from __future__ import annotations

import copy
import json
import pickle
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starknet_py.hash.utils import message_signature, private_to_stark_key, verify_message_signature
from starknet_py.utils.typed_data import TypedData

import chipi_session.keys as keys
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import CURVE_ORDER, FIELD_PRIME
from chipi_session.hashing import (
    ANY_CALLER,
    SN_MAIN,
    SN_SEPOLIA,
    outside_execution_typed_data,
    session_validate_hash,
    typed_data_message_hash,
)
from chipi_session.keys import (
    SecretKey,
    generate_private_key,
    public_key_of,
    session_signature,
    sign,
    verify,
)
from chipi_session.types import Call

from .helpers import secret_text_forms

VECTORS = Path(__file__).parent / "vectors"
SIG = {
    k: (int(v, 16) if isinstance(v, str) and v.startswith("0x") else v)
    for k, v in json.loads((VECTORS / "session_signature.json").read_text()).items()
}
TYPED_DATA: dict[str, Any] = json.loads((VECTORS / "outside_execution_typed_data.json").read_text())

N = CURVE_ORDER
ECDSA_BOUND = 2**251
USDC = 0x033068F6539F8E6E6B131E6B2B814E6C34A5224BC66947C47DAB9DFEE93B35FB
TRANSFER = 0x83AFD3F4CAEDC6EEBF44246FE54E38C95E3179A5EC9EA81740ECA5B482D12E

# inputs of the independently computed session-hash vectors
ACCOUNT_15 = 0x1234ABCD
ETH = 0x49D36570D4E46F48E99674BD3FCC84644DDD6B96F7C741B1562B82F9E004DC7
CALL_15 = Call(to=ETH, selector="transfer", calldata=[0xBEEF, 100, 0])


def _native() -> object:
    """The native signer module, or None (keys keeps it private)."""
    return vars(keys)["_native"]


@pytest.fixture(params=["native", "starknet-py"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with the native signer and again with the starknet-py fallback."""
    if request.param == "native":
        if _native() is None:
            pytest.skip("fast-stark-crypto is not installed on this platform")
    else:
        monkeypatch.setattr(keys, "_native", None)
    yield request.param


# -- session signature vector (tests/vectors/session_signature.json) --------------------------


def test_vector_message_hash_from_typed_data() -> None:
    assert typed_data_message_hash(TYPED_DATA, SIG["account"]) == SIG["msgHash"]


def test_vector_message_hash_variants() -> None:
    """Selector by name and numeric (non-hex) values hash the same (msgHash_* in the vector)."""
    by_name = copy.deepcopy(TYPED_DATA)
    by_name["message"]["Calls"][0]["Selector"] = "transfer"
    assert typed_data_message_hash(by_name, SIG["account"]) == SIG["msgHash_selectorAsName"]
    numeric = copy.deepcopy(TYPED_DATA)
    message = numeric["message"]
    message.update({"Nonce": 1, "Execute After": 1, "Execute Before": 2_000_000_000})
    message["Calls"][0]["Calldata"] = [0x1234, 1000, 0]
    assert typed_data_message_hash(numeric, SIG["account"]) == SIG["msgHash_numericVariants"]


def test_our_typed_data_builder_reproduces_the_vector() -> None:
    built = outside_execution_typed_data(
        caller=ANY_CALLER,
        nonce=1,
        execute_after=1,
        execute_before=0x77359400,
        calls=[Call(to=USDC, selector="transfer", calldata=[0x1234, 0x3E8, 0])],
        chain_id=SN_MAIN,
    )
    assert built == TYPED_DATA
    assert typed_data_message_hash(built, SIG["account"]) == SIG["msgHash"]


def test_vector_signature(backend: str) -> None:
    assert public_key_of(SIG["sessionPrivateKey"]) == SIG["sessionPublicKey"]
    assert sign(SIG["msgHash"], SIG["sessionPrivateKey"]) == (SIG["r"], SIG["s"])
    assert verify(SIG["sessionPublicKey"], SIG["msgHash"], SIG["r"], SIG["s"])
    assert not verify(SIG["sessionPublicKey"], SIG["msgHash"] + 1, SIG["r"], SIG["s"])


def test_vector_session_signature_wire_form() -> None:
    key = SecretKey(SIG["sessionPrivateKey"])
    assert key.public_key == SIG["sessionPublicKey"]
    assert session_signature(key, SIG["msgHash"], SIG["validUntil"]) == (
        SIG["sessionPublicKey"],
        SIG["r"],
        SIG["s"],
        1_800_000_000,
    )


def test_vector_matches_starknet_py_seed_none() -> None:
    assert message_signature(SIG["msgHash"], SIG["sessionPrivateKey"], seed=None) == (
        SIG["r"],
        SIG["s"],
    )
    assert private_to_stark_key(SIG["sessionPrivateKey"]) == SIG["sessionPublicKey"]


@pytest.mark.parametrize("valid_until", [-1, 2**64])
def test_session_signature_rejects_bad_valid_until(valid_until: int) -> None:
    with pytest.raises(ChipiSessionError) as info:
        session_signature(SecretKey(SIG["sessionPrivateKey"]), SIG["msgHash"], valid_until)
    assert info.value.code is ErrorCode.INVALID_INPUT


# -- session-hash vectors (docs/contract.md, "The session hash") -----------------------------


def test_session_validate_hash_vectors() -> None:
    assert (
        session_validate_hash(
            account=ACCOUNT_15,
            chain_id=SN_MAIN,
            nonce=5,
            valid_until=1_700_000_000,
            calls=[CALL_15],
        )
        == 0x65AC3C853882F861F43D68E2E75C5D19EB9CA0B18CCAE02BCB60B860EB34B0B
    )
    assert (
        session_validate_hash(
            account=ACCOUNT_15, chain_id=SN_MAIN, nonce=0, valid_until=1_700_000_000, calls=[]
        )
        == 0x19356974252D8757D2F5138EFC16B14D370F255A16159B0DB7A6D9A2010C7E9
    )


@pytest.mark.parametrize(
    ("time_type", "type_hash", "struct_hash", "message_hash"),
    [
        (
            "u128",
            0x312B56C05A7965066DDBDA31C016D8D05AFC305071C0CA3CDC2192C3C2F1F0F,
            0x7BE538656557CD6BD55B0282C5C247B02239903B2AB39AE60C2B435BDBB8917,
            0x253D31E91DA000A67672297395E9DDE63472BFC9CAC5E1BB71992F0923DD61E,
        ),
        (
            "felt",
            0x5A4B49E17039355CD95D1F0981D75901191D1319B1F4B05A9A791D218D7E0C,
            0x56A7F6D5428FDE3D5CDAB7481DD2A67B6DE613EBB34638B5806312241CBD730,
            0x26A746832C179CB1071AC23B0C749ECC8B1153FC39605ECA6E170544510BBE3,
        ),
    ],
)
def test_snip9_vectors(time_type: str, type_hash: int, struct_hash: int, message_hash: int) -> None:
    data = outside_execution_typed_data(
        caller=0,
        nonce=42,
        execute_after=999_999,
        execute_before=1_003_600,
        calls=[CALL_15],
        chain_id=SN_MAIN,
        time_type=time_type,
    )
    assert typed_data_message_hash(data, ACCOUNT_15) == message_hash
    typed = TypedData.from_dict(data)  # type: ignore[arg-type]
    assert typed.type_hash("OutsideExecution") == type_hash
    assert typed.struct_hash("OutsideExecution", data["message"]) == struct_hash
    assert (
        typed.type_hash("StarknetDomain")
        == 0x1FF2F602E42168014D405A94F75E8A93D640751D71D16311266E140D8B0A210
    )
    assert (
        typed.type_hash("Call") == 0x3635C7F2A7BA93844C0D064E18E487F35AB90F7C39D00F186A781FC3F0C2CA9
    )


@pytest.mark.parametrize(
    ("chain_id", "domain_hash"),
    [
        (SN_MAIN, 0x9951E1D5316915DC4436ACCE0A48AFD57BB4B6C501687C151E869AB878A2AC),
        (SN_SEPOLIA, 0x2534050C42890F9CAD3CF470A8B54A39C4D283A246DFCEB486A8755E44A91DF),
    ],
)
def test_snip12_domain_hashes(chain_id: int, domain_hash: int) -> None:
    data = outside_execution_typed_data(
        caller=0, nonce=0, execute_after=0, execute_before=1, calls=[], chain_id=chain_id
    )
    typed = TypedData.from_dict(data)  # type: ignore[arg-type]
    assert typed.struct_hash("StarknetDomain", data["domain"]) == domain_hash


# -- key generation --------------------------------------------------------------------------


def test_generated_keys_are_in_range() -> None:
    for _ in range(2000):
        assert 1 <= generate_private_key() < N
    assert len({generate_private_key() for _ in range(100)}) == 100


@pytest.mark.parametrize(("drawn", "expected"), [(0, 1), (N - 2, N - 1)])
def test_generated_key_extremes(monkeypatch: pytest.MonkeyPatch, drawn: int, expected: int) -> None:
    seen: list[int] = []

    def randbelow(bound: int) -> int:
        seen.append(bound)
        return drawn

    monkeypatch.setattr(secrets, "randbelow", randbelow)
    assert generate_private_key() == expected
    assert seen == [N - 1]


def test_secret_key_generate_with_injected_source() -> None:
    key = SecretKey.generate(lambda: SIG["sessionPrivateKey"])
    assert key.public_key == SIG["sessionPublicKey"]
    assert 1 <= SecretKey.generate().reveal() < N


@pytest.mark.parametrize("bad", [0, -1, N, N + 1, 2**256, True, "0x1", None, 1.5])
def test_private_key_range_is_enforced(bad: object) -> None:
    for fn in (
        lambda: SecretKey(bad),  # type: ignore[arg-type]
        lambda: public_key_of(bad),  # type: ignore[arg-type]
        lambda: sign(1, bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(ChipiSessionError) as info:
            fn()
        assert info.value.code is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize("bad", [-1, 0, ECDSA_BOUND, FIELD_PRIME - 1, FIELD_PRIME, True, "0x1"])
def test_sign_rejects_hashes_outside_the_ecdsa_range(backend: str, bad: object) -> None:
    with pytest.raises(ChipiSessionError) as info:
        sign(bad, SIG["sessionPrivateKey"])  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.INVALID_INPUT


# -- sign / verify properties ----------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(
    private_key=st.integers(min_value=1, max_value=N - 1),
    msg_hash=st.integers(min_value=1, max_value=ECDSA_BOUND - 1),
)
def test_property_signatures_match_starknet_py(private_key: int, msg_hash: int) -> None:
    r, s = sign(msg_hash, private_key)
    public_key = public_key_of(private_key)
    assert public_key == private_to_stark_key(private_key)
    assert (r, s) == message_signature(msg_hash, private_key, seed=None)
    assert verify_message_signature(msg_hash, [r, s], public_key)
    assert verify(public_key, msg_hash, r, s)


@settings(max_examples=40, deadline=None)
@given(
    private_key=st.integers(min_value=1, max_value=N - 1),
    msg_hash=st.integers(min_value=1, max_value=ECDSA_BOUND - 1),
)
def test_property_sign_then_verify(private_key: int, msg_hash: int) -> None:
    r, s = sign(msg_hash, private_key)
    public_key = public_key_of(private_key)
    assert verify(public_key, msg_hash, r, s)
    assert not verify(public_key, msg_hash ^ 1, r, s)
    other = public_key_of(private_key % (N - 1) + 1)
    assert other == public_key or not verify(other, msg_hash, r, s)


def _garbage() -> list[tuple[object, object, object, object]]:
    pub, h, r, s = SIG["sessionPublicKey"], SIG["msgHash"], SIG["r"], SIG["s"]
    w_too_big = next(
        x
        for x in (pow(w, -1, N) for w in range(ECDSA_BOUND + 1, ECDSA_BOUND + 100))
        if x < ECDSA_BOUND
    )
    off_curve = next(x for x in range(2, 100) if not keys._is_curve_x(x))
    return [
        (0, h, r, s),
        (pub, h, 0, s),
        (pub, h, r, 0),
        (pub, h, -r, s),
        (pub, h, r, -s),
        (pub, -1, r, s),
        (pub, h, r, N - 1),
        (pub, h, r, N),
        (pub, h, r, w_too_big),  # s^-1 >= 2**251: the native verifier would panic
        (pub, h, FIELD_PRIME - 1, s),
        (pub, ECDSA_BOUND + 5, r, s),  # native verifier would panic on this hash
        (pub, FIELD_PRIME, r, s),
        (off_curve, h, r, s),  # native verifier would panic on this public key
        (FIELD_PRIME + pub, h, r, s),
        (2**300, h, r, s),
        (pub, h, s, r),
        ("0x1", h, r, s),
        (None, h, r, s),
        (pub, str(h), r, s),
        (pub, h, float(r), s),
        (True, h, r, s),
        (pub, h, r, [s]),
    ]


@pytest.mark.parametrize("args", range(len(_garbage())))
def test_verify_returns_false_for_garbage(
    backend: str, args: int, capfd: pytest.CaptureFixture[str]
) -> None:
    assert verify(*_garbage()[args]) is False  # type: ignore[arg-type]
    assert "panicked" not in capfd.readouterr().err


def test_verify_swallows_native_panics(monkeypatch: pytest.MonkeyPatch) -> None:
    # the native module is replaced by fakes: this runs whether or not it is installed
    class PanicException(BaseException):
        pass

    class Native:
        @staticmethod
        def verify(*_: int) -> bool:
            raise PanicException("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(keys, "_native", Native)
    assert verify(SIG["sessionPublicKey"], SIG["msgHash"], SIG["r"], SIG["s"]) is False

    class Interrupting:
        @staticmethod
        def verify(*_: int) -> bool:
            raise KeyboardInterrupt

    monkeypatch.setattr(keys, "_native", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        verify(SIG["sessionPublicKey"], SIG["msgHash"], SIG["r"], SIG["s"])


# -- fallback path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "private_key", [1, 2, SIG["sessionPrivateKey"], N - 1, 0x0123456789ABCDEF << 180]
)
def test_fallback_gives_identical_results(
    monkeypatch: pytest.MonkeyPatch, private_key: int
) -> None:
    if _native() is None:
        pytest.skip("fast-stark-crypto is not installed: nothing to compare against")
    msg_hash = SIG["msgHash"] ^ private_key % ECDSA_BOUND
    native = (public_key_of(private_key), sign(msg_hash, private_key))
    monkeypatch.setattr(keys, "_native", None)
    fallback = (public_key_of(private_key), sign(msg_hash, private_key))
    assert native == fallback
    r, s = fallback[1]
    assert verify(fallback[0], msg_hash, r, s)
    assert not verify(fallback[0], msg_hash + 1, r, s)


def test_owner_key_vector(backend: str) -> None:
    """The owner key of the SDK probes that produced tests/vectors/ (a known public key)."""
    owner = 0x0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDE
    assert public_key_of(owner) == 0x986F3B591C31C5BAD9F50374ECE0FAF2D9C3BEC16274F128490BBCCD149C4A


# -- SecretKey -------------------------------------------------------------------------------


def test_secret_key_repr_never_shows_the_key() -> None:
    private_key = SIG["sessionPrivateKey"]
    key = SecretKey(private_key)
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        for form in (*secret_text_forms(private_key), "53fa3505", "53FA3505"):
            assert form not in text
        assert hex(SIG["sessionPublicKey"]) in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_secret_key_zero_makes_it_unusable() -> None:
    key = SecretKey(SIG["sessionPrivateKey"])
    assert not key.is_zeroed
    assert key.sign(SIG["msgHash"]) == (SIG["r"], SIG["s"])
    key.zero()
    assert key.is_zeroed
    assert "zeroed" in repr(key)
    for use in (
        key.reveal,
        lambda: key.sign(SIG["msgHash"]),
        lambda: session_signature(key, SIG["msgHash"], 1),
    ):
        with pytest.raises(ChipiSessionError) as info:
            use()
        assert info.value.code is ErrorCode.NO_SESSION
    assert key.public_key == SIG["sessionPublicKey"]  # public data stays readable
    key.zero()  # idempotent
