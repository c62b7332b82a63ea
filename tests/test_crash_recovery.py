"""A hub restarted from its store after a crash ends where the chain says, with nothing twice.

A "process" is a ``SessionHub`` over a store file. Process death is a ``BaseException`` raised
from inside the backend, at a chosen point of a write: nothing handles it, so no journal cleanup
runs and the journal entry (with its SNIP-9 nonce, once reported) stays in the store. The next
process opens a new store object on the same file and a new hub on the same chain, and re-opens
every key. Checked: each session's state equals the state the chain says, the journal keeps only
entries whose window is still open (and is empty once it closed), the chain saw exactly one
register per session and every execute at most once, and no private key ever reaches the store
files in clear.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionHub, SessionState
from chipi_session.backends.base import OnSubmit, notify_submit
from chipi_session.felts import selector
from chipi_session.lifecycle import derive_state
from chipi_session.localchain import LocalChain
from chipi_session.stores import JsonFileStore, SessionStore, SqliteStore
from chipi_session.types import SubmitInfo, WalletData

from .helpers import (
    PIN,
    RECIPIENT,
    World,
    eventually,
    secret_text_forms,
    settle,
)

pytestmark = pytest.mark.anyio

PAST_WINDOW = 3601
CrashPoint = Literal["before_send", "after_submit", "after_apply"]
StoreFactory = Callable[[], SessionStore]


class ProcessDeath(BaseException):
    """The process died: no handler, no cleanup (only ``finally`` blocks run)."""


class ProcessBackend:
    """LocalChain as one process sees it; ``plan`` makes chosen writes die or hang.

    ``plan[(action, session_public_key)]`` is ``"before_send"`` (die before anything is sent),
    ``"after_submit"`` (die once the nonce is reported: sent nowhere), ``"after_apply"`` (die
    once the chain executed it: the response is lost with the process) or ``"hang"`` (report
    the nonce, then never send: the request is in flight when another write kills the process).
    """

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.plan: dict[tuple[str, int], str] = {}
        self.hung = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chain, name)

    async def _run(
        self, mode: str | None, call: Callable[[OnSubmit | None], Awaitable[str]], hook: Any
    ) -> str:
        if mode == "before_send":
            raise ProcessDeath
        if mode in ("after_submit", "hang"):

            async def report_then_stop(info: SubmitInfo) -> None:
                await notify_submit(hook, info)
                if mode == "after_submit":
                    raise ProcessDeath
                self.hung.set()
                await anyio.sleep_forever()

            return await call(report_then_stop)
        tx = await call(hook)
        if mode == "after_apply":
            raise ProcessDeath
        return tx

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        mode = self.plan.pop(("register", kwargs["session_public_key"]), None)
        hook = kwargs.pop("on_submit", None)
        return await self._run(
            mode,
            lambda h: self.chain.add_or_update_session_key(*args, on_submit=h, **kwargs),
            hook,
        )

    async def revoke_session_key(self, *args: Any, **kwargs: Any) -> str:
        mode = self.plan.pop(("revoke", kwargs["session_public_key"]), None)
        hook = kwargs.pop("on_submit", None)
        return await self._run(
            mode, lambda h: self.chain.revoke_session_key(*args, on_submit=h, **kwargs), hook
        )

    async def execute_with_session(self, wallet: WalletData, key: Any, **kwargs: Any) -> str:
        mode = self.plan.pop(("execute", key.public_key), None)
        hook = kwargs.pop("on_submit", None)
        return await self._run(
            mode,
            lambda h: self.chain.execute_with_session(wallet, key, on_submit=h, **kwargs),
            hook,
        )


@pytest.fixture(params=["sqlite", "json"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the same store file again, as a new process would (closing the previous one)."""
    opened: list[SessionStore] = []

    def open_store() -> SessionStore:
        for old in opened:
            old.close()  # the dead process's file lock goes with it
        path = tmp_path / ("sessions.db" if request.param == "sqlite" else "sessions.json")
        store: SessionStore = (
            SqliteStore(path) if request.param == "sqlite" else JsonFileStore(path)
        )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def make_hub(world: World, backend: Any, store: SessionStore) -> SessionHub:
    return SessionHub(backend=backend, clock=world.clock, vault=world.vault, store=store)


