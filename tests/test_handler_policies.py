"""handlers/policies.SpendingPolicies on its own: a fresh handler driven directly, with a
ChipiSession on LocalChain as its context (handlers/context.SessionContext) and a manual clock.
The chain is the ground truth for what the owner-signed writes did."""

from __future__ import annotations

import pytest

from chipi_session import ChipiSessionError, ErrorCode, TransactionSubmitted
from chipi_session.events import Event
from chipi_session.handlers.policies import SpendingPolicies
from chipi_session.keys import generate_private_key, public_key_of

from .helpers import World

pytestmark = pytest.mark.anyio


async def test_set_writes_the_cap_and_the_local_view_checks_counts_and_resets(
    world: World,
) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=10)
        seen: list[Event] = []
        s.add_listener(seen.append)
        caps = SpendingPolicies(s)
        assert caps.known == {}
        caps.check((world.transfer(10**9),), int(world.clock.now()))  # nothing known: passes

        tx = await caps.set(world.token, 100, 150, 3600)
        on_chain = world.chain.spending_policy(world.wallet.address, data.public_key, world.token)
        assert (on_chain.max_per_call, on_chain.max_per_window) == (100, 150)
        assert caps.known[world.token].window_start == int(world.clock.now())
        assert [(e.action, e.tx_hash) for e in seen if isinstance(e, TransactionSubmitted)] == [
            ("set_spending_policy", tx)
        ]

        now = int(world.clock.now())
        with pytest.raises(ChipiSessionError) as info:
            caps.check((world.transfer(101),), now)
        assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
        caps.check((world.transfer(100),), now)
        assert caps.known[world.token].spent_in_window == 0  # a check spends nothing
        caps.spent((world.transfer(100),), now)
        assert caps.known[world.token].spent_in_window == 100
        with pytest.raises(ChipiSessionError):
            caps.check((world.transfer(60),), now)  # 160 > 150 in this window
        caps.reset_windows(now + 5)
        assert caps.known[world.token].spent_in_window == 0
        assert caps.known[world.token].window_start == now + 5
        caps.check((world.transfer(60),), now + 5)


async def test_spending_past_a_cap_forgets_the_stale_view(world: World) -> None:
    async with world.session() as s:
        await s.create_session()
        await s.register_session(max_calls=10)
        caps = SpendingPolicies(s)
        await caps.set(world.token, 100, 150, 3600)
        caps.spent((world.transfer(100), world.transfer(100)), int(world.clock.now()))
        assert caps.known == {}  # the chain accepted what we thought it would refuse


async def test_send_set_for_another_key_leaves_the_local_view_alone(world: World) -> None:
    async with world.session() as s:
        await s.create_session()
        await s.register_session(max_calls=10)
        caps = SpendingPolicies(s)
        other = public_key_of(generate_private_key())
        await caps.send_set(other, world.token, 7, 9, 60)
        assert (
            world.chain.spending_policy(world.wallet.address, other, world.token).max_per_call == 7
        )
        assert caps.known == {}


async def test_get_reads_the_chain_and_remove_drops_the_cap(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=10)
        caps = SpendingPolicies(s)
        assert await caps.get(world.token) is None
        await caps.set(world.token, 100, 150, 3600)
        caps.forget()
        assert caps.known == {}
        found = await caps.get(world.token)
        assert found is not None and found.max_per_window == 150
        assert caps.known == {world.token: found}

        await caps.remove(world.token)
        policy = world.chain.spending_policy(world.wallet.address, data.public_key, world.token)
        assert not policy.exists
        assert caps.known == {}
        assert await caps.get(world.token) is None


async def test_actions_refuse_bad_input_and_a_missing_session(world: World) -> None:
    async with world.session() as s:
        caps = SpendingPolicies(s)
        with pytest.raises(ChipiSessionError) as info:
            await caps.get(world.token)
        assert info.value.code is ErrorCode.NO_SESSION
        await s.create_session()
        with pytest.raises(ChipiSessionError) as info:
            await caps.set(world.token, 10, 5, 60)  # per call above the window's cap
        assert info.value.code is ErrorCode.INVALID_SPENDING_POLICY
        assert caps.known == {}
