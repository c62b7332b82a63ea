"""chipi_session.vault: our authenticated format, Chipi's CryptoJS format, and the spec vectors."""

from __future__ import annotations

import base64
import json
import pickle
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id
import nacl.secret
import pytest
from Crypto.Cipher import AES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import CURVE_ORDER
from chipi_session.keys import SecretKey, public_key_of
from chipi_session.vault import (
    HighEntropyKey,
    KdfCost,
    Vault,
    _b64encode,
    _encrypt_legacy_with_salt,
    _evp_bytes_to_key,
    _kdf,
    _subkeys,
)

from .helpers import secret_text_forms

VECTORS = Path(__file__).parent / "vectors"
FIXED = json.loads((VECTORS / "cryptojs_aes_fixed_salt.json").read_text())
RANDOM = json.loads((VECTORS / "cryptojs_aes_random_salt.json").read_text())

SESSION_KEY = 0x053FA3505CD924D5D98C5FFF7D3F76317643297A655F077FE0572C2B941DACAF
SESSION_PUB = 0x70CBB28E742F2629047CDCAAB4DA5CEB2DFC7F0EAE4D014FD04459F1B0BC794
#: Produced by the TS SDK's createSessionKey with password "1234" (the CryptoJS format:
#: tests/vectors/README.md).
TS_SDK_BLOB = (
    "U2FsdGVkX18IvX26/0/obkKiP3JzLtEjga7Y5alQawE4+vmpVE2wmlDuz/4DYMwqKNI3dgO820hmpK6+wXp26PvZ"
    "Dd95GhHhZPJdLt4QTwbFc1j1jK2M3xpLRSCrNx7L"
)

FAST = KdfCost.FAST_FOR_TESTS
VAULT = Vault(FAST)
N = CURVE_ORDER

private_keys = st.integers(min_value=1, max_value=N - 1)
pins = st.text(min_size=1, max_size=24)
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _code(exc_info: pytest.ExceptionInfo[ChipiSessionError]) -> ErrorCode:
    return exc_info.value.code


def _raises(code: ErrorCode, fn: object, *args: object, **kwargs: object) -> ChipiSessionError:
    assert callable(fn)
    with pytest.raises(ChipiSessionError) as info:
        fn(*args, **kwargs)
    assert info.value.code is code, info.value
    return info.value


def _replace_field(blob: str, index: int, value: str) -> str:
    fields = blob.split("$")
    fields[index] = value
    return "$".join(fields)


def _flip_payload_byte(blob: str, offset: int) -> str:
    fields = blob.split("$")
    raw = bytearray(base64.b64decode(fields[5] + "=" * (-len(fields[5]) % 4)))
    raw[offset] ^= 0x01
    fields[5] = _b64encode(bytes(raw))
    return "$".join(fields)


def _ours_with_plaintext(plain: bytes, pin: str) -> str:
    """A well-formed, correctly authenticated blob around an arbitrary 32-byte plaintext."""
    salt = secrets.token_bytes(16)
    header = "$".join(("chipi-vault", "1", "argon2id", "o=1,m=8192", _b64encode(salt)))
    box_key, check = _subkeys(_kdf("argon2id", pin.encode(), salt, FAST), header)
    sealed = nacl.secret.SecretBox(box_key).encrypt(plain, secrets.token_bytes(24))
    return f"{header}${_b64encode(check + bytes(sealed))}"


def _legacy_with_plaintext(plain: bytes, passphrase: str) -> str:
    salt = secrets.token_bytes(8)
    key, iv = _evp_bytes_to_key(passphrase.encode(), salt)
    pad = 16 - len(plain) % 16
    ct = AES.new(key, AES.MODE_CBC, iv=iv).encrypt(plain + bytes([pad]) * pad)
    return base64.b64encode(b"Salted__" + salt + ct).decode()


# -- KdfCost ---------------------------------------------------------------------------------


