"""Crash-safe persistence for bots: session records, an in-flight journal and leases.

A bot that runs many sessions must survive a crash at any instant without losing a session key,
spending a call twice or forgetting a transaction it sent. Three pieces make that possible:

* **Records** (:class:`SessionRecord`): per hub slot (``key``), the wallet and the current session,
  both as they are stored anyway (private keys are vault blobs), plus what the process learned
  about the chain (``seen_registered`` tells "revoked" from "never registered" after a restart).
* **The journal** (:class:`JournalEntry`): a write is appended *before* its request is sent and
  removed once its outcome is known. After a crash every pending entry is resolved from the chain
  (the SNIP-9 nonce is single-use, so "is it used?" says exactly whether it executed).
* **Leases**: a session's call budget lives in one process at a time. ``acquire_lease`` returns a
  fencing token that grows with every new holder; passing it as ``fencing_token=`` to a mutation
  makes the store refuse writes from a holder that lost the lease (see ``docs/scaling.md``).

Three implementations of the :class:`SessionStore` protocol: :class:`MemoryStore` (tests),
:class:`JsonFileStore` (one small bot process: one JSON file rewritten atomically) and
:class:`SqliteStore` (many sessions, several processes on one host). They never log, and error
messages name the problem (a field, a key) but never echo record contents.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    NoReturn,
    Protocol,
    Self,
    TypeVar,
    runtime_checkable,
)

import attrs

from .errors import ChipiSessionError, ErrorCode
from .felts import U32_MAX, U64_MAX, parse_felt, parse_felts, to_hex
from .types import SessionKeyData, WalletData
from .validate import check_number, check_path, describe

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from .types import SubmitInfo

__all__ = [
    "STORE_FORMAT",
    "STORE_VERSION",
    "JOURNAL_ACTIONS",
    "SessionRecord",
    "JournalEntry",
    "Lease",
    "LeaseLostError",
    "SessionStore",
    "MemoryStore",
    "JsonFileStore",
    "SqliteStore",
]

STORE_FORMAT: Final = "chipi-session-store"
STORE_VERSION: Final = 1
#: The writes that are journaled (the owner- and session-signed actions of the engine).
JOURNAL_ACTIONS: Final = frozenset(
    {"register", "revoke", "execute", "set_spending_policy", "remove_spending_policy"}
)

_T = TypeVar("_T")


# -- validation ----------------------------------------------------------------------------


def _invalid(message: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_INPUT, message)


def _show(value: object) -> str:
    """A short repr for error messages (keys and field names only, never record contents)."""
    return describe(value)


def _check_text(value: object, what: str) -> str:
    """A non-empty str that every backend can store (UTF-8 encodable, no NUL)."""
    if not isinstance(value, str) or not value:
        raise _invalid(f"{what} must be a non-empty str")
    if "\x00" in value:
        raise _invalid(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"{what} is not valid Unicode text") from None
    return value


def _check_number(value: object, what: str) -> float:
    return check_number(value, what)


def _check_ttl(value: object) -> float:
    ttl = _check_number(value, "ttl_seconds")
    if ttl <= 0:
        raise _invalid("ttl_seconds must be positive")
    return ttl


def _check_timeout(value: object) -> float:
    timeout = _check_number(value, "timeout")
    if timeout < 0:
        raise _invalid("timeout must not be negative")
    return timeout


def _check_fence(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("fencing_token must be a positive int (from acquire_lease) or None")
    return value


def _v_text(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    _check_text(value, attribute.name)


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


def _v_action(_: object, __: attrs.Attribute[str], value: object) -> None:
    if value not in JOURNAL_ACTIONS:
        raise _invalid(f"action must be one of {sorted(JOURNAL_ACTIONS)}")


def _to_entrypoints(value: Iterable[object]) -> tuple[int, ...]:
    return parse_felts(value, "registered_allowed_entrypoints")


def _to_public_keys(value: Iterable[object]) -> tuple[int, ...]:
    return parse_felts(value, "retiring")


def _to_updated_at(value: object) -> float:
    return _check_number(value, "updated_at")


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


# -- stored JSON ---------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-finite number {name}")


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate JSON fields mean a damaged or hand-edited file: refuse, do not pick one."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate field {_show(name)}")
        out[name] = value
    return out


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_fields)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


class _Corrupt(Exception):
    """Internal: a stored value is malformed; turned into INVALID_STORED_DATA with context."""


def _field(
    data: Mapping[str, Any], name: str, kinds: tuple[type, ...], *, default: Any = ...
) -> Any:
    if name not in data:
        if default is ...:
            raise _Corrupt(f"missing field {name!r}")
        return default
    value = data[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _Corrupt(f"field {name!r} has the wrong type")
    return value


def _check_fields(data: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise _Corrupt("expected an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        # Rewriting would drop a field we do not understand: refuse instead.
        raise _Corrupt(f"unknown field {_show(unknown[0])}")
    return data


def _stored_error(where: str, detail: str) -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.INVALID_STORED_DATA, f"{where}: {detail}")


# -- value types ---------------------------------------------------------------------------

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


@attrs.frozen
class Lease:
    """The lease row of one key. ``owner is None`` once released; the row (and its ``token``)
    stays so the next holder's token is still larger."""

    owner: str | None
    token: int
    expires_at: float

    def held_by(self, owner: str, now: float) -> bool:
        """Held by ``owner`` at ``now`` (the lease ends *at* ``expires_at``)."""
        return self.owner == owner and now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "token": self.token, "expiresAt": self.expires_at}

    @classmethod
    def from_json(cls, data: object) -> Lease:
        try:
            obj = _check_fields(data, frozenset({"owner", "token", "expiresAt"}))
            owner = _field(obj, "owner", (str, type(None)))
            token = _field(obj, "token", (int,))
            expires_at = _field(obj, "expiresAt", (int, float))
            return cls._checked(owner, token, expires_at)
        except _Corrupt as exc:
            raise _stored_error("lease", str(exc)) from None

    @classmethod
    def _checked(cls, owner: object, token: object, expires_at: object) -> Lease:
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise _Corrupt("owner must be a non-empty string or null")
        if isinstance(token, bool) or not isinstance(token, int) or token < 1:
            raise _Corrupt("token must be a positive integer")
        if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
            raise _Corrupt("expiresAt must be a number")
        if not math.isfinite(expires_at):
            raise _Corrupt("expiresAt must be finite")
        return cls(owner, token, float(expires_at))


