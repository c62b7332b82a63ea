"""``SqliteStore``: SQLite (stdlib) in WAL mode, many sessions and processes on one host."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any, Final

from ..errors import ChipiSessionError, ErrorCode
from .codec import (
    STORE_FORMAT,
    STORE_VERSION,
    _check_number,
    _check_text,
    _check_timeout,
    _check_ttl,
    _closed,
    _invalid,
    _show,
    _stored_error,
)
from .files import _fsync_dir, _io_error, _store_file
from .journal import JournalEntry
from .leases import _renew
from .sql import SqlStatements, SqlStore

__all__ = ["SqliteStore"]


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
_SQL: Final = SqlStatements(
    load="SELECT json FROM sessions WHERE key = ?",
    load_all="SELECT key, json FROM sessions ORDER BY rowid",
    save="INSERT INTO sessions (key, json) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET json = excluded.json",
    delete=("DELETE FROM sessions WHERE key = ?", "DELETE FROM journal WHERE key = ?"),
    journal_key="SELECT key FROM journal WHERE entry_id = ?",
    journal_update="UPDATE journal SET json = ? WHERE entry_id = ?",
    journal_remove="DELETE FROM journal WHERE entry_id = ?",
    journal_all="SELECT entry_id, key, json FROM journal ORDER BY seq",
    journal_of_key="SELECT entry_id, key, json FROM journal WHERE key = ? ORDER BY seq",
    # BEGIN IMMEDIATE holds the database's write lock: a plain read is already exclusive
    lease=_LEASE_QUERY,
    lease_to_write=_LEASE_QUERY,
    lease_to_fence=_LEASE_QUERY,
    put_lease="INSERT OR REPLACE INTO leases (key, owner, token, expires_at)"
    " VALUES (:key, :owner, :token, :expires_at)",
)


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [("format", STORE_FORMAT), ("version", str(STORE_VERSION))],
    )


class SqliteStore(SqlStore):
    """SQLite (stdlib) in WAL mode with ``synchronous=FULL``: many sessions, many processes.

    Every mutation is one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock serialises it
    against every other connection, in this process or another on the same host, so lease
    acquisition and fenced writes are correct across processes (not across hosts: SQLite's
    locks need a local filesystem). One connection per store, guarded by a lock, is shared by
    threads. Records are parsed when read, so a damaged row fails that read with
    ``INVALID_STORED_DATA`` and never hides the other rows. The protocol's flows are
    ``SqlStore``'s (stores/sql.py); this class holds SQLite's SQL and plumbing.
    """

    _SQL = _SQL

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
            raise _stored_error(f"session store {self._path}", f"{detail}: not a SQLite database")

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

    def _where(self, what: str, key: object) -> str:
        return f"session store {self._path}: {what} {_show(key)}"

    def _insert_entry(self, cur: Any, entry: JournalEntry, text: str) -> bool:
        if cur.execute("SELECT 1 FROM journal WHERE entry_id = ?", (entry.entry_id,)).fetchone():
            return False
        cur.execute(
            "INSERT INTO journal (entry_id, key, seq, json)"
            " VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal), ?)",
            (entry.entry_id, entry.key, text),
        )
        return True

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        with self._transaction("renew a lease") as conn:
            lease = _renew(self._lease_row(conn, key, _LEASE_QUERY), owner, ttl, at)
            if lease is None:
                return False
            self._put_lease(conn, key, lease)
            return True

    # -- lifecycle

    def _disconnect(self) -> None:
        self._conn.close()