def test_kdf_cost_constants() -> None:
    assert KdfCost.DEFAULT == KdfCost(ops=3, mem=64 * 1024 * 1024)
    assert KdfCost.FAST_FOR_TESTS == KdfCost(ops=1, mem=8192)
    assert Vault().cost == KdfCost.DEFAULT


@pytest.mark.parametrize(
    ("ops", "mem"), [(0, 8192), (1, 8191), (1, 2**40), (10**6, 8192), (True, 8192), ("3", 8192)]
)
def test_kdf_cost_rejects_out_of_range(ops: object, mem: object) -> None:
    _raises(ErrorCode.INVALID_INPUT, KdfCost, ops=ops, mem=mem)


@pytest.mark.slow
def test_default_cost_round_trips() -> None:
    vault = Vault()
    assert vault.cost == KdfCost(ops=3, mem=67108864)
    blob = vault.encrypt(SESSION_KEY, "1234")
    assert blob.startswith("chipi-vault$1$argon2id$o=3,m=67108864$")
    started = time.perf_counter()
    key = vault.decrypt(blob, "1234", expected_public_key=SESSION_PUB)
    elapsed = time.perf_counter() - started
    assert key.reveal() == SESSION_KEY
    assert elapsed > 0.01  # really stretched (~100 ms here)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, vault.decrypt, blob, "1235")


# -- interop vectors (tests/vectors/) -----------------------------------------------------------


def test_fixed_salt_vector_key_iv_and_ciphertext() -> None:
    key, iv = _evp_bytes_to_key(FIXED["password"].encode(), bytes.fromhex(FIXED["salt_hex"]))
    assert key.hex() == FIXED["key_hex"]
    assert iv.hex() == FIXED["iv_hex"]
    private_key = int(FIXED["plaintext"], 16)
    blob = _encrypt_legacy_with_salt(
        private_key, FIXED["password"], bytes.fromhex(FIXED["salt_hex"])
    )
    assert blob == FIXED["b64"]
    assert len(blob) == FIXED["b64_len"]
    assert len(base64.b64decode(blob)) == 16 + FIXED["padded_len"]
    assert VAULT.decrypt(blob, FIXED["password"]).reveal() == private_key


def test_random_salt_vector_from_cryptoes() -> None:
    key = VAULT.decrypt(RANDOM["b64"], RANDOM["password"])
    assert key.reveal() == int(RANDOM["plaintext"], 16)
    assert key.public_key == SESSION_PUB


def test_ts_sdk_blob_decrypts_to_its_public_key() -> None:
    key = VAULT.decrypt(TS_SDK_BLOB, "1234", expected_public_key=SESSION_PUB)
    assert key.reveal() == SESSION_KEY
    assert key.public_key == SESSION_PUB
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, TS_SDK_BLOB, "4321")


def test_legacy_blob_is_what_cryptojs_would_write() -> None:
    blob = VAULT.encrypt_legacy_cryptojs(SESSION_KEY, "1234")
    assert blob.startswith("U2FsdGVkX1")
    raw = base64.b64decode(blob)
    key, iv = _evp_bytes_to_key(b"1234", raw[8:16])
    plain = AES.new(key, AES.MODE_CBC, iv=iv).decrypt(raw[16:])
    assert plain == FIXED["plaintext"].encode() + bytes([14]) * 14  # "0x" + 64 lowercase hex
    assert blob != VAULT.encrypt_legacy_cryptojs(SESSION_KEY, "1234")  # random salt


def test_legacy_accepts_unpadded_owner_keys() -> None:
    for text in ("0x1", "0xabc", "0xABC", "0x" + "1ef15c18" * 7 + "1ef15c1"):
        blob = _legacy_with_plaintext(text.encode(), "pw")
        assert VAULT.decrypt(blob, "pw").reveal() == int(text, 16)