class LeaseLostError(ChipiSessionError):
    """A mutation carried a fencing token that is no longer the key's current lease.

    Another owner acquired the key (or this owner released it): the caller must stop acting on
    this session. Code ``ACTION_IN_PROGRESS`` (another process is acting on it), not retryable.
    """


def _lease_lost(key: str, token: int) -> LeaseLostError:
    return LeaseLostError(
        ErrorCode.ACTION_IN_PROGRESS,
        f"fencing token {token} for session {_show(key)} is stale: another owner holds the lease",
        False,
    )


# -- the lease rules (shared by every store, so they cannot drift apart) -------------------


def _acquire(current: Lease | None, owner: str, ttl: float, now: float) -> Lease | None:
    """The new lease row, or None if another owner holds an unexpired lease.

    Re-acquiring a lease one still holds keeps its token; any other grant gets a larger token.
    Expiry never moves backwards (a renewal with an older ``now`` cannot shorten a lease).
    """
    if current is not None and current.owner is not None and now < current.expires_at:
        if current.owner != owner:
            return None
        return Lease(owner, current.token, max(current.expires_at, now + ttl))
    token = 1 if current is None else current.token + 1
    return Lease(owner, token, now + ttl)


def _renew(current: Lease | None, owner: str, ttl: float, now: float) -> Lease | None:
    """Extended lease, or None if ``owner`` does not hold an unexpired lease (then it must
    ``acquire_lease`` again and take the new token: someone may have held it in between)."""
    if current is None or not current.held_by(owner, now):
        return None
    return Lease(owner, current.token, max(current.expires_at, now + ttl))


