"""What ``SqliteStore`` and ``PostgresStore`` share: the ``SessionStore`` protocol over SQL.

Both stores keep the same three tables (records, journal, leases) and follow the same rules:
arguments are checked before a transaction starts; every mutation is one transaction; a fenced
write reads the key's lease row inside that transaction and is refused there
(``leases._fence_ok``), so it lands before a new holder's acquisition or not at all; stored
JSON is parsed when read, so a damaged row fails that read only (``INVALID_STORED_DATA``, never
echoing the row). Those flows are written once here (:class:`SqlStore`); each store supplies
its SQL (:class:`SqlStatements`: table names, placeholders, which reads lock the lease row)
and its plumbing — ``_transaction`` (yielding an object whose ``execute(sql, params)``
returns a cursor), ``_query``, ``_where`` (how errors name a row), ``_insert_entry`` (a new
journal row, or False if its id is taken). The lease rules themselves are in ``leases``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Self

import attrs

from .codec import (
    _check_fence,
    _check_number,
    _check_text,
    _check_ttl,
    _Corrupt,
    _dumps,
    _loads,
    _parse,
    _stored_error,
)
from .journal import JournalEntry, _check_entry, _duplicate_entry, _key_changed, _no_entry
from .leases import Lease, _acquire, _fence_ok, _lease_lost, _release, _row_lease
from .records import SessionRecord, _check_record

__all__ = ["SqlStatements", "SqlStore"]


@attrs.frozen
class SqlStatements:
    """One store's SQL, in its driver's placeholder style. Positional parameters are listed
    after each field; ``put_lease`` takes named ones (``key``, ``owner``, ``token``,
    ``expires_at``)."""

    load: str  #: (key) -> json
    load_all: str  #: () -> key, json
    save: str  #: (key, json), an upsert
    delete: tuple[str, ...]  #: (key) each: the record and its journal
    journal_key: str  #: (entry_id) -> key, locking the row where the database can
    journal_update: str  #: (json, entry_id)
    journal_remove: str  #: (entry_id)
    journal_all: str  #: () -> entry_id, key, json, in append order
    journal_of_key: str  #: (key) -> entry_id, key, json, in append order
    lease: str  #: (key) -> owner, token, expires_at
    lease_to_write: str  #: ``lease`` locking the row against other writers of it
    lease_to_fence: str  #: ``lease`` as a fenced write reads it
    put_lease: str  #: named parameters
    #: (key): run before an acquisition reads the row, so that a first acquisition has a row
    #: to lock (a placeholder with token 0, read as "no lease"); None where not needed
    lease_placeholder: str | None = None


class SqlStore(abc.ABC):
    """The ``SessionStore`` protocol over a SQL database (see the module docstring)."""

    _SQL: ClassVar[SqlStatements]
    #: set by the store's constructor: guards ``close`` (and whatever else the store needs)
    _lock: AbstractContextManager[Any]
    _closed: bool

    # -- what a store supplies

    @abc.abstractmethod
    def _transaction(self, doing: str) -> AbstractContextManager[Any]:
        """One transaction (committed on success, rolled back on any error); ``doing`` names
        it in a ``BACKEND_UNAVAILABLE`` error."""

    @abc.abstractmethod
    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read outside a mutation."""

    @abc.abstractmethod
    def _where(self, what: str, key: object) -> str:
        """How an error names a stored row (``what``: session, journal entry, lease)."""

    @abc.abstractmethod
    def _insert_entry(self, cur: Any, entry: JournalEntry, text: str) -> bool:
        """Append ``entry`` in the open transaction; False if its id is already there."""

    # -- rows

    @staticmethod
    def _json(text: object, where: str) -> Any:
        if not isinstance(text, str):
            raise _stored_error(where, "not JSON text")
        try:
            return _loads(text)
        except (ValueError, RecursionError):
            raise _stored_error(where, "not valid JSON") from None

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

    def _lease(self, key: str, row: Sequence[object] | None) -> Lease | None:
        if row is None:
            return None
        if self._SQL.lease_placeholder is not None and row[1] == 0:
            return None  # the placeholder of a first acquisition
        try:
            return _row_lease(*row)
        except _Corrupt as exc:
            raise _stored_error(self._where("lease", key), str(exc)) from None

    def _lease_row(self, cur: Any, key: str, sql: str) -> Lease | None:
        return self._lease(key, cur.execute(sql, (key,)).fetchone())

    def _fence(self, cur: Any, key: str, token: int | None) -> None:
        if token is not None and not _fence_ok(
            self._lease_row(cur, key, self._SQL.lease_to_fence), token
        ):
            raise _lease_lost(key, token)

    def _put_lease(self, cur: Any, key: str, lease: Lease) -> None:
        cur.execute(
            self._SQL.put_lease,
            {
                "key": key,
                "owner": lease.owner,
                "token": lease.token,
                "expires_at": lease.expires_at,
            },
        )

    # -- records

    def load(self, key: str) -> SessionRecord | None:
        _check_text(key, "key")
        rows = self._query(self._SQL.load, (key,))
        return self._record(key, rows[0][0]) if rows else None

    def load_all(self) -> list[SessionRecord]:
        return [self._record(key, text) for key, text in self._query(self._SQL.load_all)]

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None:
        _check_record(record)
        fence = _check_fence(fencing_token)
        text = _dumps(record.to_json())
        with self._transaction("save a session") as cur:
            self._fence(cur, record.key, fence)
            cur.execute(self._SQL.save, (record.key, text))

    def delete(self, key: str, *, fencing_token: int | None = None) -> None:
        _check_text(key, "key")
        fence = _check_fence(fencing_token)
        with self._transaction("delete a session") as cur:
            self._fence(cur, key, fence)
            for statement in self._SQL.delete:
                cur.execute(statement, (key,))

    # -- journal

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)
        text = _dumps(entry.to_json())
        with self._transaction("append to the journal") as cur:
            self._fence(cur, entry.key, fence)
            if not self._insert_entry(cur, entry, text):
                raise _duplicate_entry(entry.entry_id)

    def _journal_key(self, cur: Any, entry_id: str) -> str | None:
        row = cur.execute(self._SQL.journal_key, (entry_id,)).fetchone()
        return None if row is None else str(row[0])

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)
        text = _dumps(entry.to_json())
        with self._transaction("update the journal") as cur:
            key = self._journal_key(cur, entry.entry_id)
            if key is None:
                raise _no_entry(entry.entry_id)
            if key != entry.key:
                raise _key_changed()
            self._fence(cur, entry.key, fence)
            cur.execute(self._SQL.journal_update, (text, entry.entry_id))

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        _check_text(entry_id, "entry_id")
        fence = _check_fence(fencing_token)
        with self._transaction("remove a journal entry") as cur:
            key = self._journal_key(cur, entry_id)
            if key is None:
                return
            self._fence(cur, key, fence)
            cur.execute(self._SQL.journal_remove, (entry_id,))

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]:
        if key is None:
            rows = self._query(self._SQL.journal_all)
        else:
            _check_text(key, "key")
            rows = self._query(self._SQL.journal_of_key, (key,))
        return [self._entry(entry_id, k, text) for entry_id, k, text in rows]

    # -- leases

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        with self._transaction("acquire a lease") as cur:
            if self._SQL.lease_placeholder is not None:
                cur.execute(self._SQL.lease_placeholder, (key,))
            lease = _acquire(self._lease_row(cur, key, self._SQL.lease_to_write), owner, ttl, at)
            if lease is None:
                return None
            self._put_lease(cur, key, lease)
            return lease.token

    def release_lease(self, key: str, owner: str) -> None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        with self._transaction("release a lease") as cur:
            lease = _release(self._lease_row(cur, key, self._SQL.lease_to_write), owner)
            if lease is not None:
                self._put_lease(cur, key, lease)

    def get_lease(self, key: str) -> Lease | None:
        """The key's lease row (for diagnostics and tests; not part of the protocol)."""
        _check_text(key, "key")
        rows = self._query(self._SQL.lease, (key,))
        return self._lease(key, rows[0] if rows else None)

    # -- lifecycle

    @abc.abstractmethod
    def _disconnect(self) -> None:
        """Close the connection (or the pool); called once, under ``_lock``."""

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._disconnect()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