@pytest.mark.parametrize(
    "plain",
    [b"0x0", b"0x" + b"0" * 64, f"0x{N:x}".encode(), b"0x" + b"f" * 64, b"0x", b"abc", b"1234"],
)
def test_legacy_plaintext_not_a_key_is_decryption_failure(plain: bytes) -> None:
    blob = _legacy_with_plaintext(plain, "pw")
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, "pw")


def test_legacy_padding_is_checked_byte_by_byte() -> None:
    """ "0xabc" + 10 junk bytes + 0x0b: the pad length alone would leave a valid-looking key."""
    salt = bytes(range(8))
    key, iv = _evp_bytes_to_key(b"pw", salt)
    for block in (b"0xabc" + b"Z" * 10 + b"\x0b", b"0xabc" + b"\x0b" * 11):
        ct = AES.new(key, AES.MODE_CBC, iv=iv).encrypt(block)
        blob = base64.b64encode(b"Salted__" + salt + ct).decode()
        if block.endswith(b"\x0b" * 11):
            assert VAULT.decrypt(blob, "pw").reveal() == 0xABC
        else:
            _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, "pw")


def test_subkeys_depend_on_every_header_byte() -> None:
    """Defence in depth: even an edit that left the KDF output unchanged would change the keys."""
    kdf_output = bytes(range(32))
    header = "chipi-vault$1$blake2b$-$AAAAAAAAAAAAAAAAAAAAAA"
    base = _subkeys(kdf_output, header)
    for i in range(len(header)):
        edited = header[:i] + ("B" if header[i] != "B" else "C") + header[i + 1 :]
        box_key, check = _subkeys(kdf_output, edited)
        assert box_key != base[0] and check != base[1]
    assert base[0] != _subkeys(bytes(range(1, 33)), header)[0]


@pytest.mark.parametrize("value", [0, N, 2**256 - 1])
def test_our_plaintext_not_a_key_is_decryption_failure(value: int) -> None:
    blob = _ours_with_plaintext(value.to_bytes(32, "big"), "pin")
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, "pin")


# -- our format ----------------------------------------------------------------------------


def test_round_trip_and_shape() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    fields = blob.split("$")
    assert fields[:4] == ["chipi-vault", "1", "argon2id", "o=1,m=8192"]
    assert len(base64.b64decode(fields[4] + "==")) == 16
    assert "=" not in fields[4] + fields[5]  # unpadded base64
    key = VAULT.decrypt(blob, "1234")
    assert isinstance(key, SecretKey)
    assert key.reveal() == SESSION_KEY
    assert key.public_key == SESSION_PUB
    assert blob != VAULT.encrypt(SESSION_KEY, "1234")  # fresh salt and nonce


def _spy_argon2id(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = nacl.pwhash.argon2id.kdf

    def spy(
        size: int, password: bytes, salt: bytes, *, opslimit: int, memlimit: int, **kw: Any
    ) -> bytes:
        calls.append((opslimit, memlimit))
        out: bytes = real(size, password, salt, opslimit=opslimit, memlimit=memlimit, **kw)
        return out

    monkeypatch.setattr(nacl.pwhash.argon2id, "kdf", spy)
    return calls


def test_decryption_uses_the_cost_in_the_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    calls = _spy_argon2id(monkeypatch)
    assert Vault().decrypt(blob, "1234").reveal() == SESSION_KEY  # default vault, fast blob
    assert calls == [(1, 8192)]
    other = Vault(KdfCost(ops=2, mem=16384)).encrypt(SESSION_KEY, "1234")
    assert "$o=2,m=16384$" in other
    assert VAULT.decrypt(other, "1234").reveal() == SESSION_KEY


def test_surrounding_whitespace_is_ignored() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    assert VAULT.decrypt(f"  {blob}\n", "1234").reveal() == SESSION_KEY
    assert VAULT.decrypt(TS_SDK_BLOB + "\n", "1234").reveal() == SESSION_KEY


def test_wrong_pin() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    err = _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, "1235")
    assert not err.retryable
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, "12345")


