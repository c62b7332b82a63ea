"""``PostgresStore``: the :class:`~chipi_session.stores.protocol.SessionStore` protocol on PostgreSQL.

For a fleet of bot processes on several hosts (``docs/scaling.md``, ``docs/operations.md``):
the same records, journal, leases and fencing tokens as ``SqliteStore``, on the database such
teams already run. Needs the ``postgres`` extra (``pip install 'chipi-session[postgres]'``).

* The sync psycopg 3 driver with its connection pool: calls are blocking and thread-safe, and the
  hub runs them in worker threads (``anyio.to_thread``), so the same store serves asyncio and
  trio without touching the event loop.
* Every mutation is one transaction. A lease operation locks the key's lease row
  (``SELECT ... FOR UPDATE``) and writes the new owner and token into that row in the same
  transaction; a fenced write locks the same row ``FOR SHARE`` and is refused inside the
  transaction that checked the token, so it lands either before a new holder's acquisition or
  not at all.
* The schema is created and migrated by the store (``chipi_schema_version``), under an advisory
  lock so that workers starting together migrate once.
* Errors never echo stored contents or server messages (they may quote values): a connection or
  lock-wait failure is ``BACKEND_UNAVAILABLE`` (retryable; a failed mutation changed nothing).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import attrs
import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from ..errors import ChipiSessionError, ErrorCode
from .codec import (
    STORE_FORMAT,
    _check_number,
    _check_text,
    _check_timeout,
    _check_ttl,
    _closed,
    _invalid,
    _show,
    _stored_error,
)
from .journal import JournalEntry
from .sql import SqlStatements, SqlStore

__all__ = ["PostgresStore", "SCHEMA_VERSION", "Member"]

#: Migrations, applied in order; ``chipi_schema_version`` has one row per applied step.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: records, journal, leases (the SessionStore protocol)
        "CREATE TABLE chipi_sessions (key text PRIMARY KEY, json text NOT NULL)",
        "CREATE TABLE chipi_journal (entry_id text PRIMARY KEY, key text NOT NULL,"
        " seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, json text NOT NULL)",
        "CREATE INDEX chipi_journal_by_key ON chipi_journal (key, seq)",
        "CREATE TABLE chipi_leases (key text PRIMARY KEY, owner text,"
        " token bigint NOT NULL, expires_at double precision NOT NULL)",
        "CREATE INDEX chipi_leases_by_owner ON chipi_leases (owner)",
    ),
    (  # 2: fleet membership (chipi_session.fleet): one heartbeat row per live process
        "CREATE TABLE chipi_members (owner text PRIMARY KEY,"
        " joined_at double precision NOT NULL, heartbeat_at double precision NOT NULL,"
        " expires_at double precision NOT NULL, draining boolean NOT NULL DEFAULT false)",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)
#: pg_advisory_xact_lock key serialising schema migration (any constant unique to this app)
_MIGRATION_LOCK: Final = 0x43484950_5353  # "CHIPSS"
_LEASE_QUERY: Final = "SELECT owner, token, expires_at FROM chipi_leases WHERE key = %s"
_SQL: Final = SqlStatements(
    load="SELECT json FROM chipi_sessions WHERE key = %s",
    load_all="SELECT key, json FROM chipi_sessions ORDER BY key",
    save="INSERT INTO chipi_sessions (key, json) VALUES (%s, %s)"
    " ON CONFLICT (key) DO UPDATE SET json = excluded.json",
    delete=(
        "DELETE FROM chipi_sessions WHERE key = %s",
        "DELETE FROM chipi_journal WHERE key = %s",
    ),
    journal_key="SELECT key FROM chipi_journal WHERE entry_id = %s FOR UPDATE",
    journal_update="UPDATE chipi_journal SET json = %s WHERE entry_id = %s",
    journal_remove="DELETE FROM chipi_journal WHERE entry_id = %s",
    journal_all="SELECT entry_id, key, json FROM chipi_journal ORDER BY seq",
    journal_of_key="SELECT entry_id, key, json FROM chipi_journal WHERE key = %s ORDER BY seq",
    lease=_LEASE_QUERY,
    lease_to_write=_LEASE_QUERY + " FOR UPDATE",
    # FOR SHARE: an acquisition (FOR UPDATE) waits for the fenced write's commit, and the
    # write waits for an acquisition in progress and then sees its new token
    lease_to_fence=_LEASE_QUERY + " FOR SHARE",
    put_lease="UPDATE chipi_leases SET owner = %(owner)s, token = %(token)s,"
    " expires_at = %(expires_at)s WHERE key = %(key)s",
    # a row to lock even for a key never leased (two first acquisitions serialise on its
    # primary key); token 0 marks it as "no lease yet"
    lease_placeholder="INSERT INTO chipi_leases (key, owner, token, expires_at)"
    " VALUES (%s, NULL, 0, 0) ON CONFLICT (key) DO NOTHING",
)
_RENEW: Final = (
    "UPDATE chipi_leases SET expires_at = GREATEST(expires_at, %(until)s)"
    " WHERE key = ANY(%(keys)s) AND owner = %(owner)s AND expires_at > %(now)s RETURNING key"
)


@attrs.frozen
class Member:
    """A live fleet process as its heartbeat row says (``draining``: leaving, give it no keys)."""

    owner: str
    joined_at: float
    heartbeat_at: float
    expires_at: float
    draining: bool


class PostgresStore(SqlStore):
    """``PostgresStore("postgresql://user@host/db")``: sessions of a fleet on one PostgreSQL.

    ``min_size``/``max_size``: connections the pool keeps (one per concurrent store call is
    enough; the hub's calls are short transactions). ``timeout``: seconds to wait for a pooled
    connection or for another transaction's row lock before failing ``BACKEND_UNAVAILABLE``.
    Connections are checked when taken from the pool, so a restarted server or a killed
    backend costs the failing call only, not the store. The protocol's flows are
    ``SqlStore``'s (stores/sql.py); this class holds PostgreSQL's SQL and plumbing.
    """

    _SQL = _SQL

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        timeout: float = 30.0,
        application_name: str = "chipi-session",
    ) -> None:
        if not isinstance(conninfo, str) or not conninfo:
            raise _invalid("PostgresStore needs a connection string")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise _invalid("min_size must be an int >= 0")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise _invalid("max_size must be an int >= 1")
        if max_size < min_size:
            raise _invalid("max_size must be >= min_size")
        wait = _check_timeout(timeout)
        _check_text(application_name, "application_name")
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                conninfo,
                min_size=min_size,
                max_size=max_size,
                timeout=wait,
                open=False,
                check=ConnectionPool.check_connection,
                kwargs={
                    "application_name": application_name,
                    # a row lock held by a stuck transaction fails the call instead of hanging
                    "options": f"-c lock_timeout={max(1, int(wait * 1000))}",
                },
                name="chipi-session",
            )
            self._pool.open(wait=True, timeout=max(wait, 1.0))
        except psycopg.ProgrammingError:
            raise _invalid("PostgresStore: malformed connection string") from None
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                self._pool.close()
            raise self._error(exc, "connect") from exc
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    @property
    def max_connections(self) -> int:
        """The pool's size: how many calls can run at once (the hub's thread limit)."""
        return self._pool.max_size

    def __repr__(self) -> str:
        return f"PostgresStore(<{self._pool.name}>)"  # the conninfo may hold a password

    # -- plumbing

    def _error(self, exc: psycopg.Error, doing: str) -> ChipiSessionError:
        state = getattr(exc, "sqlstate", None) or "-"
        if isinstance(exc, (psycopg.errors.DataCorrupted, psycopg.errors.IndexCorrupted)):
            return ChipiSessionError(
                ErrorCode.INVALID_STORED_DATA,
                f"session store: PostgreSQL reports corrupt data ({state})",
            )
        return ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE,
            f"session store: cannot {doing}: {type(exc).__name__} ({state})",
            True,
        )

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on a pooled connection: committed on success, rolled back on any
        exception (the pool discards a broken connection)."""
        if self._closed:
            raise _closed()
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise self._error(exc, doing) from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._transaction("read it") as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _migrate(self) -> None:
        with self._transaction("create its schema") as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS chipi_schema_version (version integer PRIMARY KEY,"
                " format text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version, format FROM chipi_schema_version ORDER BY version")
            rows = cur.fetchall()
            if any(fmt != STORE_FORMAT for _, fmt in rows):
                raise _stored_error("session store", f"not a {STORE_FORMAT} database")
            current = max((int(v) for v, _ in rows), default=0)
            if current > SCHEMA_VERSION:
                raise _stored_error(
                    "session store",
                    f"schema version {current} is newer than this library's {SCHEMA_VERSION}",
                )
            if current == 0:
                cur.execute("SELECT to_regclass('chipi_sessions') IS NOT NULL")
                row = cur.fetchone()
                if row is not None and row[0]:
                    raise _stored_error("session store", "tables exist without a version")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO chipi_schema_version (version, format) VALUES (%s, %s)",
                    (version, STORE_FORMAT),
                )

    def schema_version(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(version), 0) FROM chipi_schema_version")
        return int(rows[0][0])

    def _where(self, what: str, key: object) -> str:
        return f"session store: {what} {_show(key)}"

    def _insert_entry(self, cur: Any, entry: JournalEntry, text: str) -> bool:
        cur.execute(
            "INSERT INTO chipi_journal (entry_id, key, json) VALUES (%s, %s, %s)"
            " ON CONFLICT (entry_id) DO NOTHING",
            (entry.entry_id, entry.key, text),
        )
        return bool(cur.rowcount == 1)

    # -- leases

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        return key in self.renew_leases([key], owner, ttl_seconds, now)

    def renew_leases(
        self, keys: Iterable[str], owner: str, ttl_seconds: float, now: float
    ) -> set[str]:
        """Renew many leases of ``owner`` in one statement; returns the keys still held.

        The same rule as ``renew_lease`` (held and unexpired at ``now``; expiry never moves
        backwards): a fleet renews all its keys once per tick instead of once per key.
        """
        wanted = [_check_text(k, "key") for k in keys]
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        if not wanted:
            return set()
        with self._transaction("renew leases") as cur:
            cur.execute(_RENEW, {"until": at + ttl, "keys": wanted, "owner": owner, "now": at})
            return {str(row[0]) for row in cur.fetchall()}

    def held_keys(self, owner: str, now: float) -> set[str]:
        """The keys whose unexpired lease ``owner`` holds at ``now``."""
        _check_text(owner, "owner")
        at = _check_number(now, "now")
        rows = self._query(
            "SELECT key FROM chipi_leases WHERE owner = %s AND expires_at > %s", (owner, at)
        )
        return {str(row[0]) for row in rows}

    # -- fleet membership

    def heartbeat(
        self, owner: str, ttl_seconds: float, now: float, *, draining: bool = False
    ) -> None:
        """Announce (or keep announcing) ``owner`` as a live member until ``now + ttl``."""
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")
        with self._transaction("send a heartbeat") as cur:
            cur.execute(
                "INSERT INTO chipi_members (owner, joined_at, heartbeat_at, expires_at, draining)"
                " VALUES (%(o)s, %(now)s, %(now)s, %(until)s, %(d)s) ON CONFLICT (owner) DO UPDATE"
                " SET heartbeat_at = %(now)s, draining = %(d)s,"
                " expires_at = GREATEST(chipi_members.expires_at, %(until)s)",
                {"o": owner, "now": at, "until": at + ttl, "d": bool(draining)},
            )

    def members(self, now: float) -> list[Member]:
        """Members whose heartbeat has not expired at ``now``, by owner."""
        at = _check_number(now, "now")
        rows = self._query(
            "SELECT owner, joined_at, heartbeat_at, expires_at, draining FROM chipi_members"
            " WHERE expires_at > %s ORDER BY owner",
            (at,),
        )
        return [Member(str(o), float(j), float(h), float(e), bool(d)) for o, j, h, e, d in rows]

    def leave(self, owner: str) -> None:
        """Remove ``owner``'s heartbeat row (a graceful exit: its keys move at once)."""
        _check_text(owner, "owner")
        with self._transaction("leave the fleet") as cur:
            cur.execute("DELETE FROM chipi_members WHERE owner = %s", (owner,))

    # -- lifecycle

    def _disconnect(self) -> None:
        self._pool.close()
