"""PostgresStore against a real PostgreSQL (tests/pg_fixtures.py): the store contract tests of
tests/test_store.py run unchanged on it, plus what only a shared server has: concurrent
processes racing for leases, batched renewal, schema migration, a killed connection."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis.stateful import run_state_machine_as_test

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.stores import Lease, LeaseLostError
from chipi_session.stores.postgres import SCHEMA_VERSION, PostgresStore

from .lease_race import check_lease_race
from .pg_fixtures import PgServer
from .test_store import (  # noqa: F401  (collected here again, on PostgresStore)
    _MODEL_SETTINGS,
    Opener,
    StoreModel,
    _secret_forms,
    make_entry,
    make_record,
    material,
    test_bad_arguments_are_invalid_input,
    test_closed_store_refuses,
    test_context_manager,
    test_delete_drops_the_keys_journal,
    test_fencing_token_refuses_writes_from_a_lost_lease,
    test_journal_misuse,
    test_journal_round_trip_and_order,
    test_leases,
    test_protocol_is_satisfied,
    test_records_round_trip,
    test_threads_share_a_store,
)


class PgOpener(Opener):
    """Opens (and reopens) a PostgresStore on one database."""

    def __init__(self, url: str, directory: Path) -> None:
        super().__init__("postgres", directory)
        self.url = url

    def open(self) -> Any:
        return PostgresStore(self.url, max_size=8)

    def reopen(self, store: Any) -> Any:
        store.close()
        return self.open()


@pytest.fixture
def opener(pg_url: str, tmp_path: Path) -> PgOpener:
    """Overrides test_store's fixture: the imported contract tests run on PostgresStore."""
    return PgOpener(pg_url, tmp_path)


@pytest.fixture
def store(opener: PgOpener) -> Any:
    s = opener.open()
    yield s
    s.close()


# -- what only a server has ----------------------------------------------------------------


def _dump(url: str) -> bytes:
    """Every row of every table, as text: what the database holds."""
    out: list[str] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f"SELECT * FROM {table}").fetchall():  # noqa: S608
                out.append(repr(row))
    return "\n".join(out).encode()