@pytest.mark.parametrize("pin", ["", None, 1234, b"1234"])
def test_bad_pin_type_or_empty_is_invalid_input(pin: object) -> None:
    _raises(ErrorCode.INVALID_INPUT, VAULT.encrypt, SESSION_KEY, pin)
    _raises(ErrorCode.INVALID_INPUT, VAULT.decrypt, VAULT.encrypt(SESSION_KEY, "1"), pin)
    _raises(ErrorCode.INVALID_INPUT, VAULT.encrypt_legacy_cryptojs, SESSION_KEY, pin)


def test_pin_that_is_not_encodable_is_invalid_input() -> None:
    _raises(ErrorCode.INVALID_INPUT, VAULT.encrypt, SESSION_KEY, "12\ud80034")


@pytest.mark.parametrize("private_key", [0, -1, N, N + 1, True, "0x1", 1.0])
def test_encrypt_rejects_bad_private_keys(private_key: object) -> None:
    _raises(ErrorCode.INVALID_INPUT, VAULT.encrypt, private_key, "1234")
    _raises(ErrorCode.INVALID_INPUT, VAULT.encrypt_legacy_cryptojs, private_key, "1234")


def test_tampered_ciphertext_is_invalid_stored_data() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    for offset in (16, 16 + 23, 16 + 24, 87):  # nonce start/end, MAC, last ciphertext byte
        err = _raises(
            ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, _flip_payload_byte(blob, offset), "1234"
        )
        assert "authentication" in err.message


def test_tampered_key_check_looks_like_a_wrong_pin() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, _flip_payload_byte(blob, 0), "1234")


def test_header_is_authenticated() -> None:
    """Any edit that still parses changes the derived key, so it reads as a wrong key."""
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    salt = base64.b64decode(blob.split("$")[4] + "==")
    other_salt = _b64encode(bytes([salt[0] ^ 1]) + salt[1:])
    for edited in (
        _replace_field(blob, 3, "o=2,m=8192"),
        _replace_field(blob, 3, "o=1,m=9216"),
        _replace_field(blob, 4, other_salt),
    ):
        _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, edited, "1234")


@pytest.mark.parametrize(
    ("index", "value", "fragment"),
    [
        (1, "9", "unknown vault version 9"),
        (1, "2", "unknown vault version 2"),
        (1, "x" * 40, "unknown vault version (not a number)"),
        (2, "scrypt", "unknown KDF 'scrypt'"),
        (2, "blake2b", "malformed blake2b parameters"),
        (3, "o=01,m=8192", "malformed Argon2id parameters"),
        (3, "m=8192,o=1", "malformed Argon2id parameters"),
        (3, "o=1,m=99999999999", "cost out of the accepted range"),
        (3, "o=999,m=8192", "cost out of the accepted range"),
        (4, "AAAA", "salt is 3 bytes"),
        (4, "!!!!", "salt is not base64"),
        (4, "AAB", "salt is not canonical base64"),
        (5, "QUJD", "payload is 3 bytes"),
        (5, "", "payload is 0 bytes"),
        (5, "not base64!", "payload is not base64"),
    ],
)
def test_malformed_header_fields(index: int, value: str, fragment: str) -> None:
    blob = _replace_field(VAULT.encrypt(SESSION_KEY, "1234"), index, value)
    err = _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob, "1234")
    assert fragment in err.message


def test_truncated_blobs() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    for cut in (1, 2, 4, 10, 60, len(blob) - 20, len(blob) - 13):
        _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob[:-cut], "1234")
    _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob + "$extra", "1234")
    _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob + "AAAA", "1234")


def test_truncated_legacy_blobs() -> None:
    for cut in (1, 4, 8, 100, 110):
        _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, TS_SDK_BLOB[:-cut], "1234")
    raw = base64.b64decode(TS_SDK_BLOB)
    header_only = base64.b64encode(raw[:16]).decode()
    err = _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, header_only, "1234")
    assert "truncated" in err.message
    # Dropping a whole AES block keeps the structure valid: only the padding/plaintext check sees it.
    one_block_less = base64.b64encode(raw[:-16]).decode()
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, one_block_less, "1234")


