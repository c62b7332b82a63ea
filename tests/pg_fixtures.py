"""A real PostgreSQL for the suite: one server per test session, a fresh database per test.

``pgserver`` ships PostgreSQL 16 binaries in its wheel (test extra), so no system install is
needed. Run as root (as CI is) it runs the server as a ``pgserver`` system user it creates;
the data directory lives in a private temp dir and is deleted at the end. The server listens on
a Unix socket only (loopback, no TCP port).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

__all__ = ["pg_server", "pg_url", "PgServer", "create_database", "drop_database"]


class PgServer:
    """The running server: its admin URI, and databases made on it."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def uri(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def create_database(self) -> str:
        """A fresh, empty database; returns its connection string."""
        return create_database(self.uri())

    def drop_database(self, url: str) -> None:
        drop_database(self.uri(), url)


def create_database(admin_uri: str) -> str:
    name = f"chipi_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin_uri, dbname=name)


def drop_database(admin_uri: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Start PostgreSQL once for the whole test session (about a second)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

    data = tempfile.mkdtemp(prefix="chipi-pg-")
    server = pgserver.get_server(data, cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # a throwaway test server: crash durability buys nothing here, and skipping fsync makes
        # CREATE DATABASE (one per test) cheap. Benchmarks start their own, durable server.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield PgServer(server)
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A connection string to a database of its own for this test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)
