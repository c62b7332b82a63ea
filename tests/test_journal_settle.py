"""A live hub settles the journal entry of a write left in doubt once the chain decides it
(it does not wait for the next restart)."""

from __future__ import annotations

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionHub
from chipi_session.backends.faults import FaultInjectingBackend
from chipi_session.stores import MemoryStore

from .helpers import PIN, RECIPIENT, World, eventually, make_world, settle

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", ["timeout_after_send", "lost_request"])
async def test_in_doubt_journal_entry_is_settled_live(kind: str) -> None:
    world: World = make_world()
    fb = FaultInjectingBackend(world.chain, seed=0)
    store = MemoryStore()
    async with SessionHub(backend=fb, clock=world.clock, vault=world.vault, store=store) as hub:
        s = await hub.open(key="alice", wallet=world.wallet, encrypt_key=PIN)
        await s.create_session()
        await s.register_session(max_calls=3)
        fb.fail_next("execute_with_session", kind)
        fb.fail_next("outside_nonce_used", "error_before_send")  # the outcome cannot be read
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(4))
        assert info.value.code is ErrorCode.UNKNOWN_OUTCOME and info.value.applied is None
        await settle()
        assert [e.action for e in store.journal_pending("alice")] == ["execute"]
        applied = kind == "timeout_after_send"
        # an executed one is resolved early by the status read that follows (its nonce is
        # used); a lost one can only be decided once its window has closed
        assert len(s.in_doubt) == (0 if applied else 1)
        world.clock.advance(3601)  # past the SNIP-9 window: the chain has decided
        await eventually(lambda: not store.journal_pending("alice") and not s.in_doubt)
        assert world.balance(RECIPIENT) == (4 if applied else 0)
        status = world.chain.session_status(world.wallet.address, s.session.public_key)  # type: ignore[union-attr]
        assert s.session_status == status and status.calls_used == int(applied)
