"""The hub's async view of a store: calls run off the event loop, within a thread limit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.stores import (
    AsyncSessionStore,
    JsonFileStore,
    MemoryStore,
    SqliteStore,
    ThreadedStore,
    as_async_store,
)
from chipi_session.stores.postgres import PostgresStore

from .helpers import eventually
from .test_store import make_entry, make_record

pytestmark = pytest.mark.anyio


class GatedStore(MemoryStore):
    """``save`` blocks its thread until the test opens the gate; counts concurrency."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.threads: set[int] = set()
        self.running = 0
        self.peak = 0
        self._count = threading.Lock()

    def save(self, record: Any, *, fencing_token: int | None = None) -> None:
        with self._count:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.threads.add(threading.get_ident())
        try:
            if not self.gate.wait(10):
                raise AssertionError("the gate was never opened")
            super().save(record, fencing_token=fencing_token)
        finally:
            with self._count:
                self.running -= 1


async def test_a_blocking_store_call_does_not_block_the_loop() -> None:
    inner = GatedStore()
    store = ThreadedStore(inner, max_threads=2, inline=False)  # it blocks like a file store
    loop_thread = threading.get_ident()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(lambda i=i: store.save(make_record(f"k{i}")))
            # if a save ran on the loop, this line would never run and the gate never open
            await eventually(lambda: inner.running == 2)
            await anyio.sleep(0.05)  # room for a third thread, if the limiter let one in
            inner.gate.set()
    assert inner.peak == 2 and loop_thread not in inner.threads  # the limit held
    assert sorted(r.key for r in await store.load_all()) == [f"k{i}" for i in range(5)]


@pytest.mark.parametrize("kind", ["memory", "json", "sqlite", "postgres"])
async def test_every_store_works_through_the_async_view(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "memory":
        sync: Any = MemoryStore()
    elif kind == "json":
        sync = JsonFileStore(tmp_path / "s.json")
    elif kind == "sqlite":
        sync = SqliteStore(tmp_path / "s.db")
    else:
        sync = PostgresStore(request.getfixturevalue("pg_url"))
    store = as_async_store(sync)
    assert isinstance(store, AsyncSessionStore) and as_async_store(store) is store
    record, entry = make_record("k"), make_entry("k")
    token = await store.acquire_lease("k", "me", 10, 0)
    assert token == 1
    await store.save(record, fencing_token=token)
    await store.journal_append(entry, fencing_token=token)
    assert await store.load("k") == record
    assert await store.journal_pending("k") == [entry]
    assert await store.acquire_lease("j", "me", 10, 0) == 1
    assert await store.renew_leases(["k", "j", "nobody"], "me", 10, 5) == {"k", "j"}
    assert await store.renew_lease("k", "me", 10, 6)
    await store.journal_remove(entry.entry_id, fencing_token=token)
    await store.release_lease("k", "me")
    with pytest.raises(ChipiSessionError) as exc:  # errors come through unchanged
        await store.save(record, fencing_token=token)
    assert exc.value.code is ErrorCode.ACTION_IN_PROGRESS
    await store.aclose()
    with pytest.raises(ChipiSessionError) as exc:
        await store.load("k")
    assert exc.value.code is ErrorCode.CLOSED


def test_max_threads_is_checked() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ChipiSessionError) as exc:
            ThreadedStore(MemoryStore(), max_threads=bad)  # type: ignore[arg-type]
        assert exc.value.code is ErrorCode.INVALID_INPUT


class FlakyRemoveStore(MemoryStore):
    """``journal_remove`` fails (retryably) ``failures`` times before it works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "store hiccup", True)
        super().journal_remove(entry_id, fencing_token=fencing_token)


@pytest.mark.parametrize("failures, left", [(2, 0), (10, 1)])
async def test_an_executed_write_is_reported_even_if_its_journal_removal_fails(
    failures: int, left: int
) -> None:
    """The chain executed it: the caller hears success. A removal that keeps failing leaves
    the entry for the next open, which resolves it from the chain (nonce used)."""
    from chipi_session import SessionHub

    from .helpers import PIN, make_world

    world = make_world()
    store = FlakyRemoveStore(0)
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, store=store
    ) as hub:
        session = await hub.open(key="k", wallet=world.wallet, encrypt_key=PIN)
        await session.create_session()
        await session.register_session(max_calls=5)
        store.failures = failures
        await session.execute_with_session(world.transfer(7))  # does not raise
        assert world.balance(0xBEEF) == 7
        assert len(store.journal_pending("k")) == left
