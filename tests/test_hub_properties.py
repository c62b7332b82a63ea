"""A hypothesis state machine over SessionHub, checked against the chain as reference model.

Rules: open, create, register, execute (concurrent), revoke, refetch, clear, clock jumps
(status polls), a scripted fault on the next backend call, restart (close the hub, open a new
one on the same store, re-open every key), executes cancelled at a random point (before or after
they were sent), and a race of execute / register / revoke / refetch on one slot. Every backend
call gets a few event-loop checkpoints of latency, so concurrent actions interleave; "user-3"
renews itself (``RenewalPolicy``). The async hub runs in a blocking portal's event loop (asyncio and trio);
every chain access goes through the portal too (LocalChain is single-threaded).

Invariants after every step: the chain never spent more calls than a session's max_calls,
and the engine never even sent an execute the chain refused for its budget;
money moved exactly for the executes the chain accepted, which are between "reported executed"
(returned, or ``UNKNOWN_OUTCOME`` with ``applied=True``) and that plus the unresolved
``UNKNOWN_OUTCOME``s; every error is a typed ``ChipiSessionError`` with the right ``retryable``;
no action stays in progress. The ``converge`` rule (and teardown) lets every SNIP-9 window pass
and then requires each session's state after a refetch to equal the state the chain says, and
its status (calls_used, max_calls, whitelist) to equal the chain's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chipi_session import (
    ActionFailed,
    ChipiSession,
    ChipiSessionError,
    ErrorCode,
    RenewalPolicy,
    SessionHub,
    SessionState,
    TransactionSubmitted,
)
from chipi_session.backends.faults import FaultInjectingBackend, FaultRates
from chipi_session.felts import selector
from chipi_session.lifecycle import derive_state
from chipi_session.stores import MemoryStore, SessionStore, SqliteStore
from chipi_session.types import WalletData

from .helpers import PIN, RECIPIENT, World, make_world, settle

T = TypeVar("T")

PAST_WINDOW = 3601
SLOTS = ("user-1", "user-2", "user-3")
RENEWING_SLOT = "user-3"
#: latency on every backend call: a few event-loop checkpoints, so actions interleave
LATENCY = FaultRates(max_checkpoints=3)
EXECUTE = "execute_with_session"
FAULTS = st.sampled_from(
    [
        ("execute_with_session", "error_before_send"),
        ("execute_with_session", "timeout_after_send"),
        ("execute_with_session", "drop_response"),
        ("execute_with_session", "lost_request"),
        ("execute_with_session", "restart"),
        ("add_or_update_session_key", "error_before_send"),
        ("add_or_update_session_key", "drop_response"),
        ("add_or_update_session_key", "lost_request"),
        ("revoke_session_key", "timeout_after_send"),
        ("revoke_session_key", "lost_request"),
        ("get_session_status", "error_before_send"),
    ]
)
#: Nonce reads fail only around one execute (``execute_in_doubt``): a register / revoke that
#: executed unseen and is learned only from the journal on restart is forgotten by the restart
#: after (test_what_the_journal_resolved_survives_the_next_restart).
IN_DOUBT_KINDS = st.sampled_from(["timeout_after_send", "drop_response", "lost_request"])


def check_error(exc: ChipiSessionError) -> None:
    if exc.code is ErrorCode.BACKEND_UNAVAILABLE:
        assert exc.retryable is True and exc.applied in (None, False), repr(exc)
    elif exc.code is ErrorCode.UNKNOWN_OUTCOME:
        assert exc.retryable is False and exc.applied in (None, True)
    else:
        assert exc.applied is None


async def quiesce() -> None:
    for _ in range(8):
        await anyio.sleep(0)
    await settle()


class HubMachine(RuleBasedStateMachine):
    BACKEND = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(self.BACKEND)
        )
        self.portal = self.portal_cm.__enter__()
        self.tmp = tempfile.mkdtemp(prefix="chipi-hub-props-")
        self.world: World = self.portal.call(make_world)
        self.wallets: dict[str, WalletData] = {}
        self.fb = FaultInjectingBackend(self.world.chain, seed=0)
        self.store: SessionStore = MemoryStore()
        self.hub: SessionHub | None = None
        self.hub_cm: AbstractContextManager[SessionHub] | None = None
        self.sessions: dict[str, ChipiSession] = {}
        self.keys: set[tuple[int, int]] = set()  # (wallet, session key) ever registered-or-tried
        self.ok = 0
        self.applied = 0
        self.unknown = 0
        self.cancelled = 0  # executes cancelled after they were sent (held in doubt)
        self.raced_registers = 0  # registers racing executes: the budget may shrink under them
        #: slots whose register / revoke outcome is unknown since the last restart: no new
        #: session is created there until a restart resolved it from the journal (see
        #: test_a_journal_entry_of_a_replaced_session_does_not_touch_the_current_one)
        self.doubt_slots: set[str] = set()
        self.owner_doubts = 0  # how many register / revoke outcomes were ever left unknown

    # ------------------------------------------------------------------ plumbing
    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def new_store(self, kind: str) -> SessionStore:
        if kind == "memory":
            return self.store if isinstance(self.store, MemoryStore) else MemoryStore()
        self.store.close()
        return SqliteStore(f"{self.tmp}/sessions.db")

    def start_hub(self) -> None:
        world = self.world
        hub = SessionHub(backend=self.fb, clock=world.clock, vault=world.vault, store=self.store)
        self.hub_cm = self.portal.wrap_async_context_manager(hub)
        self.hub = self.hub_cm.__enter__()

    def stop_hub(self) -> None:
        closing = dict(self.sessions)
        if self.hub_cm is not None:
            self.hub_cm.__exit__(None, None, None)
        self.hub = self.hub_cm = None
        self.sessions.clear()
        # a graceful close leaves every open session's current key in the store; read once
        # closed (before, the loop's thread may still be finishing a renewal)
        for slot, s in closing.items():
            if s.session is not None:
                record = self.store.load(slot)
                assert record is not None and record.session == s.session, slot

    async def _guard(self, action: Awaitable[Any], slot: str = "", what: str = "") -> Any:
        try:
            result = await action
        except ChipiSessionError as exc:
            check_error(exc)
            if what in ("register", "revoke") and exc.code is ErrorCode.UNKNOWN_OUTCOME:
                if exc.applied is None:
                    self.doubt_slots.add(slot)
                    self.owner_doubts += 1
            return exc
        finally:
            await quiesce()
        return result

    async def _session(self, slot: str) -> ChipiSession:
        s = self.sessions.get(slot)
        if s is None:
            assert self.hub is not None
            renewal = RenewalPolicy(min_remaining_calls=1, max_calls=4)
            s = await self.hub.open(
                key=slot,
                wallet=self.wallets[slot],
                encrypt_key=PIN,
                renewal=renewal if slot == RENEWING_SLOT else None,
            )
            self.sessions[slot] = s
        return s

    # ------------------------------------------------------------------ setup
    @initialize(store=st.sampled_from(["memory", "sqlite"]), seed=st.integers(0, 2**16))
    def setup(self, store: str, seed: int) -> None:
        chain = self.world.chain
        other = self.on_loop(chain.create_wallet, PIN)
        self.on_loop(chain.mint, self.world.token, other.address, 1_000_000)
        self.wallets = {"user-1": self.world.wallet, "user-2": other, "user-3": self.world.wallet}
        self.fb = FaultInjectingBackend(chain, seed=seed, rates=LATENCY)
        self.store_kind = store
        self.store = self.new_store(store)
        self.start_hub()

    def teardown(self) -> None:
        try:
            if self.hub is not None:
                self.converge()
        finally:
            try:
                self.stop_hub()
            finally:
                self.store.close()
                self.portal_cm.__exit__(None, None, None)
                shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ rules
    @rule(slot=st.sampled_from(SLOTS))
    def open(self, slot: str) -> None:
        self.run(self._guard, self._session(slot))

    @rule(slot=st.sampled_from(SLOTS), duration=st.sampled_from([600, 20_000]))
    def create(self, slot: str, duration: int) -> None:
        async def go() -> None:
            s = await self._session(slot)
            await self._guard(s.create_session(duration))

        self.run(go)

    async def _register(self, slot: str, s: ChipiSession, max_calls: int) -> None:
        """Register the slot's session, creating one first if it has none usable."""
        dead = s.session_state is SessionState.REVOKED or (
            s.session_state is SessionState.EXPIRED and s.state_reason == "time"
        )
        if s.session is None or dead:
            await self._guard(s.create_session(20_000))
        if s.session is not None:
            self.keys.add((s.wallet.address, s.session.public_key))
            await self._guard(s.register_session(max_calls=max_calls), slot, "register")

    @rule(slot=st.sampled_from(SLOTS), max_calls=st.integers(1, 4))
    def register(self, slot: str, max_calls: int) -> None:
        async def go() -> None:
            await self._register(slot, await self._session(slot), max_calls)

        self.run(go)

    @rule(slot=st.sampled_from(SLOTS), n=st.integers(1, 3))
    def execute(self, slot: str, n: int) -> None:
        async def pay(s: ChipiSession) -> None:
            try:
                await s.execute_with_session(self.world.transfer(1))
                self.ok += 1
            except ChipiSessionError as exc:
                check_error(exc)
                if exc.code is ErrorCode.UNKNOWN_OUTCOME:
                    if exc.applied:
                        self.applied += 1
                    else:
                        self.unknown += 1

        async def go() -> None:
            s = await self._session(slot)
            if s.session_state in (SessionState.NONE, SessionState.CREATED):
                await self._register(slot, s, 3)  # a user who wants to pay sets one up first
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(pay, s)
            await quiesce()

        self.run(go)

    async def _pay(self, s: ChipiSession) -> None:
        try:
            await s.execute_with_session(self.world.transfer(1))
            self.ok += 1
        except ChipiSessionError as exc:
            check_error(exc)
            if exc.code is ErrorCode.UNKNOWN_OUTCOME:
                if exc.applied:
                    self.applied += 1
                else:
                    self.unknown += 1

    @rule(slot=st.sampled_from(SLOTS), after=st.integers(0, 8))
    def cancel_execute(self, slot: str, after: int) -> None:
        """An execute whose caller gives up after ``after`` checkpoints (a ``fail_after``)."""

        async def go() -> None:
            s = await self._session(slot)
            if s.session_state is not SessionState.ACTIVE:
                return
            finished = anyio.Event()
            failures: list[ChipiSessionError] = []
            submitted: list[str] = []

            def seen(event: Any) -> None:
                if isinstance(event, ActionFailed) and event.action == "execute":
                    failures.append(event.error)
                if isinstance(event, TransactionSubmitted) and event.action == "execute":
                    submitted.append(event.tx_hash)

            async def pay() -> None:
                await self._pay(s)
                finished.set()

            remove = s.add_listener(seen)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pay)
                    for _ in range(after):
                        await anyio.sleep(0)
                    scope.cancel()
            remove()
            if not finished.is_set():
                # cancelled: if it completed first, the engine published it (the caller just
                # never heard); if it was sent, it is held in doubt; else it moved nothing
                if submitted:
                    self.ok += 1
                elif any(e.code is ErrorCode.UNKNOWN_OUTCOME for e in failures):
                    self.cancelled += 1
                else:
                    assert not failures, failures
            await quiesce()

        self.run(go)

    @rule(slot=st.sampled_from(SLOTS), max_calls=st.integers(1, 4), n=st.integers(1, 3))
    def race(self, slot: str, max_calls: int, n: int) -> None:
        """Executes, a re-register, a revoke and a status read of one slot, all at once."""

        async def go() -> None:
            s = await self._session(slot)
            if s.session_state is not SessionState.ACTIVE:
                return
            self.raced_registers += 1
            async with anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(self._pay, s)
                tg.start_soon(
                    self._guard, s.register_session(max_calls=max_calls), slot, "register"
                )
                tg.start_soon(self._guard, s.refetch_status())
                tg.start_soon(self._guard, s.revoke_session(), slot, "revoke")
            await quiesce()

        self.run(go)

    @rule(slot=st.sampled_from(SLOTS))
    def clear(self, slot: str) -> None:
        async def go() -> None:
            s = await self._session(slot)
            if slot not in self.doubt_slots:
                s.clear_session()
            await quiesce()

        self.run(go)

    @rule(slot=st.sampled_from(SLOTS), kind=IN_DOUBT_KINDS)
    def execute_in_doubt(self, slot: str, kind: Any) -> None:
        """One execute whose outcome cannot be read (nonce reads fail meanwhile)."""
        self.fb.fail_next(EXECUTE, kind)
        self.fb.per_method["outside_nonce_used"] = FaultRates(error_before_send=1.0)
        try:
            self.execute(slot, 1)
        finally:
            del self.fb.per_method["outside_nonce_used"]
            self.fb.clear()  # an execute refused locally leaves its fault unconsumed

    @rule(slot=st.sampled_from(SLOTS))
    def revoke(self, slot: str) -> None:
        async def go() -> None:
            s = await self._session(slot)
            await self._guard(s.revoke_session(), slot, "revoke")

        self.run(go)

    @rule(slot=st.sampled_from(SLOTS))
    def refetch(self, slot: str) -> None:
        async def go() -> None:
            s = await self._session(slot)
            await self._guard(s.refetch_status())

        self.run(go)

    @rule(seconds=st.sampled_from([1, 45, 700, PAST_WINDOW]))
    def jump(self, seconds: int) -> None:
        async def go() -> None:
            self.world.clock.advance(seconds)
            await quiesce()

        self.run(go)

    @rule(fault=FAULTS)
    def fault_next_call(self, fault: tuple[str, Any]) -> None:
        self.fb.fail_next(fault[0], fault[1])

    @rule()
    def restart(self) -> None:
        """Close the hub; a new one on the same store re-opens every key."""
        opened = list(self.sessions)
        self.stop_hub()
        self.store = self.new_store(self.store_kind)
        self.start_hub()
        for slot in opened:
            self.run(self._guard, self._session(slot))
        self.doubt_slots.clear()

    @rule()
    def converge(self) -> None:
        """Faults off, every window closed: each session's state is the chain's."""
        self.fb.clear()
        self.run(self._advance_past_windows)
        for slot in SLOTS:
            self.run(self._check_converged, slot)

    async def _advance_past_windows(self) -> None:
        self.world.clock.advance(PAST_WINDOW)
        await quiesce()
        for _ in range(200):
            if not any(s.in_doubt for s in self.sessions.values()):
                break
            await anyio.sleep(0.001)
            await quiesce()
        assert not any(s.in_doubt for s in self.sessions.values())

    async def _check_converged(self, slot: str) -> None:
        s = await self._session(slot)
        await quiesce()
        if s.session is None:
            return
        await s.refetch_status()
        await quiesce()
        assert s.session_state is self.chain_state(s), (slot, s.session_state)
        status = self.world.chain.session_status(s.wallet.address, s.session.public_key)
        if status.exists:
            assert s.session_status == status, (slot, s.session_status, status)

    def chain_state(self, s: ChipiSession) -> SessionState:
        """The state the chain says (docs/engine.md, "Deriving the state from the chain"),
        'seen registered' from its events."""
        assert s.session is not None
        pub, chain, wallet = s.session.public_key, self.world.chain, s.wallet.address
        names = {selector("SessionKeyAdded"), selector("SessionKeyRevoked")}
        seen = any(
            e.from_address == wallet and e.keys[0] in names and e.keys[1:2] == (pub,)
            for e in chain.events
        )
        now = int(self.world.clock.now())
        state, _ = derive_state(
            chain.session_status(wallet, pub),
            now,
            local_valid_until=s.session.valid_until,
            seen_registered=seen,
        )
        if state is SessionState.CREATED and now > s.session.valid_until:
            return SessionState.EXPIRED  # never registered, and now it never can be
        return state

    # ------------------------------------------------------------------ invariants
    @invariant()
    def budget_never_overspent(self) -> None:
        if self.hub is None:
            return
        chain = self.world.chain

        def check() -> None:
            for wallet, pub in self.keys:
                status = chain.session_status(wallet, pub)
                assert status.calls_used <= status.max_calls

        self.on_loop(check)

    @invariant()
    def no_execute_sent_beyond_the_budget(self) -> None:
        """The engine refuses locally what the chain would refuse for its budget. (A register
        left in doubt may change the budget unseen: the engine re-reads the status then, but
        if that read fails too, one execute may go out against the old budget.)"""
        if not self.owner_doubts and not self.raced_registers:
            assert self.fb.rejected[(EXECUTE, ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0

    @invariant()
    def money_moved_once_per_executed_transfer(self) -> None:
        if self.hub is None:
            return
        moved = self.on_loop(self.world.balance, RECIPIENT)
        assert moved == self.fb.applied[EXECUTE]
        reported = self.ok + self.applied
        assert reported <= moved <= reported + self.unknown + self.cancelled

    @invariant()
    def nothing_stuck(self) -> None:
        for s in self.sessions.values():
            assert not (s.is_executing or s.is_registering or s.is_revoking)


SETTINGS = settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TrioHubMachine(HubMachine):
    BACKEND = "trio"


TestHubOnAsyncio = HubMachine.TestCase
TestHubOnAsyncio.settings = SETTINGS
TestHubOnTrio = TrioHubMachine.TestCase
TestHubOnTrio.settings = SETTINGS
