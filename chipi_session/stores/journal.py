"""Journal entries: a write recorded before it is sent, removed once its outcome is known.

After a crash every pending entry is resolved from the chain (the SNIP-9 nonce is single-use,
so "is it used?" says exactly whether the write executed). The engine's side of the journal
is chipi_session/journal.py; the hub adapts a store to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..errors import ChipiSessionError
from ..felts import U64_MAX, parse_felt, to_hex
from .codec import (
    _check_fields,
    _check_number,
    _Corrupt,
    _field,
    _invalid,
    _show,
    _stored_error,
    _v_text,
)

if TYPE_CHECKING:
    from ..types import SubmitInfo

__all__ = ["JOURNAL_ACTIONS", "JournalEntry"]

#: The writes that are journaled (the owner- and session-signed actions of the engine).
JOURNAL_ACTIONS: Final = frozenset(
    {"register", "revoke", "execute", "set_spending_policy", "remove_spending_policy"}
)


def _v_action(_: object, __: attrs.Attribute[str], value: object) -> None:
    if value not in JOURNAL_ACTIONS:
        raise _invalid(f"action must be one of {sorted(JOURNAL_ACTIONS)}")


def _to_created_at(value: object) -> float:
    return _check_number(value, "created_at")


def _to_public_key(value: object) -> int:
    return parse_felt(value, "session_public_key")


def _to_outside_nonce(value: object) -> int | None:
    return None if value is None else parse_felt(value, "outside_nonce")


def _to_message_hash(value: object) -> int | None:
    return None if value is None else parse_felt(value, "message_hash")


def _to_optional_u64(value: object) -> int | None:
    if value is None:
        return None
    number = parse_felt(value, "execute_before")
    if number > U64_MAX:
        raise _invalid("execute_before exceeds 2**64-1")
    return number


_ENTRY_FIELDS: Final = frozenset(
    {
        "entryId",
        "key",
        "action",
        "sessionPublicKey",
        "createdAt",
        "outsideNonce",
        "executeBefore",
        "messageHash",
    }
)


@attrs.frozen
class JournalEntry:
    """A write whose outcome is not known yet.

    Appended (durably) *before* the request is sent and removed once the outcome is known, so
    after a crash the hub finds every write that may have reached the chain. Once the backend
    reports the SNIP-9 nonce (``on_submit``), :meth:`with_submit` records it; a used nonce means
    the write executed, an unused one past ``execute_before`` (chain time) means it never will.
    """

    entry_id: str = attrs.field(validator=_v_text)
    key: str = attrs.field(validator=_v_text)
    action: str = attrs.field(validator=_v_action)
    session_public_key: int = attrs.field(converter=_to_public_key)
    created_at: float = attrs.field(converter=_to_created_at)
    outside_nonce: int | None = attrs.field(default=None, converter=_to_outside_nonce)
    execute_before: int | None = attrs.field(default=None, converter=_to_optional_u64)
    message_hash: int | None = attrs.field(default=None, converter=_to_message_hash)

    @classmethod
    def new(
        cls, key: str, action: str, session_public_key: int, *, created_at: float
    ) -> JournalEntry:
        """A fresh entry with a random ``entry_id`` (uuid4 hex)."""
        return cls(uuid.uuid4().hex, key, action, session_public_key, created_at)

    def with_submit(self, info: SubmitInfo) -> JournalEntry:
        """This entry plus what the backend reported right before sending."""
        return attrs.evolve(
            self,
            outside_nonce=info.outside_nonce,
            execute_before=info.execute_before,
            message_hash=info.message_hash,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "entryId": self.entry_id,
            "key": self.key,
            "action": self.action,
            "sessionPublicKey": to_hex(self.session_public_key),
            "createdAt": self.created_at,
            "outsideNonce": None if self.outside_nonce is None else to_hex(self.outside_nonce),
            "executeBefore": self.execute_before,
            "messageHash": None if self.message_hash is None else to_hex(self.message_hash),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalEntry:
        """Parse a stored entry; anything malformed is ``INVALID_STORED_DATA``."""
        try:
            obj = _check_fields(data, _ENTRY_FIELDS)
            felt_or_none = (str, type(None))
            return cls(
                entry_id=_field(obj, "entryId", (str,)),
                key=_field(obj, "key", (str,)),
                action=_field(obj, "action", (str,)),
                session_public_key=_field(obj, "sessionPublicKey", (str,)),
                created_at=_field(obj, "createdAt", (int, float)),
                outside_nonce=_field(obj, "outsideNonce", felt_or_none, default=None),
                execute_before=_field(obj, "executeBefore", (int, type(None)), default=None),
                message_hash=_field(obj, "messageHash", felt_or_none, default=None),
            )
        except _Corrupt as exc:
            raise _stored_error("journal entry", str(exc)) from None
        except ChipiSessionError as exc:
            raise _stored_error("journal entry", exc.message) from None


def _check_entry(entry: object) -> JournalEntry:
    if not isinstance(entry, JournalEntry):
        raise _invalid("entry must be a JournalEntry")
    return entry


def _no_entry(entry_id: str) -> ChipiSessionError:
    return _invalid(f"no pending journal entry {_show(entry_id)}")


def _key_changed() -> ChipiSessionError:
    return _invalid("journal_update cannot move an entry to another key")


def _duplicate_entry(entry_id: str) -> ChipiSessionError:
    return _invalid(f"journal entry {_show(entry_id)} already exists")
