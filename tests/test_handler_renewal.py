"""handlers/renewal.Renewer on its own: a fresh Renewer driven directly, with a ChipiSession on
LocalChain as its context (handlers/context.RenewalContext; the session's own renewal is off)
and a manual clock. The chain is the ground truth for what was registered and revoked."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from chipi_session import ActionFailed, ErrorCode, RenewalPolicy, SessionRenewed
from chipi_session.events import Event
from chipi_session.handlers import registration
from chipi_session.handlers.renewal import Renewer

from .helpers import World, eventually, settle

pytestmark = pytest.mark.anyio


def renewer(s: Any, policy: RenewalPolicy | None) -> Renewer:
    return Renewer(s, policy, default_duration=3600, default_max_calls=10)


def valid_on_chain(world: World, public_key: int) -> bool:
    return world.chain.session_status(world.wallet.address, public_key).valid_until > 0


async def test_a_renewal_registers_the_successor_switches_and_retires_the_old_key(
    world: World,
) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        old = await s.create_session(3600)
        await s.register_session(max_calls=10)
        await s.set_spending_policy(world.token, 100, 150, 3600)
        r = renewer(s, RenewalPolicy(min_remaining_calls=2, max_calls=5))
        assert r.in_progress() is None and not r.busy
        r.start()
        assert s.core.renewing and isinstance(r.in_progress(), anyio.Event) and r.busy
        await eventually(lambda: not r.busy)

        new = s.session
        assert new is not None and new.public_key != old.public_key
        status = world.chain.session_status(world.wallet.address, new.public_key)
        assert (status.max_calls, status.calls_used) == (5, 0)
        cap = world.chain.spending_policy(world.wallet.address, new.public_key, world.token)
        assert cap.max_per_call == 100  # the caps were copied before the switch
        assert not valid_on_chain(world, old.public_key)  # retired
        assert r.retiring_keys == () and r.in_progress() is None
        renewed = [e for e in seen if isinstance(e, SessionRenewed)]
        assert len(renewed) == 1
        assert s.has_active_session and s.remaining_calls == 5
        await s.execute_with_session(world.transfer(1))  # the successor signs


async def test_nothing_starts_without_a_policy_or_above_the_threshold(world: World) -> None:
    async with world.session() as s:
        await s.create_session(3600)
        await s.register_session(max_calls=4)
        renewer(s, None).start()
        renewer(s, None).maybe_renew_by_calls()
        assert not s.core.renewing
        r = renewer(s, RenewalPolicy(min_remaining_calls=2, max_calls=10))
        await s.execute_with_session(world.transfer(1))  # 3 left
        r.maybe_renew_by_calls()
        assert not s.core.renewing
        await s.execute_with_session(world.transfer(1))  # 2 left: due
        r.maybe_renew_by_calls()
        assert s.core.renewing
        await eventually(lambda: not r.busy)
        assert s.remaining_calls == 10


async def test_the_timer_fires_at_the_policy_deadline_and_cancel_disarms_it(
    world: World,
) -> None:
    async with world.session() as s:
        data = await s.create_session(3600)
        await s.register_session(max_calls=10)
        r = renewer(s, RenewalPolicy(min_remaining_seconds=600))
        due = data.valid_until - 600
        r.arm()
        world.clock.advance(due - 1 - world.clock.now())
        await settle()
        assert not s.core.renewing  # not due yet
        r.cancel()
        world.clock.advance(1)
        await settle()
        assert not s.core.renewing and s.session is data  # disarmed
        r.arm()  # due now
        await settle()
        await eventually(lambda: not r.busy)
        assert s.session is not None and s.session.public_key != data.public_key


async def test_a_successor_due_at_once_gives_up_without_retrying(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        data = await s.create_session(3600)
        await s.register_session(max_calls=3)
        r = renewer(s, RenewalPolicy(min_remaining_calls=5, retry_initial=1))
        r.start()
        await eventually(lambda: not r.busy)
        failed = [e for e in seen if isinstance(e, ActionFailed) and e.action == "renew"]
        assert len(failed) == 1 and failed[0].error.code is ErrorCode.INVALID_INPUT
        world.clock.advance(10)
        await settle()
        r.start()  # gave up: no second attempt
        assert not s.core.renewing
        assert s.session is data and valid_on_chain(world, data.public_key)


async def test_resume_retires_left_keys_and_drops_a_successor_never_registered(
    world: World,
) -> None:
    async with world.session() as s:
        first = await s.create_session(3600)
        await s.register_session(max_calls=10)
        second = await s.create_session(3600)
        await s.register_session(max_calls=10)
        orphan, key = await s.new_session_key(3600)
        key.zero()
        r = renewer(s, None)
        await r.resume(orphan, [first.public_key])
        await eventually(lambda: not r.busy)
        assert not valid_on_chain(world, first.public_key)
        assert r.retiring_keys == ()
        assert s.session is second and s.core.successor is None
        assert valid_on_chain(world, second.public_key)


async def test_resume_adopts_a_successor_the_chain_has_registered(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        first = await s.create_session(3600)
        await s.register_session(max_calls=10)
        successor, key = await s.new_session_key(3600)
        key.zero()
        await registration.register_key(s, successor.public_key, successor.valid_until, 7, ())
        r = renewer(s, None)
        await r.resume(successor, ())
        assert s.session is successor and s.remaining_calls == 7
        assert [e.new_public_key for e in seen if isinstance(e, SessionRenewed)] != []
        await eventually(lambda: not r.busy)
        assert not valid_on_chain(world, first.public_key)
        await s.execute_with_session(world.transfer(1))  # its key is decrypted on use