def _release(current: Lease | None, owner: str) -> Lease | None:
    if current is None or current.owner != owner:
        return None
    return Lease(None, current.token, 0.0)


def _fence_ok(current: Lease | None, token: int | None) -> bool:
    """Classic fencing: a write with a token passes only while that token is the key's current,
    unreleased lease. Expiry alone does not fail it: until someone else acquires the key,
    nobody else can act on it, and acquiring bumps the token."""
    return token is None or (
        current is not None and current.owner is not None and current.token == token
    )


# -- the protocol --------------------------------------------------------------------------


@runtime_checkable
class SessionStore(Protocol):
    """Synchronous, thread-safe persistence for a SessionHub (called from a worker thread).

    Mutations are atomic and durable when they return. Those that take ``fencing_token`` refuse
    (:class:`LeaseLostError`) when it is not the key's current lease token; ``None`` skips the
    check. Malformed stored data raises ``INVALID_STORED_DATA``; bad arguments ``INVALID_INPUT``;
    I/O failures ``BACKEND_UNAVAILABLE`` (retryable: a failed mutation changed nothing);
    any call after :meth:`close` raises ``CLOSED``.
    """

    def load(self, key: str) -> SessionRecord | None: ...

    def load_all(self) -> list[SessionRecord]: ...

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None: ...

    def delete(self, key: str, *, fencing_token: int | None = None) -> None: ...

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None: ...

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None: ...

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None: ...

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]: ...

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None: ...

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool: ...

    def release_lease(self, key: str, owner: str) -> None: ...

    def close(self) -> None: ...


def _check_record(record: object) -> SessionRecord:
    if not isinstance(record, SessionRecord):
        raise _invalid("record must be a SessionRecord")
    return record


def _check_entry(entry: object) -> JournalEntry:
    if not isinstance(entry, JournalEntry):
        raise _invalid("entry must be a JournalEntry")
    return entry


def _closed() -> ChipiSessionError:
    return ChipiSessionError(ErrorCode.CLOSED, "the session store is closed")


def _no_entry(entry_id: str) -> ChipiSessionError:
    return _invalid(f"no pending journal entry {_show(entry_id)}")


def _key_changed() -> ChipiSessionError:
    return _invalid("journal_update cannot move an entry to another key")


def _duplicate_entry(entry_id: str) -> ChipiSessionError:
    return _invalid(f"journal entry {_show(entry_id)} already exists")


# -- in-memory state (MemoryStore and JsonFileStore) ---------------------------------------


class _State:
    """Plain dicts; ``journal`` keeps insertion order, which is the append order."""

    __slots__ = ("sessions", "journal", "leases")

    def __init__(
        self,
        sessions: dict[str, SessionRecord] | None = None,
        journal: dict[str, JournalEntry] | None = None,
        leases: dict[str, Lease] | None = None,
    ) -> None:
        self.sessions: dict[str, SessionRecord] = {} if sessions is None else sessions
        self.journal: dict[str, JournalEntry] = {} if journal is None else journal
        self.leases: dict[str, Lease] = {} if leases is None else leases

    def copy(self) -> _State:
        # Values are immutable, so shallow copies are independent snapshots.
        return _State(dict(self.sessions), dict(self.journal), dict(self.leases))

    def fence(self, key: str, token: int | None) -> None:
        if not _fence_ok(self.leases.get(key), token):
            assert token is not None
            raise _lease_lost(key, token)