@pytest.mark.parametrize(
    "blob",
    [
        "",
        "   ",
        "hello",
        "0x053fa3505cd924d5d98c5fff7d3f76317643297a655f077fe0572c2b941dacaf",
        "chipi-vault",
        "chipi-vault$",
        "chipi-vault$$",
        "CHIPI-VAULT$1$argon2id$o=1,m=8192$AAAA$AAAA",
        "U2FsdGVkX1!!!",
        "U2FsdGVkX1+v/VgbiIShmaqioK80z5Ag",  # Salted__ + salt + half a block
        '{"publicKey": "0x1"}',
    ],
)
def test_garbage_is_invalid_stored_data(blob: str) -> None:
    err = _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob, "1234")
    if len(blob) > 20:
        assert blob not in str(err) and blob not in repr(err)


@pytest.mark.parametrize("blob", [None, 123, b"chipi-vault$1", ["x"]])
def test_non_string_blob_is_invalid_stored_data(blob: object) -> None:
    _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, blob, "1234")


def test_legacy_tampering_is_caught_by_the_public_key_check() -> None:
    """No MAC: a flipped bit can turn one hex digit into another; the public key check sees it."""
    raw = base64.b64decode(TS_SDK_BLOB)
    for index in range(8, len(raw)):
        for bit in (0x01, 0x02, 0x08):
            edited = bytearray(raw)
            edited[index] ^= bit
            blob = base64.b64encode(bytes(edited)).decode()
            with pytest.raises(ChipiSessionError) as info:
                VAULT.decrypt(blob, "1234", expected_public_key=SESSION_PUB)
            assert info.value.code is ErrorCode.SESSION_DECRYPTION_FAILED


# -- public key check ------------------------------------------------------------------------


def test_expected_public_key_mismatch() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    for expected in (SESSION_PUB + 1, public_key_of(SESSION_KEY + 1), 1):
        err = _raises(
            ErrorCode.SESSION_DECRYPTION_FAILED,
            VAULT.decrypt,
            blob,
            "1234",
            expected_public_key=expected,
        )
        assert "public key" in err.message
    _raises(
        ErrorCode.SESSION_DECRYPTION_FAILED,
        VAULT.decrypt,
        TS_SDK_BLOB,
        "1234",
        expected_public_key=SESSION_PUB - 1,
    )


def test_public_keys_compare_as_numbers() -> None:
    """The TS SDK compares hex strings; a zero-padded stored key must still match."""
    unpadded = hex(SESSION_PUB)
    padded = "0x" + format(SESSION_PUB, "064x")
    upper = "0x" + format(SESSION_PUB, "064X")
    assert unpadded != padded and len(unpadded) == 65
    for blob in (VAULT.encrypt(SESSION_KEY, "1234"), TS_SDK_BLOB):
        for expected in (SESSION_PUB, unpadded, padded, upper, str(SESSION_PUB)):
            key = VAULT.decrypt(blob, "1234", expected_public_key=expected)
            assert key.public_key == SESSION_PUB


# -- HighEntropyKey --------------------------------------------------------------------------


def test_high_entropy_key_skips_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    hek = HighEntropyKey.generate()
    vault = Vault()  # default Argon2id cost: the BLAKE2b path must not use it
    calls = _spy_argon2id(monkeypatch)
    blobs = [vault.encrypt(SESSION_KEY, hek) for _ in range(50)]
    keys = [vault.decrypt(b, hek, expected_public_key=SESSION_PUB) for b in blobs]
    assert calls == []
    assert all(k.reveal() == SESSION_KEY for k in keys)
    assert blobs[0].startswith("chipi-vault$1$blake2b$-$")
    assert len(set(blobs)) == len(blobs)


