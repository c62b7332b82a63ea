"""handlers/status.py on its own: ``read_status`` and ``recheck_doubts`` driven directly.

The reads go to a LocalChain (through a reader that can act while a read is in flight, the
way a local write overlaps a poll); the session core is a real ``SessionCore``; the facade's
callbacks are plain recorders. No ``ChipiSession`` is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest

from chipi_session.handlers.status import read_status, recheck_doubts
from chipi_session.keys import SecretKey
from chipi_session.session_core import SessionCore
from chipi_session.types import SessionKeyData, SessionStatus, SpendingPolicy, SubmitInfo

from .helpers import World

pytestmark = pytest.mark.anyio

MAX_CALLS = 5


@attrs.define
class Reader:
    """A SessionReader over a LocalChain that runs ``during(n)`` inside its n-th read."""

    world: World
    during: Callable[[int], None] = lambda n: None
    reads: list[tuple[int, int]] = attrs.Factory(list)

    async def get_session_status(self, address: int, public_key: int) -> SessionStatus:
        self.reads.append((address, public_key))
        self.during(len(self.reads))
        return await self.world.chain.get_session_status(address, public_key)

    async def get_spending_policy(
        self, address: int, public_key: int, token: int
    ) -> SpendingPolicy:
        return await self.world.chain.get_spending_policy(address, public_key, token)


async def read(
    reader: Reader,
    session: SessionKeyData,
    core: SessionCore,
    *,
    current: Callable[[], SessionKeyData | None] | None = None,
    attempts: int = 3,
) -> tuple[SessionStatus | None, list[SessionStatus]]:
    """``read_status`` of ``session`` (the current key unless ``current`` says otherwise):
    what it returned and every status it applied."""
    applied: list[SessionStatus] = []
    status = await read_status(
        reader,
        reader.world.wallet.address,
        session,
        core=core,
        current=current or (lambda: session),
        apply=applied.append,
        attempts=attempts,
    )
    return status, applied


# -- read_status -----------------------------------------------------------------------------
async def test_a_fresh_read_is_applied_once_and_returned(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    core, reader = SessionCore(), Reader(world)
    status, applied = await read(reader, session, core)
    assert status is not None
    assert (status.valid_until, status.max_calls, status.calls_used) == (
        session.valid_until,
        MAX_CALLS,
        0,
    )
    assert applied == [status]
    assert reader.reads == [(world.wallet.address, session.public_key)]


async def test_a_read_overlapped_by_a_local_change_is_read_again(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    core = SessionCore()

    def change_once(n: int) -> None:
        if n == 1:  # something changed locally while the first read was out
            core.begin_write(session.public_key)
            core.end_write(session.public_key)

    reader = Reader(world, change_once)
    status, applied = await read(reader, session, core)
    assert len(reader.reads) == 2
    assert applied == [status]


async def test_a_read_while_a_write_of_the_key_is_in_flight_is_never_applied(
    world: World,
) -> None:
    session = await world.register_key(MAX_CALLS)
    core, reader = SessionCore(), Reader(world)
    core.begin_write(session.public_key)  # its effect may or may not be in what we read
    status, applied = await read(reader, session, core)
    assert applied == []
    assert len(reader.reads) == 3  # every attempt used, then the last status is returned
    assert status is not None and status.max_calls == MAX_CALLS


async def test_a_write_of_another_key_does_not_hold_the_read(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    core, reader = SessionCore(), Reader(world)
    core.begin_write(session.public_key + 1)  # before the read started: not an overlap
    _, applied = await read(reader, session, core)
    assert len(applied) == 1
    assert len(reader.reads) == 1


async def test_a_replaced_key_is_not_read(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    other = attrs.evolve(session, public_key=session.public_key + 1)
    core, reader = SessionCore(), Reader(world)
    status, applied = await read(reader, session, core, current=lambda: other)
    assert status is None
    assert reader.reads == []
    assert applied == []


async def test_a_key_replaced_during_a_stale_read_stops_the_re_reads(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    core = SessionCore()
    holder: list[SessionKeyData | None] = [session]

    def replace(n: int) -> None:
        core.new_generation()  # the read is stale ...
        holder[0] = None  # ... and the key is gone: its status is not ours to apply

    reader = Reader(world, replace)
    status, applied = await read(reader, session, core, current=lambda: holder[0], attempts=5)
    assert len(reader.reads) == 1
    assert applied == []
    assert status is not None  # the last status read is still returned


# -- recheck_doubts --------------------------------------------------------------------------
async def sent_execute(world: World, session_key: SecretKey, valid_until: int) -> SubmitInfo:
    """Execute a transfer on the chain and return the SubmitInfo it reported."""
    infos: list[SubmitInfo] = []

    async def on_submit(info: SubmitInfo) -> None:
        infos.append(info)

    await world.chain.execute_with_session(
        world.wallet,
        session_key,
        valid_until=valid_until,
        calls=[world.transfer()],
        on_submit=on_submit,
    )
    return infos[0]


def chain_resolver(world: World) -> Callable[[SubmitInfo], Awaitable[bool | None]]:
    """ "Executed?" from the chain's SNIP-9 nonce: True if used, None if not known yet."""

    async def resolve(info: SubmitInfo) -> bool | None:
        used = await world.chain.outside_nonce_used(info.wallet_address, info.outside_nonce)
        return True if used else None

    return resolve