def test_database_never_holds_private_keys(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        for i in range(4):
            store.save(make_record(f"user-{i}", i, seen_registered=True))
            store.journal_append(make_entry(f"user-{i}"))
        store.acquire_lease("user-0", "me", 10, 0)
        data = _dump(pg_url)
    assert b"chipi-vault$1$argon2id" in data  # the blobs are there...
    for key in material().private_keys:  # ...the keys are not, in any spelling
        for form in _secret_forms(key):
            assert form not in data


def test_schema_is_versioned_and_migrated(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a database at schema version 1
        conn.execute(
            "CREATE TABLE chipi_schema_version (version integer PRIMARY KEY,"
            " format text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE chipi_sessions (key text PRIMARY KEY, json text NOT NULL);"
            "CREATE TABLE chipi_journal (entry_id text PRIMARY KEY, key text NOT NULL,"
            " seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE, json text NOT NULL);"
            "CREATE TABLE chipi_leases (key text PRIMARY KEY, owner text,"
            " token bigint NOT NULL, expires_at double precision NOT NULL);"
            "INSERT INTO chipi_schema_version (version, format)"
            " VALUES (1, 'chipi-session-store')"
        )
        conn.execute("INSERT INTO chipi_leases VALUES ('k', 'old', 4, 10)")
    with PostgresStore(pg_url) as store:
        assert store.schema_version() == SCHEMA_VERSION >= 2
        assert store.get_lease("k") == Lease("old", 4, 10.0)  # data kept
        store.heartbeat("me", 10, 0)  # the migrated table works
        assert [m.owner for m in store.members(1)] == ["me"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM chipi_schema_version ORDER BY 1").fetchall()
        assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))
        conn.execute(f"INSERT INTO chipi_schema_version VALUES ({SCHEMA_VERSION + 1}, 'x')")
    with pytest.raises(ChipiSessionError) as exc:
        PostgresStore(pg_url)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA


def test_workers_starting_together_migrate_once(pg_url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(PostgresStore(pg_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(stores) == 4
    assert stores[0].schema_version() == SCHEMA_VERSION
    for s in stores:
        s.close()


def test_broken_rows_fail_their_reads(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        store.save(make_record("good"))
        store.save(make_record("bad"))
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE chipi_sessions SET json = '{\"key\": 1' WHERE key = 'bad'")
            conn.execute("INSERT INTO chipi_leases VALUES ('neg', 'x', -3, 1)")
        assert store.load("good") == make_record("good")
        for call in (lambda: store.load("bad"), store.load_all, lambda: store.get_lease("neg")):
            with pytest.raises(ChipiSessionError) as exc:
                call()
            assert exc.value.code is ErrorCode.INVALID_STORED_DATA


def test_renew_leases_is_one_batch_with_the_renew_rules(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        for i in range(5):
            assert store.acquire_lease(f"k{i}", "A", 10, 0) == 1
        assert store.acquire_lease("other", "B", 10, 0) == 1
        store.release_lease("k4", "A")
        kept = store.renew_leases([f"k{i}" for i in range(6)] + ["other"], "A", 10, 5)
        assert kept == {"k0", "k1", "k2", "k3"}  # not released, not B's, not unknown
        assert store.get_lease("k0") == Lease("A", 1, 15.0)
        assert store.renew_leases(["k0"], "A", 1, 6) == {"k0"}
        assert store.get_lease("k0") == Lease("A", 1, 15.0)  # never shortened
        assert store.renew_leases(["k0"], "A", 10, 15) == set()  # expired: acquire again
        assert store.held_keys("A", 14) == {"k0", "k1", "k2", "k3"}
        assert store.renew_leases([], "A", 10, 0) == set()


def test_membership(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        store.heartbeat("w1", 10, 0)
        store.heartbeat("w2", 5, 0)
        assert [m.owner for m in store.members(1)] == ["w1", "w2"]
        assert [m.owner for m in store.members(5)] == ["w1"]  # w2's heartbeat expired
        store.heartbeat("w1", 10, 8, draining=True)
        (w1,) = store.members(9)
        assert (w1.joined_at, w1.heartbeat_at, w1.expires_at, w1.draining) == (0, 8, 18, True)
        store.leave("w1")
        assert store.members(9) == []


def test_a_killed_connection_costs_one_call_at_most(pg_url: str) -> None:
    with PostgresStore(pg_url, min_size=1, max_size=1, application_name="victim") as store:
        store.save(make_record("k"))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'victim'"
            ).fetchall()
        assert killed == [(True,)]
        # the pool checks a connection before lending it: the store carries on
        assert store.load("k") == make_record("k")
        store.save(make_record("k", 1))
        assert store.load("k") == make_record("k", 1)


def test_unreachable_server_is_backend_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ChipiSessionError) as exc:
        PostgresStore(f"postgresql:///x?host={tmp_path}", timeout=0.5)
    assert exc.value.code is ErrorCode.BACKEND_UNAVAILABLE and exc.value.retryable
    assert str(tmp_path) not in exc.value.message
    with pytest.raises(ChipiSessionError) as exc:
        PostgresStore("")
    assert exc.value.code is ErrorCode.INVALID_INPUT


def test_fenced_write_waits_for_an_acquisition_in_progress(pg_url: str) -> None:
    """The write and the acquisition serialise on the lease row: a write that started while
    another owner was acquiring is refused once that acquisition commits."""
    with PostgresStore(pg_url) as store:
        old = store.acquire_lease("k", "A", 10, 0)
        assert old == 1
        with psycopg.connect(pg_url) as other:  # B's acquisition, holding the row lock
            other.execute("SELECT * FROM chipi_leases WHERE key = 'k' FOR UPDATE")
            other.execute("UPDATE chipi_leases SET owner = 'B', token = 2 WHERE key = 'k'")
            outcome: list[BaseException | None] = []

            def write() -> None:
                try:
                    store.save(make_record("k"), fencing_token=old)
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            writer.join(0.3)
            assert writer.is_alive()  # blocked on B's row lock, not decided on stale data
            other.commit()
        writer.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], LeaseLostError)
        assert store.load("k") is None


def test_lease_is_exclusive_across_processes(pg_url: str, tmp_path: Path) -> None:
    check_lease_race(
        tmp_path,
        lambda: PostgresStore(pg_url),
        f"""
        from chipi_session.stores.postgres import PostgresStore
        store = PostgresStore({pg_url!r})
        """,
    )


def test_store_model(pg_server: PgServer, tmp_path: Path) -> None:
    """test_store's stateful model, each example on a fresh database."""
    urls: list[str] = []

    class PgModel(StoreModel):
        def __init__(self) -> None:
            super().__init__()  # kind "memory": replaced below
            urls.append(pg_server.create_database())
            self.opener = PgOpener(urls[-1], tmp_path)
            self.store = self.opener.open()

    try:
        run_state_machine_as_test(PgModel, settings=_MODEL_SETTINGS)
    finally:
        for url in urls:
            pg_server.drop_database(url)


# -- the hub on PostgreSQL, on asyncio and trio --------------------------------------------


@pytest.mark.anyio
async def test_hub_sessions_move_between_hubs_on_postgres(pg_url: str) -> None:
    from chipi_session import SessionHub, SessionState

    from .helpers import PIN, eventually, make_world, settle

    world = make_world()
    store = PostgresStore(pg_url)

    def hub(owner: str) -> SessionHub:
        return world.hub(store=store, lease_owner=owner, lease_ttl=30)

    try:
        async with hub("proc-a") as a, hub("proc-b") as b:
            s = await a.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
            await s.create_session()
            await s.register_session(max_calls=5)
            await s.execute_with_session(world.transfer(3))
            with pytest.raises(ChipiSessionError) as info:
                await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
            assert info.value.code is ErrorCode.ACTION_IN_PROGRESS and info.value.retryable
            world.clock.advance(10)  # the hub renews the lease on PostgreSQL
            await settle()
            await eventually(
                lambda: (
                    store.get_lease("alice").expires_at  # type: ignore[union-attr]
                    >= world.clock.now() + 29
                )
            )
            await a.close("alice")  # saves the record and releases the lease
            moved = await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
            assert moved.session_state is SessionState.ACTIVE and moved.remaining_calls == 4
            await moved.execute_with_session(world.transfer(2))
        assert world.balance(0xBEEF) == 5
        assert store.journal_pending() == [] and store.get_lease("alice").owner is None  # type: ignore[union-attr]
    finally:
        store.close()
