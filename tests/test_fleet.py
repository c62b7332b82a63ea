"""Fleets on a real PostgreSQL: assignment, handover, takeover of a dead member's keys, batched
renewal (in-process, on the manual clock), and the multi-process proof under faults
(examples/fleet.py: worker processes, one localnet, SIGKILL / join / connection restart)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionHub
from chipi_session.fleet import Fleet, rendezvous_owner
from chipi_session.stores import JournalEntry
from chipi_session.stores.postgres import PostgresStore

from .helpers import PIN, World, eventually

KEYS = [f"user-{i}" for i in range(12)]
TTL = 30.0
ROOT = Path(__file__).resolve().parent.parent


def test_rendezvous_is_stable_and_moves_only_what_it_must() -> None:
    keys = [f"k{i}" for i in range(600)]
    two = {k: rendezvous_owner(k, ["a", "b"]) for k in keys}
    assert two == {k: rendezvous_owner(k, ["b", "a"]) for k in keys}  # order-free
    three = {k: rendezvous_owner(k, ["a", "b", "c"]) for k in keys}
    moved = [k for k in keys if two[k] != three[k]]
    assert all(three[k] == "c" for k in moved)  # a join takes keys, never shuffles others
    assert 150 < len(moved) < 250  # about a third
    assert rendezvous_owner("k", []) is None


async def open_user(world: World, hub: SessionHub, key: str) -> ChipiSession:
    session = await hub.open(key=key, wallet=world.wallet, encrypt_key=PIN)
    if not session.has_active_session:
        await session.create_session(3600)
        await session.register_session(max_calls=50, allowed_entrypoints=["transfer"])
    return session


@asynccontextmanager
async def member(world: World, store: PostgresStore, owner: str) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        hub = await stack.enter_async_context(
            SessionHub(
                backend=world.chain,
                clock=world.clock,
                vault=world.vault,
                store=store,
                **Fleet.hub_options(owner, TTL),
            )
        )

        async def opener(h: SessionHub, key: str) -> ChipiSession:
            return await open_user(world, h, key)

        fleet = Fleet(
            hub,
            store,
            owner=owner,
            keys=KEYS,
            open_session=opener,
            lease_ttl=TTL,
            jitter=0.0,
            max_acquisitions_per_tick=20,
            rng=random.Random(7),
        )
        yield await stack.enter_async_context(fleet)


async def tick(
    world: World, *fleets: Fleet, until: Callable[[], bool] | None = None, ticks: int = 6
) -> None:
    """Advance one tick at a time until ``until()`` holds (each tick's work runs in threads)."""
    for _ in range(ticks):
        world.clock.advance(TTL / 3)
        counts = {id(f): f.stats.ticks for f in fleets}

        def ticked(counts: dict[int, int] = counts) -> bool:
            # a tick that started after the advance has also finished its renewal: the clock
            # never moves on while a member's renewal for the previous time is still running
            return all(
                f.stats.ticks > counts[id(f)] and f.stats.ticks_done == f.stats.ticks
                for f in fleets
            )

        await eventually(ticked)
        if until is not None and until():
            return
    if until is not None:
        await eventually(until)


def expected(owners: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {o: set() for o in owners}
    for key in KEYS:
        owner = rendezvous_owner(key, owners)
        assert owner is not None
        out[owner].add(key)
    return out


@pytest.mark.anyio
async def test_keys_move_on_join_and_drain(world: World, pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        async with member(world, store, "proc-a") as a:
            await eventually(lambda: a.keys == set(KEYS))
            async with a.use("user-0") as s:
                await s.execute_with_session(world.transfer(1))
            async with member(world, store, "proc-b") as b:
                want = expected(["proc-a", "proc-b"])
                assert len(want["proc-a"]) == len(want["proc-b"]) == 6
                await tick(
                    world, a, b, until=lambda: a.keys == want["proc-a"] and b.keys == want["proc-b"]
                )
                for key in KEYS:  # exactly one member serves each key, and holds its lease
                    holder = "proc-a" if key in want["proc-a"] else "proc-b"
                    assert [f.owner for f in (a, b) if f.serves(key)] == [holder]
                    assert store.get_lease(key).owner == holder  # type: ignore[union-attr]
                moved = sorted(want["proc-b"])[0]
                with pytest.raises(ChipiSessionError) as info:  # A no longer serves it
                    async with a.use(moved):
                        pass
                assert info.value.code is ErrorCode.ACTION_IN_PROGRESS and info.value.retryable
                async with b.use(moved) as s:  # B resumed it from the store: same session
                    assert s.remaining_calls == (49 if moved == "user-0" else 50)
                    await s.execute_with_session(world.transfer(1))
                assert a.stats.handed_over == len(want["proc-b"]) and a.stats.lost == 0
                await b.drain()  # a deploy: B hands everything back
                assert b.keys == frozenset()
                await tick(world, a, until=lambda: a.keys == set(KEYS))
            assert world.balance(0xBEEF) == 2
            assert store.journal_pending() == []
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_dead_members_keys_are_taken_after_its_leases_expire(
    world: World, pg_url: str
) -> None:
    store = PostgresStore(pg_url)
    now = world.clock.now()
    ghost_keys = expected(["proc-a", "ghost"])["ghost"]
    store.heartbeat("ghost", TTL, now)  # a member that took its keys and then died
    for key in ghost_keys:
        assert store.acquire_lease(key, "ghost", TTL, now) == 1
    sent_nothing = JournalEntry.new(sorted(ghost_keys)[0], "execute", 1, created_at=now)
    store.journal_append(sent_nothing, fencing_token=1)  # it died before sending
    try:
        async with member(world, store, "proc-a") as a:
            await eventually(lambda: a.keys == set(KEYS) - ghost_keys)
            world.clock.advance(TTL - 1)  # ghost's heartbeat and leases still run
            count = a.stats.ticks
            await eventually(lambda: a.stats.ticks > count)
            assert a.keys.isdisjoint(ghost_keys)
            await tick(world, a, until=lambda: a.keys == set(KEYS))
            assert a.stats.acquired == len(KEYS) and a.stats.refused >= 0
            for key in ghost_keys:  # taken over with a new token
                assert store.get_lease(key).token == 2  # type: ignore[union-attr]
            assert store.journal_pending() == []  # resolved before the session opened
            # leases keep being renewed in batches while time passes well beyond the TTL
            await tick(world, a, ticks=7)
            assert a.keys == set(KEYS) and a.stats.lost == 0
            assert a.stats.renew_batches >= 7
            for key in KEYS:
                lease = store.get_lease(key)
                assert lease is not None and lease.expires_at > world.clock.now() + TTL / 2
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_lost_lease_drops_the_session_unsaved(world: World, pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        async with member(world, store, "proc-a") as a:
            await eventually(lambda: a.keys == set(KEYS))
            # someone forces the lease away (an operator, a split brain): A must stop at once
            victim = KEYS[3]
            store.release_lease(victim, "proc-a")
            assert store.acquire_lease(victim, "thief", TTL, world.clock.now()) is not None
            await tick(world, a, until=lambda: victim not in a.keys, ticks=1)
            assert a.stats.lost == 1 and a.stats.refused >= 0
            assert not a.serves(victim)
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fleet_of_processes_under_faults(backend: str, pg_url: str, tmp_path: Path) -> None:
    """examples/fleet.py: 3 workers + 1 localnet; SIGKILL one, add one, cut a connection."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fleet.py"), "--db", pg_url, "--json"]
        + ["--backend", backend, "--users", "60", "--phase", "3", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    # nothing applied twice, nothing lost: the chain agrees with what the workers reported
    assert report["applied_twice"] == 0
    assert report["reported_failed_but_executed"] == 0
    assert report["reported_success_not_executed"] == 0
    assert report["executed_unexplained"] == 0
    assert report["executed"] == report["successes"] + report["in_doubt_executed"]
    assert report["successes"] > 0
    # every session served by exactly one live worker, none by the killed one
    assert report["unserved"] == [] and report["served_twice"] == []
    assert report["served_by_dead"] == []
    # entries left in the journal are writes the killed worker signed but never sent (their
    # nonce is unused: the chain audit above found no execution unexplained)
    assert report["secret_in_db"] is False and report["secret_in_files"] is False
    assert report["failover_seconds"] is not None