class _DictStore:
    """The store logic over a :class:`_State`; subclasses decide how a mutation is committed.

    Every mutation is a function of the state that validates before it changes anything and
    returns ``(result, changed)``.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._closed = False

    def _mutate(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        with self._lock:
            if self._closed:
                raise _closed()
            return self._commit(op)

    def _commit(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        return op(self._state)[0]

    def _read(self) -> _State:
        if self._closed:
            raise _closed()
        return self._state

    # -- records

    def load(self, key: str) -> SessionRecord | None:
        _check_text(key, "key")
        with self._lock:
            return self._read().sessions.get(key)

    def load_all(self) -> list[SessionRecord]:
        with self._lock:
            return list(self._read().sessions.values())

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None:
        _check_record(record)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(record.key, fence)
            state.sessions[record.key] = record
            return None, True

        self._mutate(op)

    def delete(self, key: str, *, fencing_token: int | None = None) -> None:
        _check_text(key, "key")
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(key, fence)
            doomed = [i for i, e in state.journal.items() if e.key == key]
            changed = state.sessions.pop(key, None) is not None or bool(doomed)
            for entry_id in doomed:
                del state.journal[entry_id]
            return None, changed

        self._mutate(op)

    # -- journal

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(entry.key, fence)
            if entry.entry_id in state.journal:
                raise _duplicate_entry(entry.entry_id)
            state.journal[entry.entry_id] = entry
            return None, True

        self._mutate(op)

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            old = state.journal.get(entry.entry_id)
            if old is None:
                raise _no_entry(entry.entry_id)
            if old.key != entry.key:
                raise _key_changed()
            state.fence(entry.key, fence)
            state.journal[entry.entry_id] = entry  # an existing dict key keeps its position
            return None, old != entry

        self._mutate(op)

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        _check_text(entry_id, "entry_id")
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            old = state.journal.get(entry_id)
            if old is None:
                return None, False
            state.fence(old.key, fence)
            del state.journal[entry_id]
            return None, True

        self._mutate(op)

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]:
        if key is not None:
            _check_text(key, "key")
        with self._lock:
            entries = self._read().journal.values()
            return [e for e in entries if key is None or e.key == key]

    # -- leases

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")

        def op(state: _State) -> tuple[int | None, bool]:
            lease = _acquire(state.leases.get(key), owner, ttl, at)
            if lease is None:
                return None, False
            state.leases[key] = lease
            return lease.token, True

        return self._mutate(op)

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")

        def op(state: _State) -> tuple[bool, bool]:
            lease = _renew(state.leases.get(key), owner, ttl, at)
            if lease is None:
                return False, False
            state.leases[key] = lease
            return True, True

        return self._mutate(op)

    def release_lease(self, key: str, owner: str) -> None:
        _check_text(key, "key")
        _check_text(owner, "owner")

        def op(state: _State) -> tuple[None, bool]:
            lease = _release(state.leases.get(key), owner)
            if lease is None:
                return None, False
            state.leases[key] = lease
            return None, True

        self._mutate(op)

    def get_lease(self, key: str) -> Lease | None:
        """The key's lease row (for diagnostics and tests; not part of the protocol)."""
        _check_text(key, "key")
        with self._lock:
            return self._read().leases.get(key)

    # -- lifecycle

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryStore(_DictStore):
    """Dicts in one process: for tests and for bots that need no persistence."""

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._state.sessions)} sessions>)"


# -- JsonFileStore -------------------------------------------------------------------------


def _io_error(doing: str, path: str, exc: OSError) -> ChipiSessionError:
    reason = exc.strerror or type(exc).__name__
    return ChipiSessionError(
        ErrorCode.BACKEND_UNAVAILABLE, f"session store {path}: cannot {doing}: {reason}", True
    )


def _store_file(path: object, what: str) -> str:
    """The absolute path of a store's file: a valid path that is not a directory."""
    absolute = os.path.abspath(check_path(path, what))
    if os.path.isdir(absolute):
        raise _invalid(f"{what} {absolute} is a directory, not a file")
    return absolute


