"""Session records: one hub slot as persisted (wallet, session, what the chain was seen doing).

Private keys are vault blobs in the record, so a record is safe to write to disk. See
docs/architecture.md ("What survives a restart").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ..errors import ChipiSessionError
from ..felts import U32_MAX, parse_felts, to_hex
from ..types import SessionKeyData, WalletData
from .codec import (
    _check_fields,
    _check_number,
    _Corrupt,
    _field,
    _invalid,
    _stored_error,
    _v_text,
)

__all__ = ["SessionRecord"]


def _v_bool(_: object, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise _invalid(f"{attribute.name} must be a bool")


def _v_wallet(_: object, __: attrs.Attribute[WalletData], value: object) -> None:
    if not isinstance(value, WalletData):
        raise _invalid("wallet must be a WalletData")


def _v_session(_: object, __: attrs.Attribute[SessionKeyData | None], value: object) -> None:
    if value is not None and not isinstance(value, SessionKeyData):
        raise _invalid("session must be a SessionKeyData or None")


def _v_max_calls(_: object, __: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise _invalid("registered_max_calls must be None or an int in [0, 2**32-1]")


def _to_entrypoints(value: Iterable[object]) -> tuple[int, ...]:
    return parse_felts(value, "registered_allowed_entrypoints")


def _to_public_keys(value: Iterable[object]) -> tuple[int, ...]:
    return parse_felts(value, "retiring")


def _to_updated_at(value: object) -> float:
    return _check_number(value, "updated_at")


_RECORD_FIELDS: Final = frozenset(
    {
        "key",
        "wallet",
        "session",
        "seenRegistered",
        "registeredMaxCalls",
        "registeredAllowedEntrypoints",
        "updatedAt",
        "successor",
        "retiring",
    }
)


@attrs.frozen
class SessionRecord:
    """One hub slot as persisted: everything needed to resume it after a restart.

    ``wallet`` and ``session`` hold vault blobs only, so a record is safe to write to disk.
    ``seen_registered`` and the ``registered_*`` fields keep what the process saw on chain, so a
    restarted hub can tell a revoked session (it reads 0 but was registered) from one that was
    never registered, and can re-check the policy it registered without a round trip.
    """

    key: str = attrs.field(validator=_v_text)
    wallet: WalletData = attrs.field(validator=_v_wallet)
    session: SessionKeyData | None = attrs.field(validator=_v_session)
    seen_registered: bool = attrs.field(default=False, validator=_v_bool)
    registered_max_calls: int | None = attrs.field(default=None, validator=_v_max_calls)
    registered_allowed_entrypoints: tuple[int, ...] = attrs.field(
        default=(), converter=_to_entrypoints
    )
    updated_at: float = attrs.field(default=0.0, converter=_to_updated_at)
    #: a renewal's successor, on record (encrypted) before it is registered: a crash cannot
    #: lose a registered key; the next open adopts it if the chain has it, else drops it
    successor: SessionKeyData | None = attrs.field(default=None, validator=_v_session)
    #: public keys of replaced sessions still to be revoked (finished on the next open)
    retiring: tuple[int, ...] = attrs.field(default=(), converter=_to_public_keys)

    def to_json(self) -> dict[str, Any]:
        """camelCase, with the wallet and session in Chipi's own JSON shapes (``successor``
        and ``retiring`` only while a renewal is unfinished)."""
        data = {
            "key": self.key,
            "wallet": self.wallet.to_json(),
            "session": None if self.session is None else self.session.to_json(),
            "seenRegistered": self.seen_registered,
            "registeredMaxCalls": self.registered_max_calls,
            "registeredAllowedEntrypoints": [
                to_hex(x) for x in self.registered_allowed_entrypoints
            ],
            "updatedAt": self.updated_at,
        }
        if self.successor is not None:
            data["successor"] = self.successor.to_json()
        if self.retiring:
            data["retiring"] = [to_hex(x) for x in self.retiring]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionRecord:
        """Parse a stored record; anything malformed is ``INVALID_STORED_DATA``."""
        try:
            obj = _check_fields(data, _RECORD_FIELDS)
            key = _field(obj, "key", (str,))
            wallet_json = _field(obj, "wallet", (dict,))
            session_json = _field(obj, "session", (dict, type(None)))
            successor_json = _field(obj, "successor", (dict, type(None)), default=None)
            return cls(
                key=key,
                wallet=WalletData.from_json(wallet_json),
                session=None if session_json is None else SessionKeyData.from_json(session_json),
                seen_registered=_field(obj, "seenRegistered", (bool,), default=False),
                registered_max_calls=_field(
                    obj, "registeredMaxCalls", (int, type(None)), default=None
                ),
                registered_allowed_entrypoints=_field(
                    obj, "registeredAllowedEntrypoints", (list,), default=[]
                ),
                updated_at=_field(obj, "updatedAt", (int, float), default=0.0),
                successor=(
                    None if successor_json is None else SessionKeyData.from_json(successor_json)
                ),
                retiring=_field(obj, "retiring", (list,), default=[]),
            )
        except _Corrupt as exc:
            raise _stored_error("session record", str(exc)) from None
        except ChipiSessionError as exc:
            raise _stored_error("session record", exc.message) from None


def _check_record(record: object) -> SessionRecord:
    if not isinstance(record, SessionRecord):
        raise _invalid("record must be a SessionRecord")
    return record
