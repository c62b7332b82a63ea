"""Stark keypairs and signatures.

Signing and verification go through a native signer (``fast-stark-crypto``, the Rust
``starknet-crypto`` crate: ~0.5 ms per signature) when it is installed, else through
starknet-py's signer (~180 ms). Both produce the same RFC 6979 deterministic signatures, so the
choice changes speed, never results. Private keys live in :class:`SecretKey`, which can be zeroed
and never shows its value in ``repr``.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Final, NoReturn

from .errors import ChipiSessionError, ErrorCode
from .felts import CURVE_ORDER, FIELD_PRIME, U64_MAX

__all__ = [
    "SecretKey",
    "KeySource",
    "generate_private_key",
    "public_key_of",
    "sign",
    "verify",
    "verify_in_range",
    "session_signature",
    "SIGNER_BACKEND",
]

#: A key source returns a private key in [1, CURVE_ORDER); injectable for deterministic tests.
KeySource = Callable[[], int]

try:  # pragma: no cover - which branch runs depends on the platform
    import fast_stark_crypto as _native

    SIGNER_BACKEND: Final[str] = "fast-stark-crypto"
except ImportError:  # pragma: no cover
    _native = None  # type: ignore[assignment]
    SIGNER_BACKEND = "starknet-py"  # type: ignore[misc]


#: Stark ECDSA signs and verifies only hashes below 2**251 (both backends reject larger ones).
_ECDSA_BOUND: Final = 2**251
_CURVE_BETA: Final = 0x6F21413EFBE40DE150E596D72F7A8C5609AD26C15C915C1F4CDFCB99CEE9E89


def generate_private_key() -> int:
    """Uniform in [1, n) from the OS CSPRNG (rejection-free: randbelow is uniform)."""
    return 1 + secrets.randbelow(CURVE_ORDER - 1)


def check_private_key(value: int) -> int:
    """``value`` if it is a private key in [1, n), else ``INVALID_INPUT`` (value not shown)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < CURVE_ORDER:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "private key out of range [1, n)")
    return value


def public_key_of(private_key: int) -> int:
    """The Stark public key (x-coordinate) of a private key."""
    check_private_key(private_key)
    if _native is not None:
        return int(_native.get_public_key(private_key))
    from starknet_py.hash.utils import private_to_stark_key

    return int(private_to_stark_key(private_key))


def sign(msg_hash: int, private_key: int) -> tuple[int, int]:
    """RFC 6979 ECDSA over the Stark curve; returns ``(r, s)``."""
    check_private_key(private_key)
    if isinstance(msg_hash, bool) or not isinstance(msg_hash, int):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "message hash is not an int")
    # 0 is excluded because starknet-py's RFC 6979 nonce derivation crashes on it; a real hash
    # is 0 with probability 2**-251, so both backends reject it rather than disagree.
    if not 0 < msg_hash < _ECDSA_BOUND:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "message hash is not in [1, 2**251)")
    if _native is not None:
        r, s = _native.sign(private_key, msg_hash)
        return int(r), int(s)
    from starknet_py.hash.utils import message_signature

    r, s = message_signature(msg_hash, private_key, seed=None)
    return int(r), int(s)


@functools.lru_cache(maxsize=1024)
def _is_curve_x(x: int) -> bool:
    """True if some point of y^2 = x^3 + x + beta has this x (Euler's criterion).

    ~0.1 ms; cached because a session verifies many signatures under one public key.
    """
    rhs = (x * x * x + x + _CURVE_BETA) % FIELD_PRIME
    return rhs == 0 or pow(rhs, (FIELD_PRIME - 1) // 2, FIELD_PRIME) == 1


def verify(public_key: int, msg_hash: int, r: int, s: int) -> bool:
    """True if ``(r, s)`` is a valid signature of ``msg_hash`` by ``public_key``; never raises."""
    values = (public_key, msg_hash, r, s)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        return False
    if not (0 <= msg_hash < _ECDSA_BOUND and 0 < r < _ECDSA_BOUND and 0 < s < _ECDSA_BOUND):
        return False
    # The native verifier panics (a BaseException, with a backtrace on stderr) on an x that is
    # not on the curve or on s whose inverse w is >= 2**251 (Stark ECDSA rejects those): check.
    if pow(s, -1, CURVE_ORDER) >= _ECDSA_BOUND:
        return False
    return verify_in_range(public_key, msg_hash, r, s)


def verify_in_range(public_key: int, msg_hash: int, r: int, s: int) -> bool:
    """:func:`verify` for ints whose hash, ``r``, ``s`` and ``s⁻¹ mod n`` the caller has
    already checked to be in the standard ranges (``[0, 2**251)``, ``r, s > 0``); the public
    key is checked here. Never raises."""
    if not (0 < public_key < FIELD_PRIME and _is_curve_x(public_key)):
        return False
    try:
        if _native is not None:
            return bool(_native.verify(public_key, msg_hash, r, s))
        from starknet_py.hash.utils import verify_message_signature

        return bool(verify_message_signature(msg_hash, [r, s], public_key))
    except Exception:  # invalid point encodings etc. are "not valid", not a crash
        return False
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ == "PanicException":
            return False
        raise


class SecretKey:
    """A private key held in a mutable buffer so it can be zeroed.

    ``repr``/``str`` never show the value. After :meth:`zero` every use raises ``NO_SESSION``.
    Python may have copied the int elsewhere; zeroing is best effort, but it keeps the
    long-lived copy out of memory once a session ends.
    """

    __slots__ = ("_buf", "_public_key")

    def __init__(self, private_key: int, public_key: int | None = None) -> None:
        check_private_key(private_key)
        self._buf = bytearray(private_key.to_bytes(32, "big"))
        self._public_key = public_key_of(private_key) if public_key is None else public_key

    @classmethod
    def generate(cls, source: KeySource | None = None) -> SecretKey:
        return cls((source or generate_private_key)())

    @property
    def public_key(self) -> int:
        return self._public_key

    @property
    def is_zeroed(self) -> bool:
        return not any(self._buf)

    def reveal(self) -> int:
        """The private key as an int (for encryption); avoid keeping the result around."""
        if self.is_zeroed:
            raise ChipiSessionError(ErrorCode.NO_SESSION, "the key has been cleared")
        return int.from_bytes(self._buf, "big")

    def sign(self, msg_hash: int) -> tuple[int, int]:
        return sign(msg_hash, self.reveal())

    def zero(self) -> None:
        for i in range(len(self._buf)):
            self._buf[i] = 0

    def __repr__(self) -> str:
        state = "zeroed" if self.is_zeroed else "set"
        return f"SecretKey(public_key={hex(self._public_key)}, private=<{state}>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretKey cannot be pickled")


def session_signature(key: SecretKey, msg_hash: int, valid_until: int) -> tuple[int, int, int, int]:
    """The 4-felt session signature ``[session_pubkey, r, s, valid_until]``."""
    if not 0 <= valid_until <= U64_MAX:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "valid_until is not a u64")
    r, s = key.sign(msg_hash)
    return (key.public_key, r, s, valid_until)
