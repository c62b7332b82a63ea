"""Encrypted private keys at rest.

Two formats:

* **Ours** (what :meth:`Vault.encrypt` writes): versioned, self-describing and authenticated::

      chipi-vault$1$argon2id$o=3,m=67108864$<salt>$<payload>
      chipi-vault$1$blake2b$-$<salt>$<payload>

  ``salt`` is 16 bytes and ``payload`` is ``check(16) ‖ nonce(24) ‖ SecretBox ciphertext(48)``,
  both unpadded standard base64 (as in PHC strings). A PIN goes through Argon2id at the cost
  recorded in the blob (``o`` = opslimit, ``m`` = memlimit in bytes), so a blob stays readable
  when the default cost changes. A :class:`HighEntropyKey` needs no stretching: keyed BLAKE2b
  replaces Argon2id, so a bot can open thousands of sessions. From the KDF output two subkeys
  are derived over the whole header (so editing any header field looks like a wrong key): the
  XSalsa20-Poly1305 key and a 16-byte key check. The check tells "wrong PIN"
  (``SESSION_DECRYPTION_FAILED``) apart from "corrupted ciphertext" (``INVALID_STORED_DATA``);
  it gives a brute-forcer nothing the MAC did not already give.

* **Legacy** (Chipi's JS SDK, ``CryptoJS.AES.encrypt(key, passphrase)``): OpenSSL ``Salted__``
  AES-256-CBC with EVP_BytesToKey-MD5. Read transparently; written only on explicit request by
  :meth:`Vault.encrypt_legacy_cryptojs`, for blobs that the JS SDK must read.

Error messages never contain key material, the PIN, or text copied from the blob (except short
validated tokens such as a version number).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import ClassVar, Final, Literal, NoReturn

import attrs
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.pwhash.argon2id
import nacl.secret
from Crypto.Cipher import AES

from .errors import ChipiSessionError, ErrorCode
from .felts import CURVE_ORDER, parse_felt
from .keys import SecretKey, check_private_key, public_key_of
from .validate import check_instance, check_int

__all__ = ["KdfCost", "HighEntropyKey", "Vault"]

_MAGIC: Final = "chipi-vault"
_VERSION: Final = "1"
_KDF_ARGON2ID: Final = "argon2id"
_KDF_BLAKE2B: Final = "blake2b"
_NO_PARAMS: Final = "-"
_SALT_BYTES: Final = 16
_CHECK_BYTES: Final = 16
_NONCE_BYTES: Final = nacl.secret.SecretBox.NONCE_SIZE  # 24
_KEY_BYTES: Final = 32
_PAYLOAD_BYTES: Final = _CHECK_BYTES + _NONCE_BYTES + nacl.secret.SecretBox.MACBYTES + _KEY_BYTES

# BLAKE2b personalisation strings (exactly 16 bytes each): domain separation between uses.
_PERSON_HEK: Final = b"chipi-vault-hek1"
_PERSON_BOX: Final = b"chipi-vault-box1"
_PERSON_CHECK: Final = b"chipi-vault-kcv1"

_LEGACY_PREFIX: Final = "U2FsdGVkX1"  # base64 of b"Salted__"
_LEGACY_MAGIC: Final = b"Salted__"
_LEGACY_SALT_BYTES: Final = 8
_LEGACY_PLAINTEXT = re.compile(r"0x([0-9a-fA-F]{1,64})")

_RAW: Final = nacl.encoding.RawEncoder

_PARAMS = re.compile(r"o=([1-9][0-9]{0,9}),m=([1-9][0-9]{0,12})")
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,16}")

_MIB: Final = 1024 * 1024
#: Upper bounds on the cost a blob may demand, so a hostile or corrupt blob cannot make
#: decryption allocate gigabytes or run for minutes.
MAX_OPS: Final = 20
MAX_MEM: Final = 1024 * _MIB


def _stored(message: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_STORED_DATA, f"encrypted key: {message}")


def _wrong_key(message: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.SESSION_DECRYPTION_FAILED, message)


def _check_cost(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    low, high = {
        "ops": (nacl.pwhash.argon2id.OPSLIMIT_MIN, MAX_OPS),
        "mem": (nacl.pwhash.argon2id.MEMLIMIT_MIN, MAX_MEM),
    }[attribute.name]
    check_int(value, f"KdfCost.{attribute.name}", low=low, high=high)


@attrs.frozen
class KdfCost:
    """Argon2id cost for PIN-encrypted blobs: ``ops`` passes over ``mem`` bytes.

    ``DEFAULT`` (3 passes, 64 MiB, ~100-150 ms) makes each PIN guess expensive; a 4-6 digit PIN
    is still guessable offline, so the blob must stay private. ``FAST_FOR_TESTS`` is libsodium's
    minimum: it offers no protection and exists only to keep test suites fast.
    """

    ops: int = attrs.field(validator=_check_cost)
    mem: int = attrs.field(validator=_check_cost)

    DEFAULT: ClassVar[KdfCost]
    FAST_FOR_TESTS: ClassVar[KdfCost]

    def _params(self) -> str:
        return f"o={self.ops},m={self.mem}"


KdfCost.DEFAULT = KdfCost(ops=3, mem=64 * _MIB)
KdfCost.FAST_FOR_TESTS = KdfCost(
    ops=nacl.pwhash.argon2id.OPSLIMIT_MIN, mem=nacl.pwhash.argon2id.MEMLIMIT_MIN
)


class HighEntropyKey:
    """A random key of at least 128 bits (16-64 bytes), e.g. from a secret store.

    Because it cannot be guessed, the vault derives the encryption key with one keyed BLAKE2b
    instead of Argon2id: microseconds instead of ~100 ms per session. Never use a human-chosen
    secret here; pass a PIN or password as a ``str`` so it gets Argon2id. ``repr`` shows only
    the length.
    """

    __slots__ = ("_key",)
    MIN_BYTES: ClassVar[int] = 16
    MAX_BYTES: ClassVar[int] = nacl.hash.BLAKE2B_KEYBYTES_MAX  # 64

    def __init__(self, key: bytes | bytearray | memoryview) -> None:
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "HighEntropyKey needs bytes")
        data = bytes(key)
        if not self.MIN_BYTES <= len(data) <= self.MAX_BYTES:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"HighEntropyKey must be {self.MIN_BYTES} to {self.MAX_BYTES} bytes, "
                f"got {len(data)}",
            )
        if len(set(data)) == 1:  # all zeros etc.: a placeholder, not a key
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "HighEntropyKey is one repeated byte, not a random key"
            )
        self._key = data

    @classmethod
    def from_bytes(cls, key: bytes | bytearray | memoryview) -> HighEntropyKey:
        return cls(key)

    @classmethod
    def from_hex(cls, text: str) -> HighEntropyKey:
        """Hex, with or without ``0x``; the text is never echoed in errors."""
        if not isinstance(text, str):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "HighEntropyKey.from_hex needs a str")
        body = text.strip()
        if body[:2].lower() == "0x":
            body = body[2:]
        try:
            data = bytes.fromhex(body)
        except ValueError:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "HighEntropyKey.from_hex: not an even-length hex string"
            ) from None
        return cls(data)

    @classmethod
    def generate(cls, size: int = 32) -> HighEntropyKey:
        """A fresh key of ``size`` bytes from the OS CSPRNG."""
        check_int(size, "HighEntropyKey size", low=cls.MIN_BYTES, high=cls.MAX_BYTES)
        return cls(secrets.token_bytes(size))

    def __len__(self) -> int:
        return len(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HighEntropyKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash((HighEntropyKey, hashlib.blake2b(self._key, digest_size=8).digest()))

    def __repr__(self) -> str:
        return f"HighEntropyKey(<{len(self._key)} bytes>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("HighEntropyKey cannot be pickled")


# -- encoding helpers ----------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str, what: str) -> bytes:
    """Strict unpadded base64: rejects other alphabets and non-canonical encodings."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _stored(f"{what} is not base64") from None
    if _b64encode(data) != text:
        raise _stored(f"{what} is not canonical base64")
    return data