def _fsync_dir(directory: str) -> None:
    """Make a rename durable: the directory entry lives in the directory's own blocks."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_document(state: _State) -> bytes:
    doc = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "sessions": {key: record.to_json() for key, record in state.sessions.items()},
        "journal": [entry.to_json() for entry in state.journal.values()],
        "leases": {key: lease.to_json() for key, lease in state.leases.items()},
    }
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")


_DOC_FIELDS: Final = frozenset({"format", "version", "sessions", "journal", "leases"})


def _decode_document(raw: bytes, where: str) -> _State:
    """Parse and validate a whole document; the first problem found is reported."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _stored_error(where, "not UTF-8 text (not a session store file?)") from None
    try:
        doc = _loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _stored_error(where, f"not valid JSON ({detail}; truncated?)") from None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise _stored_error(where, f"not a {STORE_FORMAT} document")
    version = doc.get("version")
    if version != STORE_VERSION or isinstance(version, bool):
        shown = str(version) if isinstance(version, int) else "(not a number)"
        raise _stored_error(where, f"unsupported store version {shown}, expected {STORE_VERSION}")
    unknown = sorted(set(doc) - _DOC_FIELDS)
    if unknown:
        raise _stored_error(where, f"unknown top-level field {_show(unknown[0])}")
    sessions, journal, leases = doc.get("sessions"), doc.get("journal"), doc.get("leases")
    if not isinstance(sessions, dict):
        raise _stored_error(where, "'sessions' must be an object")
    if not isinstance(journal, list):
        raise _stored_error(where, "'journal' must be a list")
    if not isinstance(leases, dict):
        raise _stored_error(where, "'leases' must be an object")
    state = _State()
    for key, data in sessions.items():
        record = _parse(SessionRecord.from_json, data, f"{where}: session {_show(key)}")
        if record.key != key:
            raise _stored_error(where, f"session {_show(key)}: the record's key differs")
        state.sessions[key] = record
    for index, data in enumerate(journal):
        entry = _parse(JournalEntry.from_json, data, f"{where}: journal[{index}]")
        if entry.entry_id in state.journal:
            raise _stored_error(where, f"journal[{index}]: duplicate entry id")
        state.journal[entry.entry_id] = entry
    for key, data in leases.items():
        if not isinstance(key, str) or not key:
            raise _stored_error(where, "a lease has an empty key")
        try:
            state.leases[key] = Lease.from_json(data)
        except ChipiSessionError as exc:
            raise _stored_error(where, f"leases[{_show(key)}]: {exc.message}") from None
    return state


def _parse(from_json: Callable[[Mapping[str, Any]], _T], data: object, where: str) -> _T:
    """A stored record or journal entry, its errors prefixed with where it was found."""
    if not isinstance(data, Mapping):
        raise _stored_error(where, "expected an object")
    try:
        return from_json(data)
    except ChipiSessionError as exc:
        raise _stored_error(where, exc.message) from None