def test_high_entropy_key_constructors() -> None:
    raw = bytes(range(1, 33))
    assert HighEntropyKey(raw) == HighEntropyKey.from_bytes(raw)
    assert HighEntropyKey.from_hex(raw.hex()) == HighEntropyKey(raw)
    assert HighEntropyKey.from_hex("0x" + raw.hex().upper()) == HighEntropyKey(raw)
    assert HighEntropyKey(bytearray(raw)) == HighEntropyKey(raw)
    assert HighEntropyKey(raw) != HighEntropyKey(raw[::-1])
    assert len(HighEntropyKey(raw[:16])) == 16
    assert len(HighEntropyKey.generate(64)) == 64
    assert HighEntropyKey.generate() != HighEntropyKey.generate()
    assert hash(HighEntropyKey(raw)) == hash(HighEntropyKey.from_hex(raw.hex()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: HighEntropyKey(bytes(range(1, 16))),  # 15 bytes: under 128 bits
        lambda: HighEntropyKey(bytes(range(65))),
        lambda: HighEntropyKey(bytes(32)),  # all zeros
        lambda: HighEntropyKey(b"\x07" * 32),
        lambda: HighEntropyKey("0102030405060708090a0b0c0d0e0f10"),  # type: ignore[arg-type]
        lambda: HighEntropyKey.from_hex("0102030405060708090a0b0c0d0e0f1"),  # odd length
        lambda: HighEntropyKey.from_hex("zz02030405060708090a0b0c0d0e0f10"),
        lambda: HighEntropyKey.from_hex(b"00"),  # type: ignore[arg-type]
        lambda: HighEntropyKey.generate(8),
    ],
)
def test_high_entropy_key_rejects_weak_or_malformed(make: object) -> None:
    assert callable(make)
    err = _raises(ErrorCode.INVALID_INPUT, make)
    assert "0102030405" not in str(err)


def test_high_entropy_key_and_pin_are_not_interchangeable() -> None:
    hek = HighEntropyKey.generate()
    pin_blob = VAULT.encrypt(SESSION_KEY, "1234")
    hek_blob = VAULT.encrypt(SESSION_KEY, hek)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, pin_blob, hek)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, hek_blob, "1234")
    # not even the key's own hex as a passphrase
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, hek_blob, hek._key.hex())
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, TS_SDK_BLOB, hek)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, hek_blob, HighEntropyKey.generate())


def test_high_entropy_key_tampering() -> None:
    hek = HighEntropyKey.generate()
    blob = VAULT.encrypt(SESSION_KEY, hek)
    _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, _flip_payload_byte(blob, 50), hek)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, _flip_payload_byte(blob, 3), hek)
    _raises(ErrorCode.INVALID_STORED_DATA, VAULT.decrypt, _replace_field(blob, 3, "x"), hek)


def test_high_entropy_key_is_not_picklable_or_shown() -> None:
    raw = bytes(range(100, 132))
    hek = HighEntropyKey(raw)
    assert repr(hek) == str(hek) == "HighEntropyKey(<32 bytes>)"
    with pytest.raises(TypeError):
        pickle.dumps(hek)


def test_decrypt_rejects_wrong_key_types() -> None:
    blob = VAULT.encrypt(SESSION_KEY, "1234")
    for key in (None, 1234, b"1234", bytes(32)):
        _raises(ErrorCode.INVALID_INPUT, VAULT.decrypt, blob, key)


# -- concurrency -----------------------------------------------------------------------------