def _secret_bytes(secret: str, what: str) -> bytes:
    if not isinstance(secret, str):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must be a str")
    if not secret:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must not be empty")
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{what} is not valid Unicode text"
        ) from None


def _finish(private_key: int, expected_public_key: int | str | None) -> SecretKey:
    """Range-check a decrypted key and compare its public key as a number."""
    if not 1 <= private_key < CURVE_ORDER:
        raise _wrong_key("decrypted value is not a valid Stark private key (wrong key?)")
    public_key = public_key_of(private_key)
    if expected_public_key is not None:
        expected = parse_felt(expected_public_key, "expected_public_key")
        if public_key != expected:
            raise _wrong_key("decrypted key does not match the expected public key")
    return SecretKey(private_key, public_key)


# -- our format ----------------------------------------------------------------------------


def _subkeys(kdf_output: bytes, header: str) -> tuple[bytes, bytes]:
    """(SecretBox key, key check), both bound to every header field."""
    data = header.encode("ascii")
    box_key = nacl.hash.blake2b(
        data, digest_size=_KEY_BYTES, key=kdf_output, person=_PERSON_BOX, encoder=_RAW
    )
    check = nacl.hash.blake2b(
        data, digest_size=_CHECK_BYTES, key=kdf_output, person=_PERSON_CHECK, encoder=_RAW
    )
    return box_key, check


