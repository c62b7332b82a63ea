"""Frozen value types (attrs) shared by every layer.

JSON helpers use Chipi's camelCase shapes, so data stored by Chipi's JS SDK loads as-is and data
we store loads in the JS SDK. Every constructor validates: a malformed value is an
``INVALID_INPUT`` (or ``INVALID_STORED_DATA`` when loading) error, never a half-built object.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .errors import ChipiSessionError, ErrorCode
from .felts import (
    U32_MAX,
    U64_MAX,
    U128_BOUND,
    join_u256,
    parse_felt,
    parse_felts,
    parse_selector,
    to_hex,
)
from .validate import describe

__all__ = [
    "WalletType",
    "SessionState",
    "ExpiryReason",
    "Call",
    "SessionKeyData",
    "WalletData",
    "SessionStatus",
    "SpendingPolicy",
    "ExecutionStatus",
    "CallOutcome",
    "ExecutedEvent",
    "ExecutionResult",
    "SubmitInfo",
]


class WalletType(enum.StrEnum):
    CHIPI = "CHIPI"
    READY = "READY"
    SHHH = "SHHH"

    def __str__(self) -> str:
        return self.value


class SessionState(enum.StrEnum):
    """The lifecycle states of a session (see ``chipi_session.lifecycle``)."""

    NONE = "none"
    CREATED = "created"
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"

    def __str__(self) -> str:
        return self.value


class ExpiryReason(enum.StrEnum):
    TIME = "time"
    CALLS = "calls"

    def __str__(self) -> str:
        return self.value


def _to_address(v: object) -> int:
    return parse_felt(v, "call.to")


def _to_selector(v: object) -> int:
    return parse_selector(v, "call.selector")


def _to_calldata(v: object) -> tuple[int, ...]:
    return parse_felts(v, "call.calldata")  # type: ignore[arg-type]


def _to_public_key(v: object) -> int:
    return parse_felt(v, "publicKey")


def _to_wallet_address(v: object) -> int:
    return parse_felt(v, "wallet.publicKey")


def _to_valid_until(v: object) -> int:
    n = parse_felt(v, "validUntil")
    if n > U64_MAX:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"validUntil: {n} exceeds 2**64-1")
    return n


def _to_wallet_type(v: object) -> WalletType:
    if isinstance(v, WalletType):
        return v
    try:
        return WalletType(v)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        expected = ", ".join(t.value for t in WalletType)
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"wallet_type must be one of {expected}, got {describe(v)}"
        ) from None


def _to_owner_public_key(v: object) -> int | None:
    return None if v is None else parse_felt(v, "ownerPublicKey")


def _check_encrypted_blob(value: object) -> None:
    """A vault blob: a non-empty str (its contents are checked when it is decrypted)."""
    if not isinstance(value, str) or not value.strip():
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, "encryptedPrivateKey must be a non-empty string"
        )


@attrs.frozen
class Call:
    """One contract call. ``selector`` accepts an entrypoint name or a selector felt;
    ``calldata`` felts may be ints, ``0x`` hex or decimal strings."""

    to: int = attrs.field(converter=_to_address)
    selector: int = attrs.field(converter=_to_selector)
    calldata: tuple[int, ...] = attrs.field(default=(), converter=_to_calldata)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        """Accepts both official SDK shapes (``contractAddress`` or ``contract_address``,
        ``entrypoint`` or ``selector``)."""
        if not isinstance(data, Mapping):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "call: expected an object")
        to = data.get("contractAddress", data.get("contract_address", data.get("to")))
        sel = data.get("entrypoint", data.get("selector", data.get("entry_point_selector")))
        if to is None or sel is None:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "call: needs contractAddress and entrypoint"
            )
        return cls(to=to, selector=sel, calldata=data.get("calldata", ()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "contractAddress": to_hex(self.to),
            "entrypoint": to_hex(self.selector),
            "calldata": [to_hex(x) for x in self.calldata],
        }


def coerce_calls(calls: object) -> tuple[Call, ...]:
    """Validate a user's calls: one Call or mapping, or a list of them; at least one call."""
    if isinstance(calls, Call):
        return (calls,)
    if isinstance(calls, Mapping):
        return (Call.from_dict(calls),)
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Iterable):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "calls: expected a list of calls")
    out = tuple(c if isinstance(c, Call) else Call.from_dict(c) for c in calls)
    if not out:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "calls: at least one call is required")
    return out