def test_decrypt_is_thread_safe() -> None:
    hek = HighEntropyKey.generate()
    items = [(k, f"pin-{k}") for k in range(1, 41)]
    blobs: list[tuple[int, str, str | HighEntropyKey]]
    blobs = [(k, VAULT.encrypt(k, pin), pin) for k, pin in items]
    blobs += [(k, VAULT.encrypt(k, hek), hek) for k, _ in items]
    blobs += [(k, VAULT.encrypt_legacy_cryptojs(k, pin), pin) for k, pin in items]

    def work(item: tuple[int, str, str | HighEntropyKey]) -> bool:
        k, blob, key = item
        return VAULT.decrypt(blob, key, expected_public_key=public_key_of(k)).reveal() == k

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, blobs * 3))


# -- properties ------------------------------------------------------------------------------


@fast
@given(private_key=private_keys, pin=pins)
def test_property_round_trip(private_key: int, pin: str) -> None:
    blob = VAULT.encrypt(private_key, pin)
    key = VAULT.decrypt(blob, pin, expected_public_key=public_key_of(private_key))
    assert key.reveal() == private_key


@fast
@given(private_key=private_keys, pin=pins, other=pins)
def test_property_other_pin_never_decrypts(private_key: int, pin: str, other: str) -> None:
    if other == pin:
        return
    blob = VAULT.encrypt(private_key, pin)
    _raises(ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, other)


@fast
@given(private_key=private_keys, pin=pins, other=pins)
def test_property_legacy_round_trip(private_key: int, pin: str, other: str) -> None:
    blob = VAULT.encrypt_legacy_cryptojs(private_key, pin)
    assert blob.startswith("U2FsdGVkX1")
    pub = public_key_of(private_key)
    assert VAULT.decrypt(blob, pin, expected_public_key=pub).reveal() == private_key
    if other != pin:
        _raises(
            ErrorCode.SESSION_DECRYPTION_FAILED, VAULT.decrypt, blob, other, expected_public_key=pub
        )


@fast
@given(private_key=private_keys)
def test_property_high_entropy_round_trip(private_key: int) -> None:
    hek = HighEntropyKey.generate()
    assert VAULT.decrypt(VAULT.encrypt(private_key, hek), hek).reveal() == private_key


@settings(max_examples=25, deadline=None)
@given(
    private_key=st.integers(min_value=2**128, max_value=N - 1),
    pin=st.text(min_size=8, max_size=24).map(lambda s: "§" + s),  # "§" never occurs otherwise
    raw=st.binary(min_size=16, max_size=64).filter(lambda b: len(set(b)) > 1),
)
def test_property_no_key_material_in_reprs_or_errors(
    private_key: int, pin: str, raw: bytes
) -> None:
    hek = HighEntropyKey(raw)
    secret_key = SecretKey(private_key)
    texts = [repr(VAULT), str(VAULT), repr(hek), str(hek), repr(secret_key), str(secret_key)]
    ours = VAULT.encrypt(private_key, pin)
    legacy = VAULT.encrypt_legacy_cryptojs(private_key, pin)
    hek_blob = VAULT.encrypt(private_key, hek)
    failures: list[tuple[str, str | HighEntropyKey, int | None]] = [
        (ours, pin + "x", None),
        (ours, pin, 1),
        (ours, hek, None),
        (legacy, pin + "x", public_key_of(private_key)),
        (legacy, pin, 1),
        (hek_blob, pin, None),
        (hek_blob, HighEntropyKey.generate(), None),
        (_flip_payload_byte(ours, 40), pin, None),
        (ours[:-5], pin, None),
    ]
    for blob, key, expected in failures:
        with pytest.raises(ChipiSessionError) as info:
            VAULT.decrypt(blob, key, expected_public_key=expected)
        texts += [str(info.value), repr(info.value), info.value.message]
    for bad_pin in ("", pin + "\ud800"):
        with pytest.raises(ChipiSessionError) as info:
            VAULT.encrypt(private_key, bad_pin)
        texts += [str(info.value), repr(info.value)]
    secret_key.zero()
    texts.append(repr(secret_key))
    forbidden = [*secret_text_forms(private_key), pin, raw.hex(), raw.hex().upper()]
    for text in texts:
        for secret in forbidden:
            assert secret not in text