def _kdf(
    kind: Literal["argon2id", "blake2b"],
    secret: bytes,
    salt: bytes,
    cost: KdfCost | None,
) -> bytes:
    if kind == _KDF_ARGON2ID:
        assert cost is not None
        out: bytes = nacl.pwhash.argon2id.kdf(
            _KEY_BYTES, secret, salt, opslimit=cost.ops, memlimit=cost.mem, encoder=_RAW
        )
        return out
    key: bytes = nacl.hash.blake2b(
        b"", digest_size=_KEY_BYTES, key=secret, salt=salt, person=_PERSON_HEK, encoder=_RAW
    )
    return key


def _parse_ours(
    blob: str,
) -> tuple[str, Literal["argon2id", "blake2b"], KdfCost | None, bytes, bytes]:
    fields = blob.split("$")
    if len(fields) < 2 or not fields[1]:
        raise _stored("vault blob has no version")
    version = fields[1]
    if version != _VERSION:
        shown = version if re.fullmatch(r"[0-9]{1,6}", version) else "(not a number)"
        raise _stored(f"unknown vault version {shown}")
    if len(fields) != 6:
        raise _stored(f"vault blob has {len(fields)} fields, expected 6 (truncated?)")
    _, _, kind, params, salt_text, payload_text = fields
    cost: KdfCost | None
    if kind == _KDF_ARGON2ID:
        match = _PARAMS.fullmatch(params)
        if match is None:
            raise _stored("malformed Argon2id parameters")
        try:
            cost = KdfCost(ops=int(match[1]), mem=int(match[2]))
        except ChipiSessionError:
            raise _stored("Argon2id cost out of the accepted range") from None
        kdf: Literal["argon2id", "blake2b"] = "argon2id"
    elif kind == _KDF_BLAKE2B:
        if params != _NO_PARAMS:
            raise _stored("malformed blake2b parameters")
        cost, kdf = None, "blake2b"
    else:
        shown = repr(kind) if _SAFE_TOKEN.fullmatch(kind) else "(unreadable)"
        raise _stored(f"unknown KDF {shown}")
    salt = _b64decode(salt_text, "salt")
    if len(salt) != _SALT_BYTES:
        raise _stored(f"salt is {len(salt)} bytes, expected {_SALT_BYTES}")
    payload = _b64decode(payload_text, "payload")
    if len(payload) != _PAYLOAD_BYTES:
        raise _stored(f"payload is {len(payload)} bytes, expected {_PAYLOAD_BYTES} (truncated?)")
    header = blob[: len(blob) - len(payload_text) - 1]
    return header, kdf, cost, salt, payload