@attrs.frozen
class SessionKeyData:
    """A session as the client stores it: ``{publicKey, encryptedPrivateKey, validUntil}``.

    ``encrypted_private_key`` is a vault blob (ours, or Chipi's CryptoJS format); it is kept out
    of ``repr`` all the same.
    """

    public_key: int = attrs.field(converter=_to_public_key)
    encrypted_private_key: str = attrs.field(repr=False)
    valid_until: int = attrs.field(converter=_to_valid_until)

    @encrypted_private_key.validator
    def _check_blob(self, _: object, value: object) -> None:
        _check_encrypted_blob(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "publicKey": to_hex(self.public_key),
            "encryptedPrivateKey": self.encrypted_private_key,
            "validUntil": self.valid_until,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionKeyData:
        """Load a stored session (camelCase, or the Python SDK's snake_case)."""
        try:
            if not isinstance(data, Mapping):
                raise TypeError
            pub = data.get("publicKey", data.get("public_key"))
            blob = data.get("encryptedPrivateKey", data.get("encrypted_private_key"))
            valid_until = data.get("validUntil", data.get("valid_until"))
            if pub is None or blob is None or valid_until is None:
                raise KeyError
            return cls(public_key=pub, encrypted_private_key=blob, valid_until=valid_until)
        except (ChipiSessionError, TypeError, KeyError, ValueError) as exc:
            detail = exc.message if isinstance(exc, ChipiSessionError) else "missing fields"
            raise ChipiSessionError(
                ErrorCode.INVALID_STORED_DATA, f"stored session is corrupt: {detail}"
            ) from None


@attrs.frozen
class WalletData:
    """A Chipi wallet: ``publicKey`` is the wallet's *address*, as in Chipi's SDKs."""

    address: int = attrs.field(converter=_to_wallet_address)
    encrypted_private_key: str = attrs.field(repr=False)
    wallet_type: WalletType = attrs.field(default=WalletType.CHIPI, converter=_to_wallet_type)
    owner_public_key: int | None = attrs.field(default=None, converter=_to_owner_public_key)

    @encrypted_private_key.validator
    def _check_blob(self, _: object, value: object) -> None:
        _check_encrypted_blob(value)

    @property
    def supports_session(self) -> bool:
        return self.wallet_type is WalletType.CHIPI

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "publicKey": to_hex(self.address),
            "encryptedPrivateKey": self.encrypted_private_key,
            "walletType": self.wallet_type.value,
        }
        if self.owner_public_key is not None:
            out["ownerPublicKey"] = to_hex(self.owner_public_key)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WalletData:
        """Load ``{publicKey, encryptedPrivateKey, walletType?, ownerPublicKey?}``: a value
        that is not a mapping is ``INVALID_INPUT``, a mapping with bad fields
        ``INVALID_STORED_DATA``."""
        if not isinstance(data, Mapping):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"wallet data must be a mapping (a JSON object), got {describe(data)}",
            )
        try:
            return cls(
                address=data["publicKey"],
                encrypted_private_key=data["encryptedPrivateKey"],
                wallet_type=data.get("walletType", "CHIPI"),
                owner_public_key=data.get("ownerPublicKey"),
            )
        except KeyError as exc:
            raise ChipiSessionError(
                ErrorCode.INVALID_STORED_DATA, f"wallet data is invalid: missing {exc}"
            ) from None
        except ChipiSessionError as exc:
            raise ChipiSessionError(
                ErrorCode.INVALID_STORED_DATA, f"wallet data is invalid: {exc.message}"
            ) from None


@attrs.frozen
class SessionStatus:
    """On-chain session data: ``get_session_data``'s 4 felts plus the whitelist.

    ``valid_until == 0`` means unknown or revoked (the contract cannot tell which).
    """

    valid_until: int
    max_calls: int
    calls_used: int
    allowed_entrypoints: tuple[int, ...] = ()

    @classmethod
    def from_felts(
        cls, felts: Iterable[object], allowed_entrypoints: Iterable[object] = ()
    ) -> SessionStatus:
        values = parse_felts(felts, "get_session_data")
        if len(values) != 4:
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE,
                f"get_session_data returned {len(values)} felts, expected 4",
            )
        valid_until, max_calls, calls_used, length = values
        if valid_until > U64_MAX or max(max_calls, calls_used, length) > U32_MAX:
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE, "get_session_data: value out of range"
            )
        allowed = parse_felts(allowed_entrypoints, "allowed_entrypoints")
        if len(allowed) != length:
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE,
                f"whitelist has {len(allowed)} entries, session data says {length}",
            )
        return cls(valid_until, max_calls, calls_used, allowed)

    @property
    def exists(self) -> bool:
        return self.valid_until != 0

    @property
    def remaining_calls(self) -> int:
        return max(self.max_calls - self.calls_used, 0)

    def is_active(self, now: int) -> bool:
        """Inclusive boundary: at ``now == valid_until`` the session is still valid."""
        return self.exists and now <= self.valid_until and self.calls_used < self.max_calls


