"""``SessionLifecycleMachine``: a hypothesis state machine of one session, to extend.

Why: a bot's own rules ("never tip a user twice", "a daily limit") only hold if they hold
while sessions are created, registered, used up, revoked and expired, with time passing and the
network failing. This base class already drives all of that against LocalChain through a
:class:`FaultInjectingBackend` and checks the engine's own promises; a project subclasses it,
adds ``@rule`` s for its bot's actions and ``@invariant`` s for its business rules, and runs it
as a normal test (:meth:`SessionLifecycleMachine.run_as_test`, on asyncio or trio).

The engine runs in a blocking portal's event loop (the machine's rules are synchronous, as
hypothesis requires); use :meth:`run` to await something there and :meth:`on_loop` to touch the
chain (LocalChain is single-threaded). Invariants checked after every step:

* the chain never counted more calls than a session's ``max_calls``;
* every execute reported as succeeded has a succeeded receipt that moved the amount; the money
  that reached the recipient is between what was reported applied and that plus the executes
  whose outcome is still unknown;
* every error is a typed ``ChipiSessionError`` with a consistent ``retryable`` / ``applied``;
* no action is left in progress;
* while no fault was injected since the last :meth:`converge`, the local state equals the
  state the chain says; :meth:`converge` (a rule, and teardown) clears faults, lets every SNIP-9
  window close, refetches and requires it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.from_thread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ..backends.faults import FaultInjectingBackend
from ..engine import ChipiSession
from ..errors import ChipiSessionError, ErrorCode
from ..felts import selector
from ..lifecycle import derive_state
from ..types import Call, SessionState
from .strategies import FaultPlan, fault_plans, whitelists
from .world import ChainWorld, make_world, settle, travel

__all__ = ["SessionLifecycleMachine", "check_error"]

T = TypeVar("T")

#: Longer than the paymaster's SNIP-9 window (one hour): every write in doubt resolves.
PAST_WINDOW = 3601
#: The calls the base machine scripts faults on (executes most often: where money moves).
_FAULTY_METHODS = (
    "execute_with_session",
    "execute_with_session",
    "add_or_update_session_key",
    "revoke_session_key",
    "get_session_status",
)
_ADDED_OR_REVOKED = frozenset({selector("SessionKeyAdded"), selector("SessionKeyRevoked")})


def check_error(exc: ChipiSessionError) -> None:
    """The engine's error contract: an unavailable backend is retryable and nothing was
    applied; an unknown outcome is not retryable and never claims "not applied" wrongly."""
    assert isinstance(exc, ChipiSessionError), repr(exc)
    if exc.code is ErrorCode.BACKEND_UNAVAILABLE:
        assert exc.retryable is True and exc.applied in (None, False), repr(exc)
    elif exc.code is ErrorCode.UNKNOWN_OUTCOME:
        assert exc.retryable is False and exc.applied in (None, True), repr(exc)
    else:
        assert exc.applied is None, repr(exc)


class SessionLifecycleMachine(RuleBasedStateMachine):
    """One wallet's :class:`ChipiSession` on LocalChain, through a fault-injecting backend.

    Attributes for subclasses: :attr:`world` (chain, clock, wallet, token), :attr:`session`,
    :attr:`backend` (the :class:`FaultInjectingBackend`), :attr:`recipient` (where the base
    rules send money). Override :meth:`session_options` to configure the session (renewal...).
    """

    #: The anyio backend the engine runs on ("asyncio" or "trio").
    anyio_backend: ClassVar[str] = "asyncio"
    #: Where :meth:`execute_transfer` sends money.
    recipient: ClassVar[int] = 0xB0B << 200  # far from small addresses a subclass may draw
    #: Starting balance of the wallet.
    funds: ClassVar[int] = 10**12

    def __init__(self, anyio_backend: str | None = None) -> None:
        super().__init__()
        self.backend_name = anyio_backend or self.anyio_backend
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(self.backend_name)
        )
        self.portal = self._portal_cm.__enter__()
        self._session_cm: AbstractContextManager[ChipiSession] | None = None
        try:
            self.world: ChainWorld = self.portal.call(lambda: make_world(funds=self.funds))
            self.backend = FaultInjectingBackend(self.world.chain, seed=0, clock=self.world.clock)
            self._session_cm = self.portal.wrap_async_context_manager(
                self.world.session(backend=self.backend, **self.session_options())
            )
            self.session: ChipiSession = self._session_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        #: every session key the machine created: (wallet, public key)
        self.keys: set[tuple[int, int]] = set()
        self.reported = 0  # amount of executes reported succeeded
        self.reported_applied = 0  # amount of UNKNOWN_OUTCOME executes with applied=True
        self.unresolved = 0  # amount of executes whose outcome is not known
        self.faulty = False  # a fault was injected since the last converge
        self.errors: list[ChipiSessionError] = []

    # ------------------------------------------------------------------ for subclasses
    def session_options(self) -> dict[str, Any]:
        """Extra keyword arguments for the :class:`ChipiSession` (override to add renewal...)."""
        return {}

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``fn(*args)`` on the engine's event loop, then let the loop settle."""

        async def go() -> T:
            try:
                return await fn(*args)
            finally:
                await settle()

        return self.portal.call(go)

    def on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a plain function on the engine's thread (for anything touching the chain)."""
        return self.portal.call(fn, *args)

    def attempt(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T | ChipiSessionError:
        """:meth:`run`, returning a :class:`ChipiSessionError` instead of raising it (after
        checking its contract with :func:`check_error`). Any other exception fails the test."""

        async def go() -> T | ChipiSessionError:
            try:
                return await fn(*args)
            except ChipiSessionError as exc:
                check_error(exc)
                self.errors.append(exc)
                return exc

        return self.run(go)

    def advance(self, seconds: float) -> None:
        """Move time forward, firing the engine's timers in order (:func:`travel`)."""
        self.run(travel, self.world.clock, seconds)

    def chain_state(self) -> SessionState | None:
        """The state the chain says the current session is in (docs/engine.md,
        "Deriving the state from the chain"), or None."""
        data = self.session.session
        if data is None:
            return None

        def read() -> SessionState:
            chain, wallet, pub = self.world.chain, self.session.wallet.address, data.public_key
            seen = any(
                e.from_address == wallet
                and e.keys[0] in _ADDED_OR_REVOKED
                and e.keys[1:2] == (pub,)
                for e in chain.events
            )
            now = chain.now()
            state, _ = derive_state(
                chain.session_status(wallet, pub),
                now,
                local_valid_until=data.valid_until,
                seen_registered=seen,
            )
            return state

        return self.on_loop(read)

    # ------------------------------------------------------------------ rules
    @rule(duration=st.sampled_from([30, 600, 20_000]))
    def create_session(self, duration: int) -> None:
        result = self.attempt(self.session.create_session, duration)
        if not isinstance(result, ChipiSessionError):
            self.keys.add((self.session.wallet.address, result.public_key))

    @rule(
        max_calls=st.integers(1, 20),
        allowed=st.one_of(st.just(["transfer"]), st.just([]), whitelists(max_size=3)),
    )
    def register_session(self, max_calls: int, allowed: list[Any]) -> None:
        """Register the session, creating a new one first if it has none usable."""
        s = self.session
        dead = s.session_state is SessionState.REVOKED or (
            s.session_state is SessionState.EXPIRED and s.state_reason == "time"
        )
        if s.session is None or dead:
            self.create_session(20_000)
        self.attempt(s.register_session, max_calls, allowed)

    @initialize()
    def start_with_an_active_session(self) -> None:
        """Every run starts with a registered session (20 calls, ``transfer`` allowed)."""
        self.create_session(20_000)
        self.attempt(self.session.register_session, 20, ["transfer"])

    @rule(amount=st.integers(1, 1000))
    def execute_transfer(self, amount: int) -> None:
        call = self.world.transfer(amount, self.recipient)
        result = self.attempt(self.session.execute_with_session, [call])
        if isinstance(result, ChipiSessionError):
            if result.code is ErrorCode.UNKNOWN_OUTCOME:
                if result.applied:
                    self.reported_applied += amount
                elif result.applied is None:
                    self.unresolved += amount
            return
        self.reported += amount
        self.check_receipt(result, [call])

    @rule()
    def revoke_session(self) -> None:
        self.attempt(self.session.revoke_session)

    @rule()
    def refetch_status(self) -> None:
        self.attempt(self.session.refetch_status)

    @rule(seconds=st.sampled_from([1, 29, 45, 700, PAST_WINDOW]))
    def advance_time(self, seconds: int) -> None:
        self.advance(seconds)

    @rule(plan=fault_plans(methods=_FAULTY_METHODS, max_size=2))
    def inject_faults(self, plan: FaultPlan) -> None:
        if plan.steps:
            self.faulty = True
        plan.apply(self.backend)

    @rule()
    def converge(self) -> None:
        """Faults off, every SNIP-9 window closed: the local state is the chain's."""
        self.backend.clear()

        async def settle_doubts() -> None:
            await travel(self.world.clock, PAST_WINDOW)
            for _ in range(200):
                if not self.session.in_doubt:
                    break
                await anyio.sleep(0.001)
                await settle()
            assert not self.session.in_doubt, self.session.in_doubt
            if self.session.session is not None:
                await self.session.refetch_status()

        self.run(settle_doubts)
        self.faulty = False
        self.unresolved = 0
        moved = self.on_loop(self.world.balance, self.recipient)
        self.reported_applied = moved - self.reported  # every doubt about money is resolved
        self.check_local_equals_chain()

    def teardown(self) -> None:
        try:
            self.converge()
        finally:
            try:
                if self._session_cm is not None:
                    self._session_cm.__exit__(None, None, None)
            finally:
                self._portal_cm.__exit__(None, None, None)

    # ------------------------------------------------------------------ checks
    def check_receipt(self, tx_hash: str, calls: Sequence[Call]) -> None:
        """A reported success is on chain, succeeded, and emitted a Transfer per call."""
        receipt = self.on_loop(self.world.chain.get_receipt, tx_hash)
        assert receipt is not None and receipt.succeeded, (tx_hash, receipt)
        transfers = [e for e in receipt.events if e.keys[:1] == (selector("Transfer"),)]
        assert len(transfers) >= len(calls), receipt

    def check_local_equals_chain(self) -> None:
        expected = self.chain_state()
        if expected is None:
            return
        assert self.session.session_state is expected, (self.session.session_state, expected)

    @invariant()
    def budget_never_overspent(self) -> None:
        def check() -> None:
            for wallet, pub in self.keys:
                status = self.world.chain.session_status(wallet, pub)
                assert status.calls_used <= status.max_calls, status

        self.on_loop(check)

    @invariant()
    def money_matches_reports(self) -> None:
        moved = self.on_loop(self.world.balance, self.recipient)
        low = self.reported + self.reported_applied
        assert low <= moved <= low + self.unresolved, (moved, low, self.unresolved)

    @invariant()
    def nothing_stuck(self) -> None:
        s = self.session
        assert not (s.is_creating or s.is_registering or s.is_executing or s.is_revoking)

    @invariant()
    def local_state_is_the_chains(self) -> None:
        if not self.faulty and not self.session.in_doubt:
            self.check_local_equals_chain()

    # ------------------------------------------------------------------ running
    @classmethod
    def run_as_test(
        cls,
        anyio_backend: str = "asyncio",
        *,
        max_examples: int = 10,
        stateful_step_count: int = 20,
        **kwargs: Any,
    ) -> None:
        """Run the machine as a test on ``anyio_backend`` (no deadline; extra ``settings``
        keyword arguments pass through, e.g. ``derandomize=True``)."""
        kwargs.setdefault("deadline", None)
        kwargs.setdefault("suppress_health_check", [HealthCheck.too_slow])
        bound = type(f"{cls.__name__}[{anyio_backend}]", (cls,), {"anyio_backend": anyio_backend})
        run_state_machine_as_test(
            bound,
            settings=settings(
                max_examples=max_examples, stateful_step_count=stateful_step_count, **kwargs
            ),
        )
