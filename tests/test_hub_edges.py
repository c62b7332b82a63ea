"""SessionHub and store edges (issue 9 §4): one live session per key, refused opens leave
nothing behind, poller options that could freeze the loop are refused, damaged stores too."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionHub, SystemClock
from chipi_session.stores import JsonFileStore, MemoryStore, SessionStore, SqliteStore

from .helpers import PIN, World, eventually

pytestmark = pytest.mark.anyio


def make_hub(world: World, store: SessionStore | None = None, **kwargs: Any) -> SessionHub:
    return world.hub(store=store, **kwargs)


# -- one live session per key ----------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_two_concurrent_opens_of_one_key_open_one_session(
    world: World, tmp_path: Path, store_kind: str
) -> None:
    store: SessionStore = (
        MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "s.db")
    )
    opened: list[ChipiSession] = []
    refused: list[ChipiSessionError] = []

    async def open_alice() -> None:
        try:
            opened.append(await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN))
        except ChipiSessionError as exc:
            refused.append(exc)

    async with make_hub(world, store) as hub:
        async with anyio.create_task_group() as tg:
            tg.start_soon(open_alice)
            tg.start_soon(open_alice)
        assert len(opened) == 1 and len(refused) == 1
        assert refused[0].code in (ErrorCode.ACTION_IN_PROGRESS, ErrorCode.INVALID_INPUT)
        assert len(hub) == 1 and hub.get("alice") is opened[0]
        # the refused open left nothing behind: once alice is closed, the key opens again
        await hub.close("alice")
        again = await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert hub.get("alice") is again


async def test_concurrent_opens_with_leases_hold_one_lease(world: World, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    results: list[object] = []

    async def open_alice() -> None:
        try:
            results.append(await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN))
        except ChipiSessionError as exc:
            results.append(exc.code)

    async with make_hub(world, store, lease_owner="proc-a") as hub:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(open_alice)
        sessions = [r for r in results if isinstance(r, ChipiSession)]
        assert len(sessions) == 1 and len(hub) == 1
        lease = store.get_lease("alice")
        # the winner still holds its lease: a refused twin did not release it
        assert lease is not None and lease.held_by("proc-a", world.clock.now())


class GatedReleaseStore:
    """A SqliteStore whose ``release_lease`` waits (in its worker thread) for ``gate``."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.gate = threading.Event()
        self.releasing = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def release_lease(self, key: str, owner: str) -> None:
        self.releasing.set()
        self.gate.wait(timeout=30)  # bounded: a broken test fails instead of hanging
        self._store.release_lease(key, owner)


async def test_a_key_cannot_reopen_while_it_is_closing(world: World, tmp_path: Path) -> None:
    """Reopening before the close finished would load a stale record, and the close's lease
    release would then drop the new session's lease."""
    sqlite = SqliteStore(tmp_path / "s.db")
    store = GatedReleaseStore(sqlite)
    async with make_hub(world, store, lease_owner="proc-a") as hub:  # type: ignore[arg-type]
        await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub.close, "alice")
            await eventually(store.releasing.is_set)
            with pytest.raises(ChipiSessionError) as info:
                await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
            assert info.value.code is ErrorCode.ACTION_IN_PROGRESS and info.value.retryable
            store.gate.set()
        again = await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert hub.get("alice") is again
        lease = sqlite.get_lease("alice")
        assert lease is not None and lease.held_by("proc-a", world.clock.now())


# -- a refused open releases its lease at once ---------------------------------------------------


