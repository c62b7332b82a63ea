"""BlockingChipiSession from plain synchronous code, plus a stateful property test."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chipi_session import (
    BlockingChipiSession,
    ChipiSessionError,
    ErrorCode,
    SessionState,
    StateChanged,
)

from .helpers import PIN, RECIPIENT, World, make_world


def blocking(world: World, async_backend: str = "asyncio") -> BlockingChipiSession:
    return world.blocking(async_backend)


@pytest.mark.parametrize("async_backend", ["asyncio", "trio"])
def test_blocking_lifecycle_with_poll_and_submit(async_backend: str) -> None:
    world = make_world()
    with blocking(world, async_backend) as s:
        assert s.poll_events() == []
        data = s.create_session(600)
        s.register_session(max_calls=3, allowed_entrypoints=["transfer"])
        future = s.submit("execute_with_session", [world.transfer(5)])
        assert isinstance(future, Future)
        assert future.result(timeout=30).startswith("0x")
        assert world.balance(RECIPIENT) == 5
        events = s.poll_events()
        changes = [(e.previous.value, e.current.value) for e in events if isinstance(e, StateChanged)]
        assert changes == [("none", "created"), ("created", "active")]
        assert s.poll_events() == []  # drained
        bad = s.submit("execute_with_session", [world.transfer(5), "nope"])
        with pytest.raises(ChipiSessionError) as info:
            bad.result(timeout=30)
        assert info.value.code is ErrorCode.INVALID_INPUT
        s.portal.call(world.clock.set, data.valid_until + 1)
        s.portal.call(lambda: None)
        # the expiry timer runs on the loop thread; wait for it through the loop
        import anyio

        s.portal.call(anyio.wait_all_tasks_blocked)
        assert s.session_state is SessionState.EXPIRED and s.state_reason == "time"
        with pytest.raises(ChipiSessionError) as info:
            s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_EXPIRED
        with pytest.raises(ChipiSessionError):
            s.submit("not_an_action")
    with pytest.raises(ChipiSessionError) as info:
        s.create_session()
    assert info.value.code is ErrorCode.CLOSED


class BlockingSessionMachine(RuleBasedStateMachine):
    """Random action sequences through the blocking facade, checked against a model."""

    def __init__(self) -> None:
        super().__init__()
        self.world = make_world()
        self.session = blocking(self.world).__enter__()
        self.state = "none"
        self.max_calls = 0
        self.used = 0
        self.valid_until = 0
        self.paid = 0

    def teardown(self) -> None:
        self.session.close()

    @rule(duration=st.integers(10, 100))
    def create(self, duration: int) -> None:
        data = self.session.create_session(duration)
        self.valid_until = data.valid_until
        self.state, self.used = "created", 0

    @rule(max_calls=st.integers(1, 3))
    def register(self, max_calls: int) -> None:
        try:
            self.session.register_session(max_calls=max_calls)
        except ChipiSessionError as exc:
            assert self.state in ("none", "revoked") or (
                self.state == "expired" and self.world.clock.now() > self.valid_until
            ), exc
            return
        assert self.state in ("created", "active", "expired")
        self.state, self.max_calls, self.used = "active", max_calls, 0

    @rule(amount=st.integers(1, 5))
    def execute(self, amount: int) -> None:
        try:
            self.session.execute_with_session(self.world.transfer(amount))
        except ChipiSessionError as exc:
            assert self.state != "active", exc
            return
        assert self.state == "active"
        self.used += 1
        self.paid += amount
        if self.used >= self.max_calls:
            self.state = "expired"

    @rule(seconds=st.integers(0, 60))
    def advance(self, seconds: int) -> None:
        import anyio

        self.session.portal.call(self.world.clock.advance, seconds)
        self.session.portal.call(anyio.wait_all_tasks_blocked)
        if self.state in ("created", "active") and self.world.clock.now() > self.valid_until:
            self.state = "expired"

    @rule()
    def revoke(self) -> None:
        try:
            self.session.revoke_session()
        except ChipiSessionError:
            assert self.state in ("none", "revoked")
            return
        self.state = "revoked"

    @rule()
    def clear(self) -> None:
        self.session.clear_session()
        self.state = "none"

    @invariant()
    def agrees(self) -> None:
        assert self.session.session_state.value == self.state
        assert self.world.balance(RECIPIENT) == self.paid
        assert not self.session.is_executing


TestBlockingSessionMachine = BlockingSessionMachine.TestCase
TestBlockingSessionMachine.settings = settings(
    max_examples=15, stateful_step_count=20, deadline=None
)


def test_backend_name_is_the_deprecated_spelling_of_async_backend() -> None:
    """``backend=`` is always the session backend; the loop is ``async_backend``. The old
    ``backend_name`` still works, with a DeprecationWarning, and is still checked."""
    world = make_world()
    kwargs = dict(wallet=world.wallet, encrypt_key=PIN, backend=world.chain, clock=world.clock,
                  vault=world.vault, auto_check_status=False)
    with pytest.warns(DeprecationWarning, match="async_backend"):
        session = BlockingChipiSession(backend_name="trio", **kwargs)
    with session as s:
        assert s.create_session(600).valid_until == int(world.clock.now()) + 600
    with pytest.raises(ChipiSessionError) as e:
        BlockingChipiSession(async_backend="curio", **kwargs)
    assert e.value.code is ErrorCode.INVALID_INPUT and "async_backend" in e.value.message
    with pytest.warns(DeprecationWarning), pytest.raises(ChipiSessionError) as e:
        BlockingChipiSession(backend_name="curio", **kwargs)
    assert e.value.code is ErrorCode.INVALID_INPUT and "backend_name" in e.value.message