async def until_death(world: World, hub: SessionHub, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` in ``hub``'s process and expect it to die."""
    died = False
    try:
        async with hub:
            await body()
    except* ProcessDeath:
        died = True
    assert died, "the process should have died"


def events_of(chain: LocalChain, wallet: WalletData, name: str, public_key: int) -> int:
    sel = selector(name)
    return sum(
        1
        for e in chain.events
        if e.from_address == wallet.address and e.keys[:2] == (sel, public_key)
    )


def chain_state(world: World, wallet: WalletData, s: ChipiSession) -> SessionState:
    """What the chain says (docs/engine.md, "Deriving the state from the chain"), with "seen
    registered" taken from its events."""
    assert s.session is not None
    pub = s.session.public_key
    seen = events_of(world.chain, wallet, "SessionKeyAdded", pub) + events_of(
        world.chain, wallet, "SessionKeyRevoked", pub
    )
    state, _ = derive_state(
        world.chain.session_status(wallet.address, pub),
        int(world.clock.now()),
        local_valid_until=s.session.valid_until,
        seen_registered=seen > 0,
    )
    return state


def secrets_of(world: World, wallets: dict[str, WalletData], store: SessionStore) -> list[int]:
    """Every private key in play: the owners' and the stored sessions'."""
    keys = [world.vault.decrypt(w.encrypted_private_key, PIN).reveal() for w in wallets.values()]
    for name in wallets:
        record = store.load(name)
        if record is not None and record.session is not None:
            keys.append(world.vault.decrypt(record.session.encrypted_private_key, PIN).reveal())
    return keys


def assert_no_plaintext_keys(directory: Path, keys: list[int]) -> None:
    """No store file (database, WAL, JSON, temporaries, locks) holds a key in clear."""
    blobs = [p.read_bytes() for p in directory.iterdir() if p.is_file()]
    assert blobs
    for key in keys:
        forms = secret_text_forms(key)
        for blob in blobs:
            for form in forms:
                assert form.encode() not in blob


async def open_all(hub: SessionHub, wallets: dict[str, WalletData]) -> dict[str, ChipiSession]:
    return {
        name: await hub.open(key=name, wallet=w, encrypt_key=PIN) for name, w in wallets.items()
    }


async def quiesce() -> None:
    for _ in range(8):
        await anyio.sleep(0)
    await settle()


# --------------------------------------------------------------------------- register


@pytest.mark.parametrize("point", ["before_send", "after_submit", "after_apply"])
async def test_hub_restarted_after_a_crash_mid_register_matches_the_chain(
    world: World, store_factory: StoreFactory, tmp_path: Path, point: CrashPoint
) -> None:
    chain = world.chain
    wallets = {f"user-{i}": chain.create_wallet(PIN) for i in range(1, 6)}
    for w in wallets.values():
        chain.mint(world.token, w.address, 1000)
    backend = ProcessBackend(chain)
    store = store_factory()
    hub = make_hub(world, backend, store)
    pubs: dict[str, int] = {}

    async def first_life() -> None:
        s = await open_all(hub, wallets)
        for name in wallets:
            pubs[name] = (await s[name].create_session()).public_key
        await s["user-1"].register_session(max_calls=3)
        await s["user-1"].execute_with_session(world.transfer(1))
        await s["user-4"].register_session(max_calls=3)
        await s["user-4"].revoke_session()
        await eventually(lambda: store.load("user-4").seen_registered)  # type: ignore[union-attr]
        # user-5's register is in flight (nonce journaled, never sent) when user-2's kills us
        backend.plan[("register", pubs["user-5"])] = "hang"
        backend.plan[("register", pubs["user-2"])] = point
        async with anyio.create_task_group() as tg:
            tg.start_soon(s["user-5"].register_session, 3)
            await backend.hung.wait()
            await s["user-2"].register_session(max_calls=3)
        raise AssertionError("unreachable: the register above kills the process")

    await until_death(world, hub, first_life)
    keys = secrets_of(world, wallets, store)
    assert_no_plaintext_keys(tmp_path, keys)
    pending = store.journal_pending()
    assert {e.key for e in pending} == {"user-2", "user-5"}  # no cleanup ran

    # ---- second life: a new store object on the same file, a new hub, the same chain
    store = store_factory()
    async with make_hub(world, chain, store) as hub2:
        s = await open_all(hub2, wallets)
        await quiesce()
        expected = {
            "user-1": SessionState.ACTIVE,
            "user-2": SessionState.ACTIVE if point == "after_apply" else SessionState.CREATED,
            "user-3": SessionState.CREATED,
            "user-4": SessionState.REVOKED,
            "user-5": SessionState.CREATED,
        }
        for name, session in s.items():
            assert session.session is not None and session.session.public_key == pubs[name]
            assert session.session_state is expected[name], name
            assert session.session_state is chain_state(world, wallets[name], session), name
        # only entries whose window is still open stay: sent nowhere, but not provably dead yet
        now = world.clock.now()
        left = store.journal_pending()
        assert all(e.execute_before is not None and e.execute_before > now for e in left)
        open_keys = {"user-5"} | ({"user-2"} if point == "after_submit" else set())
        assert {e.key for e in left} == open_keys
        assert s["user-1"].session_status == chain.session_status(
            wallets["user-1"].address, pubs["user-1"]
        )
        await s["user-1"].execute_with_session(world.transfer(1))

    # ---- third life, after every window closed: the journal empties, nothing was sent twice
    world.clock.advance(PAST_WINDOW)
    store = store_factory()
    async with make_hub(world, chain, store) as hub3:
        s = await open_all(hub3, wallets)
        await quiesce()
        assert store.journal_pending() == []
        for name, session in s.items():
            assert session.session_state is chain_state(world, wallets[name], session), name
        for name in ("user-2", "user-5"):
            if s[name].session_state is SessionState.CREATED:
                await s[name].register_session(max_calls=3)
            await s[name].execute_with_session(world.transfer(1))
        assert store.journal_pending() == []
    registers = {n: events_of(chain, wallets[n], "SessionKeyAdded", pubs[n]) for n in wallets}
    assert registers == {"user-1": 1, "user-2": 1, "user-3": 0, "user-4": 1, "user-5": 1}
    moved = {n: 1000 - world.balance(w.address) for n, w in wallets.items()}
    assert moved == {"user-1": 2, "user-2": 1, "user-3": 0, "user-4": 0, "user-5": 1}
    assert world.balance(RECIPIENT) == 4
    assert_no_plaintext_keys(tmp_path, secrets_of(world, wallets, store))


# --------------------------------------------------------------------------- execute


async def test_hub_restarted_after_a_crash_mid_execute_never_executes_twice(
    world: World, store_factory: StoreFactory, tmp_path: Path
) -> None:
    chain = world.chain
    wallets = {"user-6": chain.create_wallet(PIN), "user-7": chain.create_wallet(PIN)}
    for w in wallets.values():
        chain.mint(world.token, w.address, 1000)
    backend = ProcessBackend(chain)
    store = store_factory()
    hub = make_hub(world, backend, store)
    pubs: dict[str, int] = {}

    async def first_life() -> None:
        s = await open_all(hub, wallets)
        for name in wallets:
            pubs[name] = (await s[name].create_session()).public_key
        await s["user-6"].register_session(max_calls=3)
        await s["user-6"].execute_with_session(world.transfer(1))
        await s["user-7"].register_session(max_calls=2)
        backend.plan[("execute", pubs["user-6"])] = "hang"  # journaled, never sent
        backend.plan[("execute", pubs["user-7"])] = "after_apply"  # executed, answer lost
        async with anyio.create_task_group() as tg:
            tg.start_soon(s["user-6"].execute_with_session, world.transfer(1))
            await backend.hung.wait()
            await s["user-7"].execute_with_session(world.transfer(1))
        raise AssertionError("unreachable")

    await until_death(world, hub, first_life)
    assert_no_plaintext_keys(tmp_path, secrets_of(world, wallets, store))
    assert {e.key for e in store.journal_pending()} == {"user-6", "user-7"}
    w6, w7 = wallets["user-6"].address, wallets["user-7"].address

    store = store_factory()
    async with make_hub(world, chain, store) as hub2:
        s = await open_all(hub2, wallets)
        await quiesce()
        # user-7: its nonce is used, so the restart knows it executed and never resends it
        assert chain.session_status(w7, pubs["user-7"]).calls_used == 1
        assert s["user-7"].session_status == chain.session_status(w7, pubs["user-7"])
        await s["user-7"].execute_with_session(world.transfer(1))
        with pytest.raises(ChipiSessionError) as info:
            await s["user-7"].execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert 1000 - world.balance(w7) == 2
        # user-6: its execute is still in doubt (window open): its entry stays journaled
        left = store.journal_pending()
        assert [e.key for e in left] == ["user-6"] and left[0].action == "execute"
        assert left[0].execute_before is not None and left[0].execute_before > world.clock.now()
        assert chain.session_status(w6, pubs["user-6"]).calls_used == 1
        # ... and counted against the budget meanwhile: 3 - 1 used - 1 in doubt = 1 left
        assert len(s["user-6"].in_doubt) == 1
        await s["user-6"].execute_with_session(world.transfer(1))
        with pytest.raises(ChipiSessionError) as info:
            await s["user-6"].execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        # the window closes: the hub's timer resolves it from the chain (never executed)
        world.clock.advance(PAST_WINDOW)
        await eventually(lambda: store.journal_pending() == [])
        await quiesce()
        assert not s["user-6"].in_doubt
        while True:
            try:
                await s["user-6"].execute_with_session(world.transfer(1))
            except ChipiSessionError as exc:
                assert exc.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
                break
        status = chain.session_status(w6, pubs["user-6"])
        assert status.calls_used == status.max_calls == 3
        assert 1000 - world.balance(w6) == 3  # the lost request never ran; the rest once each
        for name, session in s.items():
            assert session.session_state is chain_state(world, wallets[name], session)
    assert world.balance(RECIPIENT) == 5
    assert_no_plaintext_keys(tmp_path, secrets_of(world, wallets, store))


async def test_restarted_hub_counts_an_in_doubt_execute_against_the_budget(
    world: World, store_factory: StoreFactory
) -> None:
    """Regression: the in-doubt execute the restarted hub finds in its journal survives the
    session's restore and is counted against the budget until the chain decides it."""
    chain = world.chain
    wallet = world.wallet
    backend = ProcessBackend(chain)
    store = store_factory()
    hub = make_hub(world, backend, store)
    pub = 0

    async def first_life() -> None:
        nonlocal pub
        s = await hub.open(key="user-1", wallet=wallet, encrypt_key=PIN)
        pub = (await s.create_session()).public_key
        await s.register_session(max_calls=2)
        backend.plan[("execute", pub)] = "after_submit"  # journaled with its nonce, then death
        await s.execute_with_session(world.transfer(1))

    await until_death(world, hub, first_life)
    store = store_factory()
    async with make_hub(world, chain, store) as hub2:
        s = await hub2.open(key="user-1", wallet=wallet, encrypt_key=PIN)
        await quiesce()
        assert len(store.journal_pending()) == 1  # unresolved: its window is open
        assert len(s.in_doubt) == 1  # ... so it must count against the budget
        await s.execute_with_session(world.transfer(1))  # 2 - 1 in doubt = 1 call left
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED


async def test_a_journal_entry_of_a_replaced_session_does_not_touch_the_current_one(
    world: World, store_factory: StoreFactory
) -> None:
    from chipi_session.backends.faults import FaultInjectingBackend

    fb = FaultInjectingBackend(world.chain)
    store = store_factory()
    async with make_hub(world, fb, store) as hub:
        s = await hub.open(key="user-1", wallet=world.wallet, encrypt_key=PIN)
        await s.create_session()
        fb.fail_next("add_or_update_session_key", "drop_response")  # registered on chain...
        fb.fail_next("outside_nonce_used", "error_before_send")  # ... but nobody can tell
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session(max_calls=2)
        assert info.value.code is ErrorCode.UNKNOWN_OUTCOME and info.value.applied is None
        fresh = await s.create_session()  # the user moves on to a new key
        await eventually(  # (see test_a_graceful_close_keeps_the_latest_session)
            lambda: store.load("user-1").session.public_key == fresh.public_key  # type: ignore[union-attr]
        )
    store = store_factory()
    async with make_hub(world, world.chain, store) as hub2:
        s = await hub2.open(key="user-1", wallet=world.wallet, encrypt_key=PIN)
        await quiesce()
        assert s.session is not None and s.session.public_key == fresh.public_key
        assert not world.chain.session_status(world.wallet.address, fresh.public_key).exists
        assert s.session_state is SessionState.CREATED  # never registered, not "revoked"


async def test_a_graceful_close_keeps_the_latest_session(
    world: World, store_factory: StoreFactory
) -> None:
    store = store_factory()
    for _ in range(6):  # asyncio loses the race every time, trio ~9 times in 10
        async with make_hub(world, world.chain, store) as hub:
            s = await hub.open(key="user-1", wallet=world.wallet, encrypt_key=PIN)
            await s.create_session()
            latest = await s.create_session()
        record = store.load("user-1")
        assert record is not None and record.session is not None
        assert record.session.public_key == latest.public_key


async def test_what_the_journal_resolved_survives_the_next_restart(
    world: World, store_factory: StoreFactory
) -> None:
    backend = ProcessBackend(world.chain)
    store = store_factory()
    hub = make_hub(world, backend, store)

    async def first_life() -> None:
        s = await hub.open(key="user-1", wallet=world.wallet, encrypt_key=PIN)
        pub = (await s.create_session()).public_key
        backend.plan[("revoke", pub)] = "after_apply"  # revoked on chain, then death
        await s.revoke_session()

    await until_death(world, hub, first_life)
    for life in ("second", "third"):
        store = store_factory()
        async with make_hub(world, world.chain, store) as hub2:
            s = await hub2.open(key="user-1", wallet=world.wallet, encrypt_key=PIN)
            await quiesce()
            assert store.journal_pending() == []
            assert s.session_state is SessionState.REVOKED, life


def test_the_plaintext_scan_finds_a_key_in_clear(tmp_path: Path) -> None:
    """The scan above is not vacuous: a key written in any of its forms is caught."""
    key = 0x3C1D2E5F6A7B8C9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7
    for i, form in enumerate(secret_text_forms(key)):
        (tmp_path / f"leak-{i}").write_text(f'{{"k": "{form}"}}')
        with pytest.raises(AssertionError):
            assert_no_plaintext_keys(tmp_path, [key])
        (tmp_path / f"leak-{i}").unlink()


def test_store_files_are_private(tmp_path: Path) -> None:
    """The store's own files are 0600 (keys are encrypted, but the metadata is private)."""
    if os.name != "posix":  # pragma: no cover
        pytest.skip("POSIX permissions")
    SqliteStore(tmp_path / "a.db").close()
    JsonFileStore(tmp_path / "a.json").close()
    for name in ("a.db", "a.json"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
