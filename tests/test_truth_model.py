"""Issue 9's proof: what the engine reports is what the chain did, under everything at once.

A hypothesis state machine drives three ChipiSessions on one LocalChain (two share a wallet,
the third renews itself; standalone, or opened in one SessionHub with a store) through a FaultInjectingBackend (a few event-loop checkpoints of
latency on every call, confirmation reads included; scripted faults on the next call) on a
ManualClock. One step is a *burst*: executes (``wait=True`` and ``wait=False``, multicalls
whose calls may fail inside the non-atomic v33 multicall), executes whose caller cancels them
after a chosen number of checkpoints, registers, revokes, clears, creates, status polls,
spending-policy writes, clock jumps and executes sent the moment an owner write landed, all
started concurrently. Other steps: concurrent executes of one session, a re-register while
executes are sent as it lands, scripted faults, an
execute left in doubt (optionally while the node's reads are down as its window closes). The async objects live in
one blocking portal's event loop across steps (asyncio and trio).

The reference model (tests/truth_helpers.py) never reads the engine's internals: it knows what
the engine *reported* for each execute and what the chain's ledger says (balances of a fresh
recipient per call, used SNIP-9 nonces as seen leaving the engine, session data, key events).

After every step: no request was ever sent twice; the chain's calls_used never exceeded
max_calls; an execute reported succeeded moved exactly its amounts, one reported failed
(applied=False, or refused) or cancelled before it was sent moved nothing and never will; every
recipient's balance is accounted for by the wallet it came from. At quiescence (faults off,
the clock past every SNIP-9 window, background confirmations and resolutions done): every
execute's report is final and agrees with the chain (confirmed ones executed, per-call
outcomes are the chain's, in-doubt ones resolved to "executed and moved" or "moved nothing");
no session under-counts its budget; after a status poll each session's state, status and
remaining_calls are the chain's; and the spending policy the engine enforces is the chain's
(an execute just over the chain's room is refused locally, one exactly at it goes through).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import anyio
import anyio.from_thread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chipi_session import (
    ChipiSession,
    ChipiSessionError,
    ErrorCode,
    RenewalPolicy,
    SessionHub,
    SessionState,
    WalletData,
)
from chipi_session.backends.faults import FaultInjectingBackend, FaultRates
from chipi_session.store import MemoryStore
from chipi_session.types import ExecutionResult

from .helpers import PIN, World, make_world
from .truth_helpers import (
    ADDED,
    EXECUTE,
    FAULTS,
    LATENCY,
    OPS,
    OWNER_OPS,
    PLANS,
    POLICY_SLOT,
    RENEWING_SLOT,
    REVOKED,
    SLOT_IDS,
    SLOTS,
    Attempt,
    EventLog,
    Report,
    WireRecorder,
    chain_state,
    check_final,
    check_ledger,
    final_report,
    keys_in_events,
    make_call,
    report_error,
    report_result,
    spending_room,
)

T = TypeVar("T")


async def quiesce() -> None:
    for _ in range(8):
        await anyio.sleep(0)
    await anyio.wait_all_tasks_blocked()


class TruthMachine(RuleBasedStateMachine):
    BACKEND = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(self.BACKEND)
        )
        self.portal = self.portal_cm.__enter__()
        self.world: World = self.portal.call(make_world)
        self.sessions: list[ChipiSession] = []
        self.context_managers: list[AbstractContextManager[Any]] = []
        self.wallets: list[WalletData] = []
        self.start_balance: dict[int, int] = {}
        self.attempts: list[Attempt] = []
        self.ids = itertools.count()
        self.recipients = itertools.count(0x10_0000)
        self.events = EventLog()
        self.fb: Any = None
        self.wire: WireRecorder | None = None
        self.racing: set[int] = set()
        self.broken = False

    # ------------------------------------------------------------------ plumbing
    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return self.portal.call(fn, *args)
        except BaseException:
            self.broken = True  # teardown must not hide this failure behind its own
            raise

    def on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return self.portal.call(fn, *args)
        except BaseException:
            self.broken = True
            raise

    @initialize(seed=st.integers(0, 2**16), hub=st.booleans())
    def setup(self, seed: int, hub: bool) -> None:
        """Three sessions, standalone or opened in one SessionHub (its shared timer heap,
        status poller and journal in a MemoryStore)."""
        world = self.world
        other = self.on_loop(world.chain.create_wallet, PIN)
        self.on_loop(world.chain.mint, world.token, other.address, 1_000_000)
        self.wallets = [world.wallet, world.wallet, other]
        for w in {world.wallet.address, other.address}:
            self.start_balance[w] = self.on_loop(world.balance, w)
        self.fb = FaultInjectingBackend(
            world.chain, seed=seed, rates=LATENCY, per_method={"get_execution_result": LATENCY}
        )
        self.wire = WireRecorder(
            self.fb, seed=seed, max_response_checkpoints=3, max_owner_response_checkpoints=12
        )
        session_hub: SessionHub | None = None
        if hub:
            session_hub = SessionHub(
                backend=self.wire, clock=world.clock, vault=world.vault, store=MemoryStore()
            )
            cm: AbstractContextManager[Any] = self.portal.wrap_async_context_manager(session_hub)
            cm.__enter__()
            self.context_managers.append(cm)
        for slot, wallet in enumerate(self.wallets):
            renewal = (
                RenewalPolicy(min_remaining_calls=1, max_calls=4) if slot == RENEWING_SLOT else None
            )
            if session_hub is not None:
                opener = functools.partial(
                    session_hub.open,
                    key=f"slot-{slot}",
                    wallet=wallet,
                    encrypt_key=PIN,
                    renewal=renewal,
                )
                session = self.run(opener)
            else:
                session = world.session(
                    wallet=wallet,
                    backend=self.wire,
                    auto_check_status=True,
                    status_interval=30.0,
                    renewal=renewal,
                )
                cm = self.portal.wrap_async_context_manager(session)
                cm.__enter__()
                self.context_managers.append(cm)
            self.sessions.append(session)
            self.on_loop(self.events.listen, session)

    def teardown(self) -> None:
        try:
            if self.wire is not None and not self.broken:
                self.converge()
        finally:
            try:
                for cm in reversed(self.context_managers):
                    cm.__exit__(None, None, None)
            finally:
                self.portal_cm.__exit__(None, None, None)

    # ------------------------------------------------------------------ actions
    async def _guard(self, action: Awaitable[Any]) -> Any:
        try:
            return await action
        except ChipiSessionError as exc:
            report_error(exc)  # every error keeps the promises of its code
            return exc

    async def _register(self, slot: int, max_calls: int) -> None:
        s = self.sessions[slot]
        dead = s.session_state is SessionState.REVOKED or (
            s.session_state is SessionState.EXPIRED and s.state_reason == "time"
        )
        if s.session is None or dead:
            await self._guard(s.create_session(20_000))
        if s.session is not None:
            await self._guard(s.register_session(max_calls=max_calls))

    def _new_attempt(self, slot: int, plan: list[tuple[str, int]], wait: bool) -> Attempt:
        aid = next(self.ids)
        full = [(kind, next(self.recipients), amount) for kind, amount in plan]
        calls = tuple(make_call(k, self.world.token, to, n, aid) for k, to, n in full)
        attempt = Attempt(aid, slot, self.wallets[slot].address, full, calls, wait)
        attempt.raced = slot in self.racing
        self.attempts.append(attempt)
        return attempt

    async def _execute(self, attempt: Attempt) -> None:
        s = self.sessions[attempt.slot]
        try:
            if attempt.wait:
                result = await s.execute_with_session(attempt.calls, wait=True)
                assert isinstance(result, ExecutionResult)
                assert not result.failed, ("a failed result is raised as CALL_FAILED", result)
                attempt.result, attempt.tx_hash = result, result.tx_hash
                attempt.report = report_result(result)
            else:
                attempt.tx_hash = await s.execute_with_session(attempt.calls)
                attempt.report = Report.PENDING
        except ChipiSessionError as exc:
            attempt.error = exc
            attempt.report = report_error(exc)
            if exc.result is not None:
                attempt.result, attempt.tx_hash = exc.result, exc.result.tx_hash

    async def _exec_op(self, slot: int, plan: list[tuple[str, int]], wait: bool) -> None:
        s = self.sessions[slot]
        if s.session_state in (SessionState.NONE, SessionState.CREATED):
            await self._register(slot, 3)  # a user who wants to pay sets a session up first
        await self._execute(self._new_attempt(slot, plan, wait))

    async def _cancel_op(self, slot: int, plan: list[tuple[str, int]], after: int) -> None:
        """An execute whose caller gives up after ``after`` checkpoints (its ``fail_after``)."""
        attempt = self._new_attempt(slot, plan, after % 2 == 0)
        finished = anyio.Event()

        async def pay() -> None:
            await self._execute(attempt)
            finished.set()

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pay)
                for _ in range(after):
                    await anyio.sleep(0)
                scope.cancel()
        if not finished.is_set():
            attempt.report = Report.CANCELLED

    async def _op(self, op: tuple[Any, ...]) -> None:
        name, args = op[0], op[1:]
        world = self.world
        if name == "exec":
            await self._exec_op(*args)
        elif name == "exec_after_write":
            assert self.wire is not None
            with anyio.move_on_after(0.2):  # real time: the others may not write at all
                await self.wire.owner_write_landed.wait()
            await self._exec_op(*args)
        elif name == "cancel":
            await self._cancel_op(*args)
        elif name == "register":
            await self._register(*args)
        elif name == "revoke":
            await self._guard(self.sessions[args[0]].revoke_session())
        elif name == "refetch":
            await self._guard(self.sessions[args[0]].refetch_status())
        elif name == "create":
            await self._guard(self.sessions[args[0]].create_session(args[1]))
        elif name == "clear":
            self.sessions[args[0]].clear_session()
        elif name == "policy":
            s = self.sessions[POLICY_SLOT]
            await self._guard(s.set_spending_policy(world.token, *args))
        elif name == "unpolicy":
            await self._guard(self.sessions[POLICY_SLOT].remove_spending_policy(world.token))
        elif name == "jump":  # after a few checkpoints: in the middle of the others
            for _ in range(args[1]):
                await anyio.sleep(0)
            world.clock.advance(args[0])
        else:  # pragma: no cover
            raise AssertionError(name)

    # ------------------------------------------------------------------ rules
    @rule(ops=st.lists(OPS, min_size=1, max_size=7))
    def burst(self, ops: list[tuple[Any, ...]]) -> None:
        """Every op started at once; the step ends when all of them returned."""

        racing = {op[1] for op in ops if op[0] in OWNER_OPS}
        if any(op[0] in ("policy", "unpolicy") for op in ops):
            racing.add(POLICY_SLOT)
        if any(op[0] == "jump" for op in ops):
            racing = set(range(SLOTS))
        self.racing = racing

        async def go() -> None:
            async with anyio.create_task_group() as tg:
                for op in ops:
                    tg.start_soon(self._op, op)
            await quiesce()

        try:
            self.run(go)
        finally:
            self.racing = set()

    @rule(slot=SLOT_IDS, plan=PLANS, wait=st.booleans())
    def execute(self, slot: int, plan: list[tuple[str, int]], wait: bool) -> None:
        async def go() -> None:
            await self._exec_op(slot, plan, wait)
            await quiesce()

        self.run(go)

    @rule(slot=SLOT_IDS, n=st.integers(2, 5), wait=st.booleans())
    def pay_many(self, slot: int, n: int, wait: bool) -> None:
        """``n`` concurrent executes of one session, nothing else racing them."""

        async def go() -> None:
            s = self.sessions[slot]
            if s.session_state in (SessionState.NONE, SessionState.CREATED):
                await self._register(slot, 3)
            await quiesce()
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    attempt = self._new_attempt(slot, [("ok", 1 + i)], wait)
                    tg.start_soon(self._execute, attempt)
            await quiesce()

        self.run(go)

    @rule(slot=SLOT_IDS, max_calls=st.integers(1, 5), n=st.integers(1, 3), wait=st.booleans())
    def reregister_under_executes(self, slot: int, max_calls: int, n: int, wait: bool) -> None:
        """Re-register a session while executes are sent as the register lands (issue 9 §2:
        a re-register racing executes must not lose count of them)."""
        execs = [("exec_after_write", slot, [("ok", 1 + i)], wait) for i in range(n)]
        self.burst([("register", slot, max_calls), *execs])

    @rule(fault=FAULTS)
    def fault_next_call(self, fault: tuple[str, Any]) -> None:
        self.fb.fail_next(fault[0], fault[1])

    @rule(
        slot=SLOT_IDS,
        kind=st.sampled_from(["timeout_after_send", "drop_response", "lost_request"]),
        reads_down=st.booleans(),
    )
    def execute_in_doubt(self, slot: int, kind: Any, reads_down: bool) -> None:
        """One execute whose outcome cannot be read yet: nonce reads fail meanwhile (and
        status reads too, with ``reads_down``: the node is unreachable)."""
        self.fb.fail_next(EXECUTE, kind)
        down = ["outside_nonce_used"] + (["get_session_status"] if reads_down else [])
        for method in down:
            self.fb.per_method[method] = FaultRates(error_before_send=1.0)
        try:
            self.execute(slot, [("ok", 5)], True)
            if reads_down:  # nonce reads are back; its window closes while status reads fail
                del self.fb.per_method[down.pop(0)]
                self.jump_during_read_outage(3601)
        finally:
            for method in down:
                del self.fb.per_method[method]
            self.fb.clear()

    @rule(seconds=st.sampled_from([45, 3601]))
    def jump_during_read_outage(self, seconds: int) -> None:
        """Time passes (polls, expiries, in-doubt windows closing) while every status read
        fails: what the engine learns meanwhile must not rely on a re-read to be counted."""
        outage = "get_session_status" not in self.fb.per_method
        self.fb.per_method["get_session_status"] = FaultRates(error_before_send=1.0)

        async def go() -> None:
            self.world.clock.advance(seconds)
            await quiesce()

        try:
            self.run(go)
        finally:
            if outage:
                del self.fb.per_method["get_session_status"]

    @rule()
    def converge(self) -> None:
        """Quiescence: faults off, every SNIP-9 window closed, everything settled; then the
        whole model is checked against the chain."""
        self.fb.clear()
        self.run(self._settle_all)
        self.on_loop(self._check_reports_final)
        for slot in range(SLOTS):
            self.run(self._check_session, slot)
        self.run(self._probe_spending)
        self.on_loop(self._check_reports_final)

    # ------------------------------------------------------------------ quiescence
    async def _settle_all(self) -> None:
        assert self.wire is not None
        await quiesce()
        windows = [info.execute_before for info in self.wire.sent.values()]
        now = self.world.clock.now()
        if windows and max(windows) >= now:  # every SNIP-9 window closed: doubts resolve
            self.world.clock.advance(max(windows) + 1 - now)
        for _ in range(100):
            await quiesce()
            busy = any(
                s.in_doubt or s.is_executing or s.is_registering or s.is_revoking
                for s in self.sessions
            )
            if not busy:
                break
            await anyio.sleep(0.001)
        for s in self.sessions:
            assert not s.in_doubt, ("in doubt at quiescence", s.in_doubt)
            assert not (s.is_executing or s.is_registering or s.is_revoking)

    def _executed(self, attempt: Attempt) -> bool:
        """The chain's answer: the execute's SNIP-9 nonce is used."""
        assert self.wire is not None
        info = self.wire.sent.get(attempt.calls)
        return info is not None and self.world.chain.is_outside_nonce_used(
            info.wallet_address, info.outside_nonce
        )

    def _check_reports_final(self) -> None:
        sent = self._sent()
        for a in self.attempts:
            report = final_report(a, self.events.by_hash.get(a.tx_hash or "", []))
            moved = {to: self.world.balance(to) for _, to, _ in a.plan}
            check_final(a, report, executed=self._executed(a), moved=moved, sent=a.calls in sent)
        # no request was sent twice
        assert self.wire is not None
        assert all(n <= 1 for n in self.wire.execute_calls.values())

    def _sent(self) -> set[Any]:
        assert self.wire is not None
        return set(self.wire.sent)

    async def _check_session(self, slot: int) -> None:
        s = self.sessions[slot]
        chain = self.world.chain
        if s.session is None:
            return
        pub, wallet = s.session.public_key, s.wallet.address
        status = chain.session_status(wallet, pub)
        local = s.session_status
        if s.session_state is SessionState.ACTIVE and local is not None and status.exists:
            # never an under-count: the pre-flight would let through what the chain refuses
            assert local.calls_used >= status.calls_used, (slot, local, status)
        await s.refetch_status()
        await quiesce()
        if s.session is None or s.session.public_key != pub:
            return  # a renewal switched keys meanwhile: the next converge checks the new one
        status = chain.session_status(wallet, pub)
        now = int(self.world.clock.now())
        expected = chain_state(
            status,
            now,
            local_valid_until=s.session.valid_until,
            owner_acted=pub in keys_in_events(chain, wallet, ADDED, REVOKED),
        )
        assert s.session_state is expected, (slot, s.session_state, expected, status)
        assert s.session_status == status, (slot, s.session_status, status)
        assert s.remaining_calls == status.remaining_calls

    async def _probe_spending(self) -> None:
        """The policy the engine enforces is the chain's: just over the chain's room is
        refused before anything is sent; exactly the room (or, without a policy, more than
        any policy of this test allows) goes through and succeeds."""
        s = self.sessions[POLICY_SLOT]
        if s.session is None or s.session_state is not SessionState.ACTIVE:
            return
        chain, now = self.world.chain, int(self.world.clock.now())
        pub = s.session.public_key
        policy = chain.spending_policy(s.wallet.address, pub, self.world.token)
        room = spending_room(policy, now)
        if room is not None:
            over = self._new_attempt(POLICY_SLOT, [("ok", room + 1)], True)
            await self._execute(over)
            assert over.report is Report.REFUSED, ("over the chain's room", room, over)
            assert over.error is not None
            assert over.error.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED, over
            assert over.calls not in self._sent(), "sent: the local policy is not the chain's"
        amount = room if room is not None else 500
        if amount < 1 or chain.session_status(s.wallet.address, pub).remaining_calls < 1:
            return
        at = self._new_attempt(POLICY_SLOT, [("ok", amount)], True)
        await self._execute(at)
        await quiesce()
        assert at.report is Report.SUCCEEDED, ("at the chain's room", room, at)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def ledger(self) -> None:
        if self.wire is None:
            return
        self.on_loop(self._check_ledger)

    def _check_ledger(self) -> None:
        check_ledger(self.world, self.attempts, self.start_balance, self._sent())

    @invariant()
    def budget_never_undercounted(self) -> None:
        """Between steps nothing is in flight: the calls a session counts (used + in doubt)
        are at least what the chain counts for the same registration, else the pre-flight
        lets through an execute the chain refuses for its budget."""
        if self.wire is not None:
            self.on_loop(self._check_undercount)

    def _check_undercount(self) -> None:
        for slot, s in enumerate(self.sessions):
            local = s.session_status
            if s.session is None or local is None or s.session_state is not SessionState.ACTIVE:
                continue
            chain = self.world.chain.session_status(s.wallet.address, s.session.public_key)
            same = (chain.valid_until, chain.max_calls) == (local.valid_until, local.max_calls)
            if chain.exists and same:
                counted = local.calls_used + len(s.in_doubt)
                assert counted >= chain.calls_used, ("under-counted", slot, local, chain)

    @invariant()
    def nothing_stuck(self) -> None:
        for s in self.sessions:
            assert not (s.is_executing or s.is_registering or s.is_revoking)


SETTINGS = settings(
    settings.default,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class TrioTruthMachine(TruthMachine):
    BACKEND = "trio"


TestTruthOnAsyncio = TruthMachine.TestCase
TestTruthOnAsyncio.settings = SETTINGS
TestTruthOnTrio = TrioTruthMachine.TestCase
TestTruthOnTrio.settings = SETTINGS