def _decrypt_ours(blob: str, encrypt_key: str | HighEntropyKey) -> int:
    header, kind, cost, salt, payload = _parse_ours(blob)
    if kind == _KDF_ARGON2ID:
        if isinstance(encrypt_key, HighEntropyKey):
            raise _wrong_key("this key was encrypted with a PIN, not a HighEntropyKey")
        secret = _secret_bytes(encrypt_key, "PIN")
    else:
        if not isinstance(encrypt_key, HighEntropyKey):
            raise _wrong_key("this key was encrypted with a HighEntropyKey, not a PIN")
        secret = encrypt_key._key
    box_key, check = _subkeys(_kdf(kind, secret, salt, cost), header)
    if not hmac.compare_digest(check, payload[:_CHECK_BYTES]):
        raise _wrong_key("wrong PIN or key")
    try:
        plain = nacl.secret.SecretBox(box_key).decrypt(payload[_CHECK_BYTES:])
    except nacl.exceptions.CryptoError:
        raise _stored("ciphertext failed authentication (corrupted or tampered)") from None
    return int.from_bytes(plain, "big")


# -- legacy CryptoJS format ----------------------------------------------------------------


def _evp_bytes_to_key(password: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL EVP_BytesToKey, MD5, one iteration: 32-byte AES key and 16-byte IV."""
    derived = b""
    block = b""
    while len(derived) < 48:
        block = hashlib.md5(block + password + salt, usedforsecurity=False).digest()
        derived += block
    return derived[:32], derived[32:48]


def _encrypt_legacy_with_salt(private_key: int, passphrase: str, salt: bytes) -> str:
    """CryptoJS ``AES.encrypt`` with a given salt (exposed for the fixed-salt test vector)."""
    check_private_key(private_key)
    password = _secret_bytes(passphrase, "passphrase")
    if len(salt) != _LEGACY_SALT_BYTES:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "legacy salt must be 8 bytes")
    plain = ("0x" + format(private_key, "064x")).encode("ascii")
    pad = 16 - len(plain) % 16
    key, iv = _evp_bytes_to_key(password, salt)
    ciphertext = AES.new(key, AES.MODE_CBC, iv=iv).encrypt(plain + bytes([pad]) * pad)
    return base64.b64encode(_LEGACY_MAGIC + salt + ciphertext).decode("ascii")


def _decrypt_legacy(blob: str, encrypt_key: str | HighEntropyKey) -> int:
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise _stored("legacy blob is not base64") from None
    if not raw.startswith(_LEGACY_MAGIC):
        raise _stored("legacy blob lacks the Salted__ header")
    body = raw[len(_LEGACY_MAGIC) :]
    salt, ciphertext = body[:_LEGACY_SALT_BYTES], body[_LEGACY_SALT_BYTES:]
    if len(salt) != _LEGACY_SALT_BYTES or not ciphertext or len(ciphertext) % 16:
        raise _stored("legacy ciphertext is truncated (not a whole number of AES blocks)")
    if isinstance(encrypt_key, HighEntropyKey):
        raise _wrong_key(
            "a legacy CryptoJS key is opened with its passphrase str, not a HighEntropyKey"
        )
    key, iv = _evp_bytes_to_key(_secret_bytes(encrypt_key, "PIN"), salt)
    padded = bytearray(AES.new(key, AES.MODE_CBC, iv=iv).decrypt(ciphertext))
    try:
        pad = padded[-1]
        # No MAC: bad padding or a non-key plaintext is how a wrong passphrase shows up.
        if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
            raise _wrong_key("wrong PIN (or corrupted legacy blob)")
        match = _LEGACY_PLAINTEXT.fullmatch(padded[:-pad].decode("ascii", "replace"))
        if match is None:
            raise _wrong_key("wrong PIN (or corrupted legacy blob)")
        return int(match[1], 16)
    finally:
        padded[:] = bytes(len(padded))


# -- the vault -----------------------------------------------------------------------------


def _check_kdf_cost(_: object, __: attrs.Attribute[KdfCost], value: object) -> None:
    check_instance(value, "Vault.cost", KdfCost, "a KdfCost")


@attrs.frozen
class Vault:
    """Encrypts and decrypts session/owner private keys.

    Immutable and stateless between calls, so one instance can be shared by threads; the engine
    runs :meth:`decrypt` in a worker thread because Argon2id takes ~100 ms by design.
    ``cost`` applies to :meth:`encrypt` only: decryption uses the cost recorded in the blob.
    """

    cost: KdfCost = attrs.field(default=KdfCost.DEFAULT, validator=_check_kdf_cost)

    def encrypt(self, private_key: int, encrypt_key: str | HighEntropyKey) -> str:
        """Our authenticated format: Argon2id for a PIN ``str``, BLAKE2b for a HighEntropyKey."""
        check_private_key(private_key)
        salt = secrets.token_bytes(_SALT_BYTES)
        if isinstance(encrypt_key, HighEntropyKey):
            kind: Literal["argon2id", "blake2b"] = "blake2b"
            secret, cost, params = encrypt_key._key, None, _NO_PARAMS
        else:
            kind, cost = "argon2id", self.cost
            secret, params = _secret_bytes(encrypt_key, "PIN"), self.cost._params()
        header = "$".join((_MAGIC, _VERSION, kind, params, _b64encode(salt)))
        box_key, check = _subkeys(_kdf(kind, secret, salt, cost), header)
        plain = bytearray(private_key.to_bytes(_KEY_BYTES, "big"))
        try:
            sealed = nacl.secret.SecretBox(box_key).encrypt(
                bytes(plain), secrets.token_bytes(_NONCE_BYTES)
            )
        finally:
            plain[:] = bytes(_KEY_BYTES)
        return f"{header}${_b64encode(check + bytes(sealed))}"

    def encrypt_legacy_cryptojs(self, private_key: int, passphrase: str) -> str:
        """Chipi's JS-SDK format (``CryptoJS.AES.encrypt``), for blobs the JS SDK must read.

        Opt in only for interop: it has **no MAC** (tampering is not detected, a wrong
        passphrase is detected only by padding), and its KDF is one MD5 round, so a PIN falls
        to brute force in milliseconds to anyone holding the blob. Prefer :meth:`encrypt`.
        """
        return _encrypt_legacy_with_salt(
            private_key, passphrase, secrets.token_bytes(_LEGACY_SALT_BYTES)
        )

    def decrypt(
        self,
        blob: str,
        encrypt_key: str | HighEntropyKey,
        *,
        expected_public_key: int | str | None = None,
    ) -> SecretKey:
        """Decrypt either format (detected from the blob).

        Raises ``SESSION_DECRYPTION_FAILED`` for a wrong PIN/key, a decrypted value that is not
        a private key in ``[1, n)``, or a public key that differs (as a number) from
        ``expected_public_key``; ``INVALID_STORED_DATA`` for a corrupt or unknown blob.
        """
        if not isinstance(encrypt_key, (str, HighEntropyKey)):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "encrypt_key must be a str PIN or a HighEntropyKey"
            )
        if not isinstance(blob, str):
            raise _stored("not a string")
        text = blob.strip()
        if text.startswith(_MAGIC + "$"):
            private_key = _decrypt_ours(text, encrypt_key)
        elif text.startswith(_LEGACY_PREFIX):
            private_key = _decrypt_legacy(text, encrypt_key)
        else:
            raise _stored("unknown format (neither chipi-vault nor CryptoJS Salted__)")
        return _finish(private_key, expected_public_key)