class JsonFileStore(_DictStore):
    """One JSON document, rewritten atomically on every mutation; for a single bot process.

    Each mutation writes the whole document to a temporary file in the same directory (mode
    0600), fsyncs it, ``os.replace``-s it over the store and fsyncs the directory: after a crash
    the file holds either the old or the new document, never a mix. The in-memory copy changes
    only once the file has. Cost grows with the store (every write rewrites it): fine for
    hundreds of sessions; use :class:`SqliteStore` beyond that.

    One user at a time: an exclusive lock on ``<path>.lock`` (POSIX ``flock``) makes a second
    ``JsonFileStore`` on the same file fail. Leases therefore only arbitrate between the threads
    and tasks of one process; use :class:`SqliteStore` to share sessions between processes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._path = _store_file(path, "JsonFileStore path")
        self._dir, self._name = os.path.split(self._path)
        self._lock_fd = self._take_file_lock()
        try:
            self._remove_stale_temps()
            raw = self._read_file()
            if raw is None:
                self._write(self._state)  # create it now: fail early if the directory is bad
            else:
                self._state = _decode_document(raw, f"session store {self._path}")
        except BaseException:
            self._drop_file_lock()
            raise

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"JsonFileStore({self._path!r})"

    def _take_file_lock(self) -> int | None:
        if sys.platform == "win32":  # pragma: no cover - no flock: documented single-process
            return None
        lock_path = self._path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _io_error("create its lock file", self._path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"session store {self._path} is already open (in this or another process); "
                "a JsonFileStore has one user at a time: use SqliteStore to share sessions",
            ) from None
        return fd

    def _drop_file_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def _temp_prefix(self) -> str:
        return f".{self._name}.tmp-"

    def _remove_stale_temps(self) -> None:
        """Temporary files left by a crash mid-write hold nothing the store still needs."""
        if self._lock_fd is None:  # pragma: no cover - without a lock, they may be another's
            return
        prefix = self._temp_prefix()
        with contextlib.suppress(OSError):
            for name in os.listdir(self._dir):
                if name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self._dir, name))

    def _read_file(self) -> bytes | None:
        try:
            fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error("open it", self._path, exc) from exc
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise _io_error("read it", self._path, exc) from exc
        finally:
            os.close(fd)

    def _write(self, state: _State) -> None:
        data = _encode_document(state)
        tmp = os.path.join(self._dir, self._temp_prefix() + secrets.token_hex(8))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o600)
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
                view = memoryview(data)
                while view:  # os.write: no user-space buffer to flush, short writes retried
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _io_error("write it", self._path, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            _fsync_dir(self._dir)
        except OSError as exc:
            # The new file is in place but maybe not durable; memory keeps the old state and the
            # next successful write rewrites everything from it.
            raise _io_error("sync its directory", self._path, exc) from exc

    def _commit(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        new = self._state.copy()
        result, changed = op(new)
        if changed:
            self._write(new)
            self._state = new
        return result

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._drop_file_lock()


# -- SqliteStore ---------------------------------------------------------------------------

_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26

_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sessions (key TEXT PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE journal (entry_id TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " seq INTEGER NOT NULL UNIQUE, json TEXT NOT NULL)",
    "CREATE INDEX journal_by_key ON journal (key, seq)",
    "CREATE TABLE leases (key TEXT PRIMARY KEY, owner TEXT, token INTEGER NOT NULL,"
    " expires_at REAL NOT NULL)",
)
_TABLES: Final = frozenset({"meta", "sessions", "journal", "leases"})
#: errno values of a filesystem that cannot make hard links (then a new store is renamed in).
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
)
#: The first 16 bytes of every SQLite 3 database file.
_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_LEASE_QUERY: Final = "SELECT owner, token, expires_at FROM leases WHERE key = ?"


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [("format", STORE_FORMAT), ("version", str(STORE_VERSION))],
    )


class SqliteStore:
    """SQLite (stdlib) in WAL mode with ``synchronous=FULL``: many sessions, many processes.

    Every mutation is one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock serialises it
    against every other connection, in this process or another on the same host, so lease
    acquisition and fenced writes are correct across processes (not across hosts: SQLite's
    locks need a local filesystem). One connection per store, guarded by a lock, is shared by
    threads. Records are parsed when read, so a damaged row fails that read with
    ``INVALID_STORED_DATA`` and never hides the other rows.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        """``timeout``: seconds to wait for another process's write transaction."""
        if path == ":memory:":
            raise _invalid("SqliteStore needs a file path (use MemoryStore for no file)")
        wait = _check_timeout(timeout)
        self._path = _store_file(path, "SqliteStore path")
        self._lock = threading.RLock()
        self._closed = False
        if not os.path.lexists(self._path):
            self._create_database()
        self._check_header()
        try:
            self._conn = sqlite3.connect(
                self._path,
                timeout=wait,
                isolation_level=None,  # no implicit transactions: each mutation opens its own
                check_same_thread=False,  # shared by threads under self._lock
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "open it") from exc
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r})"

    def _create_database(self) -> None:
        """Build a new store under a temporary name, then link it into place.

        The store's path therefore never names a half-made database: an empty or truncated
        file there is damage (refused by :meth:`_check_header`), never "a store being
        created". The file is 0600 before SQLite writes to it (its -wal/-shm files copy the
        mode). If another process links its new store first, that one is used.
        """
        directory, name = os.path.split(self._path)
        tmp = os.path.join(directory, f".{name}.new-{secrets.token_hex(8)}")
        try:
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
                os.close(fd)
            except OSError as exc:
                raise _io_error("create it", self._path, exc) from exc
            try:
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")  # recorded in the file's header
                    conn.execute("BEGIN IMMEDIATE")
                    _create_schema(conn)
                    conn.execute("COMMIT")
                finally:
                    conn.close()  # checkpoints: the file alone holds the schema
            except sqlite3.Error as exc:
                raise self._error(exc, "create it") from exc
            try:
                try:
                    os.link(tmp, self._path)  # never replaces a store another process made
                except FileExistsError:
                    pass
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    if not os.path.lexists(self._path):  # a filesystem without hard links
                        os.rename(tmp, self._path)
                _fsync_dir(directory)
            except OSError as exc:
                raise _io_error("create it", self._path, exc) from exc
        finally:
            for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)

    def _check_header(self) -> None:
        """SQLite opens an empty (or a 1-byte) file as a new, empty database: refuse it, so a
        truncated store is reported instead of silently replaced by a fresh one."""
        try:
            with open(self._path, "rb") as file:
                header = file.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise _io_error("read it", self._path, exc) from exc
        if header != _SQLITE_HEADER:
            detail = "empty or truncated" if len(header) < len(_SQLITE_HEADER) else "damaged"
            raise _stored_error(
                f"session store {self._path}", f"{detail}: not a SQLite database"
            )

    def _error(self, exc: sqlite3.Error, doing: str) -> ChipiSessionError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return ChipiSessionError(
                ErrorCode.INVALID_STORED_DATA,
                f"session store {self._path}: corrupt or not a SQLite database ({name})",
            )
        return ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE,
            f"session store {self._path}: cannot {doing}: {name}",
            True,
        )

    def _setup(self) -> None:
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise ChipiSessionError(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"session store {self._path}: SQLite refused WAL mode",
                )
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._error(exc, "open it") from exc
        with self._transaction("open it") as conn:
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not tables:  # a valid SQLite file with nothing in it yet
                _create_schema(conn)
                return
            where = f"session store {self._path}"
            if "meta" not in tables:
                raise _stored_error(where, f"not a {STORE_FORMAT} database")
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            if meta.get("format") != STORE_FORMAT:
                raise _stored_error(where, f"not a {STORE_FORMAT} database")
            version = meta.get("version")
            if version != str(STORE_VERSION):
                shown = version if isinstance(version, str) and version.isdigit() else "(bad)"
                raise _stored_error(
                    where, f"unsupported store version {shown}, expected {STORE_VERSION}"
                )
            if not _TABLES <= tables:
                raise _stored_error(where, "tables are missing")

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; any failure rolls everything back."""
        with self._lock:
            if self._closed:
                raise _closed()
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from exc
                raise

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._closed:
                raise _closed()
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read it") from exc

    def _where(self, table: str, key: object) -> str:
        return f"session store {self._path}: {table} {_show(key)}"

    def _record(self, key: object, text: object) -> SessionRecord:
        where = self._where("session", key)
        record = _parse(SessionRecord.from_json, self._json(text, where), where)
        if record.key != key:
            raise _stored_error(where, "the record's key differs")
        return record

    def _entry(self, entry_id: object, key: object, text: object) -> JournalEntry:
        where = self._where("journal entry", entry_id)
        entry = _parse(JournalEntry.from_json, self._json(text, where), where)
        if entry.entry_id != entry_id or entry.key != key:
            raise _stored_error(where, "the entry's id or key differs from its row")
        return entry

    @staticmethod
    def _json(text: object, where: str) -> Any:
        if not isinstance(text, str):
            raise _stored_error(where, "not JSON text")
        try:
            return _loads(text)
        except (ValueError, RecursionError):
            raise _stored_error(where, "not valid JSON") from None

    def _lease(self, key: str, row: Sequence[object] | None) -> Lease | None:
        if row is None:
            return None
        try:
            return Lease._checked(*row)
        except _Corrupt as exc:
            raise _stored_error(self._where("lease", key), str(exc)) from None

    def _lease_row(self, conn: sqlite3.Connection, key: str) -> Lease | None:
        row = conn.execute(_LEASE_QUERY, (key,)).fetchone()
        return self._lease(key, row)

    def _fence(self, conn: sqlite3.Connection, key: str, token: int | None) -> None:
        if token is not None and not _fence_ok(self._lease_row(conn, key), token):
            raise _lease_lost(key, token)

    def _put_lease(self, conn: sqlite3.Connection, key: str, lease: Lease) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO leases (key, owner, token, expires_at) VALUES (?, ?, ?, ?)",
            (key, lease.owner, lease.token, lease.expires_at),
        )

    # -- records

    def load(self, key: str) -> SessionRecord | None:
        _check_text(key, "key")
        rows = self._query("SELECT json FROM sessions WHERE key = ?", (key,))
        return self._record(key, rows[0][0]) if rows else None

    def load_all(self) -> list[SessionRecord]:
        rows = self._query("SELECT key, json FROM sessions ORDER BY rowid")
        return [self._record(key, text) for key, text in rows]

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None:
        _check_record(record)
        fence = _check_fence(fencing_token)
        text = _dumps(record.to_json())
        with self._transaction("save a session") as conn:
            self._fence(conn, record.key, fence)
            conn.execute(
                "INSERT INTO sessions (key, json) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET json = excluded.json",
                (record.key, text),
            )

    def delete(self, key: str, *, fencing_token: int | None = None) -> None:
        _check_text(key, "key")
        fence = _check_fence(fencing_token)
        with self._transaction("delete a session") as conn:
            self._fence(conn, key, fence)
            conn.execute("DELETE FROM sessions WHERE key = ?", (key,))
            conn.execute("DELETE FROM journal WHERE key = ?", (key,))

    # -- journal

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)
        text = _dumps(entry.to_json())
        with self._transaction("append to the journal") as conn:
            self._fence(conn, entry.key, fence)
            exists = conn.execute(
                "SELECT 1 FROM journal WHERE entry_id = ?", (entry.entry_id,)
            ).fetchone()
            if exists is not None:
                raise _duplicate_entry(entry.entry_id)
            conn.execute(
                "INSERT INTO journal (entry_id, key, seq, json)"
                " VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal), ?)",
                (entry.entry_id, entry.key, text),
            )

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)
        text = _dumps(entry.to_json())
        with self._transaction("update the journal") as conn:
            row = conn.execute(
                "SELECT key FROM journal WHERE entry_id = ?", (entry.entry_id,)
            ).fetchone()
            if row is None:
                raise _no_entry(entry.entry_id)
            if row[0] != entry.key:
                raise _key_changed()
            self._fence(conn, entry.key, fence)
            conn.execute("UPDATE journal SET json = ? WHERE entry_id = ?", (text, entry.entry_id))

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        _check_text(entry_id, "entry_id")
        fence = _check_fence(fencing_token)
        with self._transaction("remove a journal entry") as conn:
            row = conn.execute("SELECT key FROM journal WHERE entry_id = ?", (entry_id,)).fetchone()
            if row is None:
                return
            self._fence(conn, row[0], fence)
            conn.execute("DELETE FROM journal WHERE entry_id = ?", (entry_id,))

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]:
        if key is None:
            rows = self._query("SELECT entry_id, key, json FROM journal ORDER BY seq")
        else:
            _check_text(key, "key")
            rows = self._query(
                "SELECT entry_id, key, json FROM journal WHERE key = ? ORDER BY seq", (key,)
            )
        return [self._entry(entry_id, k, text) for entry_id, k, text in rows]

    # -- leases

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        with self._transaction("acquire a lease") as conn:
            lease = _acquire(self._lease_row(conn, key), owner, ttl, at)
            if lease is None:
                return None
            self._put_lease(conn, key, lease)
            return lease.token

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        with self._transaction("renew a lease") as conn:
            lease = _renew(self._lease_row(conn, key), owner, ttl, at)
            if lease is None:
                return False
            self._put_lease(conn, key, lease)
            return True

    def release_lease(self, key: str, owner: str) -> None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        with self._transaction("release a lease") as conn:
            lease = _release(self._lease_row(conn, key), owner)
            if lease is not None:
                self._put_lease(conn, key, lease)

    def get_lease(self, key: str) -> Lease | None:
        """The key's lease row (for diagnostics and tests; not part of the protocol)."""
        _check_text(key, "key")
        rows = self._query(_LEASE_QUERY, (key,))
        return self._lease(key, rows[0] if rows else None)

    # -- lifecycle

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
