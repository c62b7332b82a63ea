"""Leases: one session's budget lives in one hub (process) at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from chipi_session import ActionFailed, ChipiSessionError, ErrorCode, SessionHub, SessionState
from chipi_session.events import Event
from chipi_session.stores import SqliteStore

from .helpers import PIN, RECIPIENT, World, eventually, settle

pytestmark = pytest.mark.anyio

TTL = 30.0


def hub(world: World, store: SqliteStore, owner: str) -> SessionHub:
    return world.hub(store=store, lease_owner=owner, lease_ttl=TTL)


async def test_a_key_opens_in_one_hub_at_a_time(world: World, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    async with hub(world, store, "proc-a") as a, hub(world, store, "proc-b") as b:
        s = await a.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        await s.create_session()
        await s.register_session(max_calls=5)
        with pytest.raises(ChipiSessionError) as info:
            await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert info.value.code is ErrorCode.ACTION_IN_PROGRESS and info.value.retryable
        await b.open(key="bob", wallet=world.wallet, encrypt_key=PIN)  # other keys are free
        # the lease is renewed while alice is open: time passing does not free it
        for _ in range(6):
            world.clock.advance(TTL / 3)
            await settle()
            # the renewal runs in a worker thread: wait until it has pushed the expiry out
            await eventually(
                lambda: store.get_lease("alice").expires_at  # type: ignore[union-attr]
                >= world.clock.now() + TTL * 0.9
            )
        with pytest.raises(ChipiSessionError):
            await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        await a.close("alice")  # releases the lease
        moved = await b.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        assert moved.session_state is SessionState.ACTIVE
        await moved.execute_with_session(world.transfer(2))
    assert world.balance(RECIPIENT) == 2
    store.close()


async def test_a_hub_that_lost_its_lease_can_send_nothing(world: World, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    seen: list[Event] = []
    async with hub(world, store, "proc-a") as a:
        s = await a.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=5)
        # proc-a is paused past its TTL (no renewal ran); proc-b takes the key over
        store.release_lease("alice", "proc-a")
        token_b = store.acquire_lease("alice", "proc-b", TTL, world.clock.now())
        assert token_b is not None
        used = world.chain.session_status(world.wallet.address, s.session.public_key)  # type: ignore[union-attr]
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.ACTION_IN_PROGRESS
        # the journal refused the write before anything was sent
        after = world.chain.session_status(world.wallet.address, s.session.public_key)  # type: ignore[union-attr]
        assert after == used and world.balance(RECIPIENT) == 0
        # the renewal notices and closes the session
        world.clock.advance(TTL / 3)
        await settle()
        await eventually(lambda: a.get("alice") is None)
        assert any(isinstance(e, ActionFailed) and e.action == "lease" for e in seen)
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.CLOSED
    store.close()


async def test_leases_need_a_store(world: World) -> None:
    with pytest.raises(ChipiSessionError) as info:
        SessionHub(backend=world.chain, lease_owner="proc-a")
    assert info.value.code is ErrorCode.INVALID_INPUT