async def test_an_executed_doubt_is_settled_counted_and_refetched(world: World) -> None:
    session = await world.register_key(MAX_CALLS)
    valid_until = session.valid_until
    executed = await sent_execute(world, world.signer(session), valid_until)
    never_sent = attrs.evolve(executed, outside_nonce=executed.outside_nonce + 12345)
    core = SessionCore()
    core.status = SessionStatus(valid_until, MAX_CALLS, 0)
    core.hold(executed)
    core.hold(never_sent)
    learned: list[tuple[SubmitInfo, bool | None, int]] = []
    refetches: list[int] = []

    async def refetch() -> None:
        refetches.append(core.generation)

    await recheck_doubts(
        core,
        core.generation,
        resolve=chain_resolver(world),
        learn=lambda info, applied, gen: learned.append((info, applied, gen)),
        refetch=refetch,
    )
    assert learned == [(executed, True, 0), (never_sent, None, 0)]
    assert core.in_doubt == [never_sent]  # the unknown one is still held
    assert (
        core.status is not None and core.status.calls_used == 1
    )  # the executed one counts as a used call
    assert refetches == [0]


async def test_nothing_decided_means_no_refetch(world: World) -> None:
    info = SubmitInfo("execute", world.wallet.address, 7, 0x1234, 2_000_000)
    core = SessionCore()
    core.hold(info)
    refetches: list[None] = []
    learned: list[bool | None] = []

    async def unknown(_: SubmitInfo) -> bool | None:
        return None

    async def refetch() -> None:
        refetches.append(None)

    await recheck_doubts(
        core, 0, resolve=unknown, learn=lambda i, a, g: learned.append(a), refetch=refetch
    )
    assert core.in_doubt == [info]
    assert learned == [None]
    assert refetches == []


async def test_a_doubt_that_never_executed_is_settled_without_counting(world: World) -> None:
    info = SubmitInfo("execute", world.wallet.address, 7, 0x1234, 2_000_000)
    core = SessionCore()
    core.status = SessionStatus(2_000_000, MAX_CALLS, 2)
    core.hold(info)
    refetches: list[None] = []

    async def not_executed(_: SubmitInfo) -> bool | None:
        return False

    async def refetch() -> None:
        refetches.append(None)

    await recheck_doubts(core, 0, resolve=not_executed, learn=lambda i, a, g: None, refetch=refetch)
    assert core.in_doubt == []
    assert core.status is not None and core.status.calls_used == 2
    assert refetches == [None]


async def test_an_old_generation_is_settled_but_not_refetched(world: World) -> None:
    info = SubmitInfo("execute", world.wallet.address, 7, 0x1234, 2_000_000)
    core = SessionCore()
    core.new_generation()  # the key moved on since the recheck was scheduled (generation 0)
    core.hold(info)
    refetches: list[None] = []
    learned: list[int] = []

    async def executed(_: SubmitInfo) -> bool | None:
        return True

    async def refetch() -> None:
        refetches.append(None)

    await recheck_doubts(
        core, 0, resolve=executed, learn=lambda i, a, g: learned.append(g), refetch=refetch
    )
    assert learned == [0]  # the generation it was asked for is what it reports
    assert core.in_doubt == []
    assert refetches == []  # a re-read on the old generation's behalf is not ours to make
