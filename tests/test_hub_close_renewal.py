"""A close in the middle of a renewal: the store and the session agree on the current key
(found by tests/test_hub_properties.py's HubMachine, minimized), on asyncio and trio with the
manual clock.

* A closed session never switches to its successor: the renewal runs in the background and
  used to finish after ``hub.close`` (the successor registered, the session switched, the
  record never saved again), so the closed session said one key and the store another.
* A record save cut short (its writer cancelled, e.g. an execute given up on) leaves the
  record dirty: the next flush saves it (it used to count as saved).
"""

from __future__ import annotations

import anyio
import attrs
import pytest

from chipi_session import RenewalPolicy, SessionHub, SessionRenewed
from chipi_session.events import Event
from chipi_session.stores import MemoryStore
from chipi_session.stores.async_store import as_async_store
from chipi_session.stores.hub_journal import StoreJournal
from chipi_session.types import SessionKeyData, SessionStatus, WalletData

from .gated import GatedChain
from .helpers import PIN, World, settle

pytestmark = pytest.mark.anyio

REGISTER = "add_or_update_session_key"


async def test_a_session_closed_mid_renewal_keeps_its_key_and_its_record(world: World) -> None:
    store = MemoryStore()
    gated = GatedChain(world.chain)
    policy = RenewalPolicy(min_remaining_calls=2)
    seen: list[Event] = []
    async with SessionHub(
        backend=gated, clock=world.clock, vault=world.vault, store=store, renewal=policy
    ) as hub:
        hub.add_listener(seen.append)
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REGISTER, "after")  # the successor's register: ran, answer held
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await gate.reached.wait()
        successor = s.renewal_successor
        assert successor is not None
        await hub.close(s)
        gate.release()  # the renewal goes on after the close
        await settle()
        assert s.session == first  # a closed session never switches
        assert not any(isinstance(e, SessionRenewed) for e in seen)
        record = store.load("u")
        assert record is not None and record.session == s.session
        assert record.successor == successor  # on record: the next open decides it
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, store=store
    ) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        await settle()
        assert s.session is not None and s.session.public_key == successor.public_key
        record = store.load("u")
        assert record is not None and record.session == s.session and record.successor is None


@attrs.define
class _Source:
    """A session's record fields (``RecordSource``)."""

    wallet: WalletData
    session: SessionKeyData | None = None
    session_status: SessionStatus | None = None
    seen_registered: bool = False
    renewal_successor: SessionKeyData | None = None
    retiring_keys: tuple[int, ...] = ()


async def test_a_record_save_cut_short_is_saved_by_the_next_flush(world: World) -> None:
    store = MemoryStore()
    source = _Source(world.wallet)
    journal = StoreJournal(as_async_store(store), "u", source, world.clock)
    journal.mark_dirty()
    with anyio.CancelScope() as scope:
        scope.cancel()  # cancelled at the save's first checkpoint: nothing saved
        await journal.flush()
    assert store.load("u") is None
    await journal.flush()
    record = store.load("u")
    assert record is not None and record.wallet == world.wallet
