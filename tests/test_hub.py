"""SessionHub: many sessions on one scheduler; auto-renewal; backoff."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from chipi_session import (
    ActionFailed,
    ChipiSessionError,
    ErrorCode,
    RenewalPolicy,
    SessionHub,
    SessionRenewed,
    SessionState,
    StateChanged,
    TransactionSubmitted,
)
from chipi_session.events import Event

from .helpers import PIN, RECIPIENT, World, eventually, settle

pytestmark = pytest.mark.anyio


def hub_for(world: World, **kwargs: Any) -> SessionHub:
    kwargs.setdefault("backend", world.chain)
    kwargs.setdefault("clock", world.clock)
    kwargs.setdefault("vault", world.vault)
    return SessionHub(**kwargs)


async def test_many_sessions_share_one_scheduler(world: World) -> None:
    seen: list[Event] = []
    async with hub_for(world, status_interval=30, poll_batch_size=10) as hub:
        hub.add_listener(seen.append)
        sessions = [await hub.open(wallet=world.wallet, encrypt_key=PIN) for _ in range(25)]
        assert len(hub) == 25
        for i, s in enumerate(sessions):
            await s.create_session(100 + i)
            await s.register_session(max_calls=5, allowed_entrypoints=["transfer"])
            await s.execute_with_session(world.transfer(1))
        assert world.balance(RECIPIENT) == 25
        # one timer heap holds every expiry deadline
        assert len(hub.scheduler.timers) >= 25
        world.clock.advance(30)
        await settle()
        # batches of 10, rate-limited in clock time (20 batches/s by default)
        assert hub.scheduler.poller.reads == 10 and hub.scheduler.poller.batches == 1
        for _ in range(2):
            world.clock.advance(0.05)
            await settle()
        assert hub.scheduler.poller.reads == 25 and hub.scheduler.poller.batches == 3
        world.clock.set(sessions[0].session.valid_until + 0.5)  # type: ignore[union-attr]
        await settle()
        assert sessions[0].session_state is SessionState.EXPIRED
        assert sessions[0].state_reason == "time"
        assert all(s.session_state is SessionState.ACTIVE for s in sessions[2:])
        world.clock.advance(30)
        await settle()
        assert all(s.session_state is SessionState.EXPIRED for s in sessions)
        assert all(s.state_reason == "time" for s in sessions)
        await hub.close(sessions[1])
        assert len(hub) == 24
        with pytest.raises(ChipiSessionError) as info:
            await sessions[1].create_session()
        assert info.value.code is ErrorCode.CLOSED
        await sessions[2].create_session()  # the others are unaffected
    keys = {e.session_public_key for e in seen if isinstance(e, StateChanged)}
    assert len(keys) == 26  # 25 sessions + the re-created one


async def test_duplicate_key_and_closed_hub(world: World) -> None:
    hub = hub_for(world)
    async with hub:
        await hub.open(wallet=world.wallet, encrypt_key=PIN, key="alice")
        with pytest.raises(ChipiSessionError) as info:
            await hub.open(wallet=world.wallet, encrypt_key=PIN, key="alice")
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert hub.get("alice") is not None
    with pytest.raises(ChipiSessionError) as info:
        await hub.open(wallet=world.wallet, encrypt_key=PIN)
    assert info.value.code is ErrorCode.CLOSED


async def test_renewal_by_calls_switches_then_revokes_the_old_key(world: World) -> None:
    seen: list[Event] = []
    policy = RenewalPolicy(min_remaining_calls=2, max_calls=4)
    async with world.session(renewal=policy) as s:
        s.add_listener(seen.append)
        first = await s.create_session(3600)
        await s.register_session(max_calls=4, allowed_entrypoints=["transfer"])
        for _ in range(10):
            await s.execute_with_session(world.transfer(1))
            assert s.has_active_session or s.is_renewing  # never without a usable session
        await eventually(lambda: not s.is_renewing)
        assert world.balance(RECIPIENT) == 10
        assert s.session is not None and s.session.public_key != first.public_key
    renewed = [e for e in seen if isinstance(e, SessionRenewed)]
    assert len(renewed) >= 3
    assert renewed[0].previous_public_key == hex(first.public_key)
    # every previous key is revoked on chain, the current one is not
    for ev in renewed:
        old = int(ev.previous_public_key, 16)
        assert world.chain.session_status(world.wallet.address, old).valid_until == 0
    actions = [e.action for e in seen if isinstance(e, TransactionSubmitted)]
    assert actions.count("revoke_previous") == len(renewed)
    # no execute was ever signed by a revoked key: the chain accepted all ten
    assert actions.count("execute") == 10


async def test_renewal_by_time_happens_before_expiry(world: World) -> None:
    seen: list[Event] = []
    policy = RenewalPolicy(min_remaining_seconds=60, duration_seconds=600)
    async with world.session(renewal=policy) as s:
        s.add_listener(seen.append)
        first = await s.create_session(300)
        await s.register_session(max_calls=10)
        world.clock.set(first.valid_until - 60)
        await eventually(lambda: s.session.public_key != first.public_key)  # type: ignore[union-attr]
        world.clock.set(first.valid_until + 1)
        await settle()
        assert s.session_state is SessionState.ACTIVE  # the successor lives on
        await s.execute_with_session(world.transfer(3))
        assert s.session.valid_until == first.valid_until - 60 + 600
    assert any(isinstance(e, SessionRenewed) for e in seen)
    assert not any(isinstance(e, StateChanged) and e.current == "expired" for e in seen)


class FailingRegister:
    """A backend whose register fails (retryably) the first ``failures`` times."""

    def __init__(self, chain: Any, failures: int) -> None:
        self._chain = chain
        self.failures = failures
        self.attempts = 0
        self.requires_bearer_token = False
        self.clock = chain.clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        self.attempts += 1
        if self.attempts > 1 and self.attempts <= 1 + self.failures:
            raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "paymaster down")
        return str(await self._chain.add_or_update_session_key(*args, **kwargs))


async def test_renewal_failures_back_off_and_surface(world: World) -> None:
    backend = FailingRegister(world.chain, failures=100)
    seen: list[Event] = []
    policy = RenewalPolicy(
        min_remaining_calls=5, retry_initial=10, retry_max=40, max_attempts=4
    )
    async with world.session(backend=backend, renewal=policy) as s:
        s.add_listener(seen.append)
        await s.create_session(3600)
        await s.register_session(max_calls=10)
        for _ in range(7):
            await s.execute_with_session(world.transfer(1))
            await eventually(lambda: not s.is_renewing)
        assert backend.attempts == 2  # one failed renewal; no retry before the backoff
        for step in (10, 20, 40, 40, 40):
            world.clock.advance(step)
            await settle()
            await eventually(lambda: not s.is_renewing)
        assert backend.attempts == 1 + 4  # initial register + max_attempts renewals
        failures = [e for e in seen if isinstance(e, ActionFailed) and e.action == "renew"]
        assert len(failures) == 4
        assert s.error is not None and s.error.code is ErrorCode.BACKEND_UNAVAILABLE
        assert s.has_active_session  # the current session is still usable
        await s.execute_with_session(world.transfer(1))


async def test_hub_wide_renewal_policy(world: World) -> None:
    async with hub_for(world, renewal=RenewalPolicy(min_remaining_calls=1)) as hub:
        s = await hub.open(wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=2)
        await s.execute_with_session(world.transfer(1))
        await eventually(lambda: s.session.public_key != first.public_key)  # type: ignore[union-attr]
        assert s.remaining_calls == 2


async def test_concurrent_executes_during_renewal_never_use_a_revoked_key(world: World) -> None:
    policy = RenewalPolicy(min_remaining_calls=3)
    ok = 0
    async with world.session(renewal=policy) as s:
        await s.create_session()
        await s.register_session(max_calls=5)

        async def pay() -> None:
            nonlocal ok
            try:
                await s.execute_with_session(world.transfer(1))
                ok += 1
            except ChipiSessionError as exc:
                raise AssertionError(f"no execute may fail during renewal: {exc!r}") from exc

        for _ in range(4):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(pay)
            await settle()
    # executes that found the budget spent waited for the successor instead of failing
    assert world.balance(RECIPIENT) == ok == 16
