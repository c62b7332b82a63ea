"""handlers/publishing.py: one session's event fan-out — its own subscribers and listeners
(made on first use), a hub's stream, each event stamped with the clock and the session key.

``Publisher`` is driven directly on a manual clock (both anyio backends), then once through a
real session under a hub.
"""

from __future__ import annotations

import attrs
import pytest

from chipi_session import ManualClock, SessionHub, SessionState, StateChanged
from chipi_session.events import Event
from chipi_session.felts import to_hex
from chipi_session.handlers.publishing import Publisher
from chipi_session.pubsub import Broadcaster
from chipi_session.types import SessionKeyData

from .helpers import PIN, World

pytestmark = pytest.mark.anyio

S = SessionState
KEY = SessionKeyData(public_key=0xABC, encrypted_private_key="blob", valid_until=10)


@attrs.define
class Session:
    """The publisher's PublisherContext: a clock and the current key (reads counted)."""

    clock: ManualClock
    current: SessionKeyData | None = KEY
    asked: int = 0

    @property
    def session(self) -> SessionKeyData | None:
        self.asked += 1
        return self.current


def change(publisher: Publisher, **fields: object) -> None:
    publisher.publish(StateChanged, previous=S.NONE, current=S.CREATED, reason="", **fields)


def test_an_event_nobody_can_hear_is_not_built() -> None:
    session = Session(ManualClock(5))
    publisher = Publisher(session, buffer_size=4)
    change(publisher)
    assert session.asked == 0  # not even stamped


def test_listeners_get_stamped_events_and_can_be_removed() -> None:
    clock = ManualClock(5)
    session = Session(clock, None)
    publisher = Publisher(session, buffer_size=4)
    seen: list[Event] = []
    remove = publisher.add_listener(seen.append)
    change(publisher)
    session.current = KEY
    clock.set(7)
    change(publisher)
    change(publisher, session_public_key="0x1")  # the caller names another key
    assert [(e.timestamp, e.session_public_key) for e in seen] == [
        (5, None),
        (7, to_hex(KEY.public_key)),
        (7, "0x1"),
    ]
    remove()
    change(publisher)
    assert len(seen) == 3


async def test_subscribers_have_their_own_bounded_buffers_and_end_on_close() -> None:
    publisher = Publisher(Session(ManualClock(1)), buffer_size=2)
    async with publisher.subscribe() as default, publisher.subscribe(5) as big:
        for _ in range(4):
            change(publisher)
        assert default.dropped == 2 and big.dropped == 0
        publisher.close()
        got_default = [e async for e in default]
        got_big = [e async for e in big]
    assert len(got_default) == 2 and len(got_big) == 4


def test_a_hubs_stream_hears_every_event_and_outlives_the_close() -> None:
    publisher = Publisher(Session(ManualClock(1)), buffer_size=2)
    hub: Broadcaster[Event] = Broadcaster()
    heard: list[Event] = []
    hub.add_listener(heard.append)
    publisher.hub = hub
    change(publisher)  # no local subscriber: the hub alone hears it
    publisher.close()
    change(publisher)
    assert len(heard) == 2


async def test_a_hubs_session_publishes_to_the_hub_and_its_own_listeners(
    world: World,
) -> None:
    seen: list[Event] = []
    heard: list[Event] = []
    async with SessionHub(backend=world.chain, clock=world.clock, vault=world.vault) as hub:
        hub.add_listener(heard.append)
        s = await hub.open(key="a", wallet=world.wallet, encrypt_key=PIN, auto_check_status=False)
        s.add_listener(seen.append)
        data = await s.create_session()
    assert [type(e) for e in seen] == [StateChanged]
    assert seen[0].session_public_key == to_hex(data.public_key)
    assert seen[0] in heard
