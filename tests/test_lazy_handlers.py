"""Handlers a session makes on first use (memory per hub session, issue 10) still do their job.

A session without a renewal policy has no renewer until something needs one (keys a previous
run left to retire, an execute's checks); its spending caps, owner-write lock and pending
counts are made the same way. These tests use such a session through its public API only and
check that what the lazily made part does is what the session reports.
"""

from __future__ import annotations

import pytest

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, RenewalPolicy, SessionHub
from chipi_session.stores import MemoryStore

from .gated import GatedChain
from .helpers import PIN, World, eventually, settle

pytestmark = pytest.mark.anyio

REVOKE = "revoke_session_key"


def is_valid_on_chain(world: World, public_key: int) -> bool:
    return world.chain.session_status(world.wallet.address, public_key).exists


async def test_keys_left_to_retire_are_revoked_by_a_session_without_a_renewal_policy(
    world: World,
) -> None:
    store = MemoryStore()
    gated = GatedChain(world.chain)
    policy = RenewalPolicy(min_remaining_calls=2)
    async with SessionHub(
        backend=gated, clock=world.clock, vault=world.vault, store=store, renewal=policy
    ) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REVOKE, "before")  # the old key's revoke never gets out
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await gate.reached.wait()
        await hub.close(s)
    assert is_valid_on_chain(world, first.public_key)
    # the next run has no renewal policy: its renewer is made for the keys left to retire
    gated = GatedChain(world.chain)
    gate = gated.hold(REVOKE, "before")
    async with SessionHub(backend=gated, clock=world.clock, vault=world.vault, store=store) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        assert s.is_renewing and s.retiring_keys == (first.public_key,)
        await gate.reached.wait()
        gate.release()
        await eventually(lambda: not s.is_renewing)
        await settle()
        assert s.retiring_keys == ()
        assert not is_valid_on_chain(world, first.public_key)
        await s.execute_with_session(world.transfer(1))  # the current key still signs
    record = store.load("u")
    assert record is not None and record.retiring == ()


async def test_a_session_that_never_renews_or_sets_caps_uses_them_on_first_use(
    world: World,
) -> None:
    token = world.token
    async with ChipiSession(
        wallet=world.wallet,
        encrypt_key=PIN,
        backend=world.chain,
        clock=world.clock,
        vault=world.vault,
        auto_check_status=False,
    ) as s:
        assert not s.is_renewing and s.retiring_keys == () and not s.is_executing
        await s.create_session()
        await s.register_session(max_calls=10)
        await s.execute_with_session(world.transfer(1))  # before any cap is known
        await s.set_spending_policy(token, 5, 8, 3600)
        await s.execute_with_session(world.transfer(5))
        with pytest.raises(ChipiSessionError) as caught:  # the cap set above is checked
            await s.execute_with_session(world.transfer(5))
        assert caught.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
        assert (await s.get_spending_policy(token)) is not None
        await s.revoke_session()  # the owner-write lock made by the register is reused
        assert not s.has_active_session and not s.is_renewing