@attrs.frozen
class SpendingPolicy:
    """A per-(session, token) ERC-20 cap; ``get_spending_policy``'s 8 felts decoded."""

    max_per_call: int
    max_per_window: int
    window_seconds: int
    spent_in_window: int = 0
    window_start: int = 0

    @property
    def exists(self) -> bool:
        return self.max_per_window > 0

    @classmethod
    def from_felts(cls, felts: Iterable[object]) -> SpendingPolicy:
        v = parse_felts(felts, "get_spending_policy")
        if len(v) != 8 or any(v[i] >= U128_BOUND for i in (0, 1, 2, 3, 5, 6)):
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE, "get_spending_policy: expected 8 felts"
            )
        return cls(
            max_per_call=join_u256(v[0], v[1]),
            max_per_window=join_u256(v[2], v[3]),
            window_seconds=v[4],
            spent_in_window=join_u256(v[5], v[6]),
            window_start=v[7],
        )


class ExecutionStatus(enum.StrEnum):
    """What the chain did with a session execute (see docs/execution-results.md).

    ``SUCCEEDED``: included, and every call of the multicall succeeded. ``CALL_FAILED``:
    included and not reverted, but at least one inner call panicked (the v33 account runs a
    multicall non-atomically, so the other calls were applied). ``REVERTED``: the transaction
    reverted; none of its calls were applied. ``UNKNOWN``: the backend cannot tell (for
    example a node without the trace API) — never read it as success.
    """

    SUCCEEDED = "succeeded"
    CALL_FAILED = "call_failed"
    REVERTED = "reverted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class CallOutcome:
    """One call of an executed multicall, by its index in the list that was sent.

    ``ok`` is True (applied), False (failed: its own writes were undone) or None (unknown).
    ``reason`` is the panic text of a failed call; ``result`` its return felts.
    """

    index: int
    ok: bool | None
    reason: str | None = None
    result: tuple[int, ...] = ()


@attrs.frozen
class ExecutedEvent:
    """An event the transaction emitted (receipt order)."""

    from_address: int
    keys: tuple[int, ...]
    data: tuple[int, ...]


@attrs.frozen
class ExecutionResult:
    """The outcome of one execute as the chain recorded it (docs/execution-results.md)."""

    tx_hash: str
    status: ExecutionStatus
    calls: tuple[CallOutcome, ...] = ()
    events: tuple[ExecutedEvent, ...] = ()
    revert_reason: str | None = None
    block_number: int | None = None

    @property
    def failed_call_index(self) -> int | None:
        """Index of the first call that failed, if one is known to have failed."""
        return next((c.index for c in self.calls if c.ok is False), None)

    @property
    def succeeded(self) -> bool:
        """True only when the chain says every call succeeded (UNKNOWN is not success)."""
        return self.status is ExecutionStatus.SUCCEEDED

    @property
    def failed(self) -> bool:
        """True when the chain says a call failed or the transaction reverted."""
        return self.status in (ExecutionStatus.CALL_FAILED, ExecutionStatus.REVERTED)

    @classmethod
    def unknown(cls, tx_hash: str, call_count: int) -> ExecutionResult:
        """What a backend that cannot read outcomes reports: every call unknown."""
        return cls(
            tx_hash,
            ExecutionStatus.UNKNOWN,
            tuple(CallOutcome(i, None) for i in range(call_count)),
        )


@attrs.frozen
class SubmitInfo:
    """What a backend is about to send, reported through ``on_submit`` before it sends.

    The SNIP-9 nonce is single-use on chain, so "is this nonce used?" answers exactly whether
    the transaction executed: the engine journals it to resolve an unknown outcome (a timeout
    after sending, a crash) without ever sending twice (docs/engine.md, "In-doubt writes").
    """

    action: str
    wallet_address: int
    outside_nonce: int
    message_hash: int
    #: End of the SNIP-9 window: after it an unused nonce can never be used, so "not executed"
    #: is only certain once the chain's time has passed it.
    execute_before: int