async def test_open_refused_for_another_wallets_record_releases_the_lease(
    world: World, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    other = world.chain.create_wallet(PIN)
    async with make_hub(world, store, lease_owner="proc-a") as a:
        s = await a.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        await s.create_session()
        await a.close("alice")
        with pytest.raises(ChipiSessionError) as info:
            await a.open(key="alice", wallet=other, encrypt_key=PIN)
        assert info.value.code is ErrorCode.INVALID_STORED_DATA
        assert len(a) == 0
        lease = store.get_lease("alice")
        assert lease is None or not lease.held_by("proc-a", world.clock.now())
    async with make_hub(world, store, lease_owner="proc-b") as b:  # no TTL to wait out
        resumed = await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert resumed.session is not None


@pytest.mark.parametrize(
    "bad", [-1, 2**32, "10", None, 1.5, 10**5000], ids=["neg", "u32", "str", "none", "float", "huge"]
)
async def test_open_refused_for_bad_options_releases_the_lease(
    world: World, tmp_path: Path, bad: object
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    async with make_hub(world, store, lease_owner="proc-a") as a, make_hub(
        world, store, lease_owner="proc-b"
    ) as b:
        with pytest.raises(ChipiSessionError) as info:
            await a.open(key="alice", wallet=world.wallet, encrypt_key=PIN, default_max_calls=bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert len(a) == 0
        # another process can take the key right away
        taken = await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert b.get("alice") is taken


@pytest.mark.parametrize("wallet", [None, "0x123", {"publicKey": "0x1"}, 7])
async def test_open_with_a_wallet_that_is_not_walletdata_is_invalid_input(
    world: World, tmp_path: Path, wallet: object
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    async with make_hub(world, store, lease_owner="proc-a") as hub:
        with pytest.raises(ChipiSessionError) as info:
            await hub.open(key="alice", wallet=wallet, encrypt_key=PIN)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert "wallet" in info.value.message
        assert len(hub) == 0 and store.get_lease("alice") is None


@pytest.mark.parametrize("encrypt_key", [None, "", 1234, b"1234"])
async def test_open_with_a_bad_encrypt_key_is_invalid_input(
    world: World, encrypt_key: object
) -> None:
    async with make_hub(world, MemoryStore()) as hub:
        with pytest.raises(ChipiSessionError) as info:
            await hub.open(key="alice", wallet=world.wallet, encrypt_key=encrypt_key)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_INPUT and len(hub) == 0


# -- constructor options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_batch_size": 0},
        {"poll_batch_size": -1},
        {"poll_batch_size": 1.5},
        {"poll_batch_size": True},
        {"max_polls_per_second": 0},
        {"max_polls_per_second": -3},
        {"max_polls_per_second": math.nan},
        {"max_polls_per_second": "20"},
        {"status_interval": 0},
        {"status_interval": math.inf},
        {"event_buffer_size": 0},
        {"lease_ttl": math.nan},
        {"clock": 5},
        {"vault": "vault"},
        {"backend": object()},
        {"store": "bot.db"},
        {"renewal": {"min_remaining_calls": 5}},
        {"get_bearer_token": "token"},
    ],
)
def test_hub_constructor_refuses_bad_options(world: World, kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"backend": world.chain, "clock": world.clock, "vault": world.vault}
    options.update(kwargs)
    with pytest.raises(ChipiSessionError) as info:
        SessionHub(**options)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert next(iter(kwargs)) in info.value.message


@pytest.mark.parametrize("size", [0, -1, "8", 2.0])
async def test_hub_subscribe_refuses_bad_buffer_sizes(world: World, size: object) -> None:
    async with make_hub(world) as hub:
        with pytest.raises(ChipiSessionError) as info:
            hub.subscribe(size)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_INPUT


async def test_a_sleep_to_a_past_deadline_still_yields() -> None:
    """A loop that sleeps until a deadline already passed must still let other tasks run
    (and be cancellable): it reaches a checkpoint."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await SystemClock().sleep_until(time.time() - 10)
    assert scope.cancelled_caught
    ran: list[int] = []

    async def other() -> None:
        ran.append(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(3):
            await SystemClock().sleep_until(0.0)
        assert ran == [1]


# -- damaged stores ---------------------------------------------------------------------------


def _filled_sqlite_store(world: World, path: Path) -> None:
    from chipi_session.stores import JournalEntry, SessionRecord

    store = SqliteStore(path)
    store.save(SessionRecord(key="alice", wallet=world.wallet, session=None))
    store.journal_append(JournalEntry.new("alice", "register", 0x1234, created_at=1.0))
    store.close()


@pytest.mark.parametrize("size", [0, 1, 15])
def test_sqlite_store_truncated_is_invalid_stored_data(
    world: World, tmp_path: Path, size: int
) -> None:
    path = tmp_path / "s.db"
    _filled_sqlite_store(world, path)
    os.truncate(path, size)
    for side in ("-wal", "-shm"):
        Path(str(path) + side).unlink(missing_ok=True)
    with pytest.raises(ChipiSessionError) as info:
        SqliteStore(path)
    assert info.value.code is ErrorCode.INVALID_STORED_DATA
    assert os.path.getsize(path) == size  # refused, not replaced by a fresh store


def test_a_new_sqlite_store_is_created_whole_and_private(world: World, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    _filled_sqlite_store(world, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    reopened = SqliteStore(path)
    assert reopened.load("alice") is not None and len(reopened.journal_pending("alice")) == 1
    reopened.close()
    assert [n for n in os.listdir(tmp_path) if ".new-" in n] == []  # no temporary left


@pytest.mark.parametrize("size", [0, 1])
def test_json_store_truncated_is_invalid_stored_data(tmp_path: Path, size: int) -> None:
    path = tmp_path / "s.json"
    JsonFileStore(path).close()
    os.truncate(path, size)
    with pytest.raises(ChipiSessionError) as info:
        JsonFileStore(path)
    assert info.value.code is ErrorCode.INVALID_STORED_DATA


def test_a_new_sqlite_store_without_hard_links_is_renamed_in(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "fs.db"
    _filled_sqlite_store(world, path)
    reopened = SqliteStore(path)
    assert reopened.load("alice") is not None
    reopened.close()
    assert [n for n in os.listdir(tmp_path) if ".new-" in n] == []
