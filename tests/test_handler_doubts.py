"""handlers/doubts.py on its own: holding in-doubt writes and settling them from the chain.

The nonces are read from a LocalChain on a manual clock (the world fixture) through the
handler's own resolution; the session core is a real ``SessionCore``; the facade is
:class:`Ctx`, a recorder implementing ``DoubtContext`` whose timers and background tasks are
lists the test fires and runs itself. No ``ChipiSession`` is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import attrs
import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.handlers import doubts
from chipi_session.keys import SecretKey, generate_private_key
from chipi_session.session_core import SessionCore
from chipi_session.types import SessionStatus, SubmitInfo

from .helpers import World

pytestmark = pytest.mark.anyio

INTERVAL = 30.0


@attrs.define
class Timers:
    """A timer heap the test fires by hand: (deadline, callback) in scheduling order."""

    armed: list[tuple[float, Callable[[], object]]] = attrs.Factory(list)

    def schedule(self, deadline: float, callback: Callable[[], object]) -> None:
        self.armed.append((deadline, callback))

    def fire_all(self) -> None:
        armed, self.armed = self.armed, []
        for _, callback in armed:
            callback()


@attrs.define
class Journal:
    finished: list[object] = attrs.Factory(list)

    async def finish(self, token: object) -> None:
        self.finished.append(token)


@attrs.define(eq=False)
class Ctx:
    """The facade's side of ``DoubtContext``, as plain state and recorders."""

    world: World
    core: SessionCore = attrs.Factory(SessionCore)
    closed: bool = False
    backend: Any = None
    journal: Journal | None = attrs.Factory(Journal)
    clock_timers: Timers = attrs.Factory(Timers)
    status_interval: float = INTERVAL
    spawned: list[tuple[Coroutine[Any, Any, Any], str | None]] = attrs.Factory(list)
    failures: list[tuple[str, ChipiSessionError]] = attrs.Factory(list)
    persisted: int = 0
    refetched: int = 0

    def __attrs_post_init__(self) -> None:
        if self.backend is None:
            self.backend = self.world.chain

    @property
    def clock(self) -> Any:
        return self.world.clock

    @property
    def timers(self) -> Any:
        return None if self.closed else self.clock_timers

    def spawn(self, coro: Awaitable[Any], action: str | None = None) -> None:
        assert isinstance(coro, Coroutine)
        self.spawned.append((coro, action))

    async def run_spawned(self) -> list[str | None]:
        """Run every background task spawned so far (and those they spawn); their actions."""
        actions: list[str | None] = []
        while self.spawned:
            coro, action = self.spawned.pop(0)
            actions.append(action)
            await coro
        return actions

    def persist(self) -> None:
        self.persisted += 1

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        self.failures.append((action, error))

    async def refetch_quietly(self) -> None:
        self.refetched += 1


async def sent(world: World, action: str = "register") -> SubmitInfo:
    """A write that executed on the chain (an owner register, or a session execute), as
    its backend reported it before sending."""
    infos: list[SubmitInfo] = []
    key = SecretKey(generate_private_key())
    valid_until = int(world.clock.now()) + 3600
    await world.chain.add_or_update_session_key(
        world.wallet,
        world.owner,
        session_public_key=key.public_key,
        valid_until=valid_until,
        max_calls=10,
        allowed_entrypoints=(),
        on_submit=infos.append,
    )
    if action == "execute":
        await world.chain.execute_with_session(
            world.wallet,
            key,
            valid_until=valid_until,
            calls=[world.transfer()],
            on_submit=infos.append,
        )
    return infos[-1]


def never_sent(info: SubmitInfo) -> SubmitInfo:
    """The same write with a nonce the chain never saw."""
    return attrs.evolve(info, outside_nonce=info.outside_nonce + 12345)


# -- resolve_outcome -------------------------------------------------------------------------
async def test_resolve_outcome_reads_the_nonce_and_the_window(world: World) -> None:
    ctx = Ctx(world)
    executed = await sent(world)
    missing = never_sent(executed)
    assert await doubts.resolve_outcome(ctx, executed) is True
    assert await doubts.resolve_outcome(ctx, missing) is None  # the window is still open
    world.clock.set(missing.execute_before)
    assert await doubts.resolve_outcome(ctx, missing) is False  # closed: it never will
    assert await doubts.resolve_outcome(ctx, None) is None


async def test_resolve_outcome_without_a_nonce_reader_or_with_a_failing_read(
    world: World,
) -> None:
    info = await sent(world)
    assert await doubts.resolve_outcome(Ctx(world, backend=object()), info) is None

    class Down:
        async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
            raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "down")

    assert await doubts.resolve_outcome(Ctx(world, backend=Down()), info) is None


# -- hold_in_doubt / settle ------------------------------------------------------------------
async def test_an_execute_held_in_doubt_is_counted_and_rechecked_at_its_window(
    world: World,
) -> None:
    ctx = Ctx(world)
    info = await sent(world, "execute")
    doubts.hold_in_doubt(ctx, info, token="t1")
    assert ctx.core.in_doubt == [info]
    assert [d for d, _ in ctx.clock_timers.armed] == [float(info.execute_before)]
    ctx.clock_timers.fire_all()
    assert [a for _, a in ctx.spawned] == ["settle_doubt"]
    ctx.core.status = SessionStatus(info.execute_before, 10, 0, ())
    await ctx.run_spawned()
    assert ctx.core.in_doubt == []
    assert ctx.core.status.calls_used == 1  # it executed: one used call
    assert ctx.journal is not None and ctx.journal.finished == ["t1"]
    assert ctx.refetched == 1


async def test_a_write_that_is_not_counted_is_still_rechecked(world: World) -> None:
    ctx = Ctx(world)
    info = await sent(world)
    doubts.hold_in_doubt(ctx, info, count=False, token="t")
    assert ctx.core.in_doubt == []
    assert len(ctx.clock_timers.armed) == 1


async def test_a_closing_session_holds_the_count_but_arms_nothing(world: World) -> None:
    ctx = Ctx(world, closed=True)
    info = await sent(world, "execute")
    doubts.hold_in_doubt(ctx, info, token="t")
    assert ctx.core.in_doubt == [info]  # counted: the next open resolves it
    assert ctx.clock_timers.armed == [] and ctx.spawned == []


async def test_an_undecided_write_is_rechecked_every_status_interval(world: World) -> None:
    ctx = Ctx(world)
    info = never_sent(await sent(world, "execute"))
    ctx.core.hold(info)
    await doubts.settle(ctx, info, ctx.core.generation, "t")  # window still open
    assert ctx.core.in_doubt == [info]
    assert [d for d, _ in ctx.clock_timers.armed] == [world.clock.now() + INTERVAL]
    assert ctx.journal is not None and ctx.journal.finished == [] and ctx.refetched == 0


async def test_a_write_that_never_executed_is_settled_without_counting(world: World) -> None:
    ctx = Ctx(world)
    info = never_sent(await sent(world, "execute"))
    ctx.core.status = SessionStatus(info.execute_before, 10, 0, ())
    ctx.core.hold(info)
    world.clock.set(info.execute_before)
    await doubts.settle(ctx, info, ctx.core.generation, "t")
    assert ctx.core.in_doubt == [] and ctx.core.status.calls_used == 0
    assert ctx.journal is not None and ctx.journal.finished == ["t"]
    assert ctx.refetched == 1 and ctx.clock_timers.armed == []


async def test_a_write_of_an_older_generation_is_settled_but_not_refetched(
    world: World,
) -> None:
    ctx = Ctx(world)
    info = await sent(world)
    doubts.hold_in_doubt(ctx, info, token="t", mine=False)  # an older key of the slot
    ctx.clock_timers.fire_all()
    await ctx.run_spawned()
    assert ctx.journal is not None and ctx.journal.finished == ["t"]
    assert ctx.refetched == 0
    assert not ctx.core.seen_registered and ctx.persisted == 0  # not this session's news


async def test_a_settled_register_teaches_the_session_it_was_registered(world: World) -> None:
    ctx = Ctx(world, journal=None)
    info = await sent(world)
    doubts.hold_in_doubt(ctx, info, count=False)
    ctx.clock_timers.fire_all()
    await ctx.run_spawned()
    assert ctx.core.seen_registered and ctx.persisted == 1
    assert ctx.refetched == 1


# -- learn -----------------------------------------------------------------------------------
async def test_learn_only_from_an_executed_register_or_revoke_of_this_generation(
    world: World,
) -> None:
    ctx = Ctx(world)
    register = await sent(world)
    execute = await sent(world, "execute")
    doubts.learn(ctx, execute, True, 0)
    doubts.learn(ctx, register, None, 0)
    doubts.learn(ctx, register, False, 0)
    doubts.learn(ctx, register, True, 1)  # another generation
    assert not ctx.core.seen_registered and ctx.persisted == 0
    doubts.learn(ctx, attrs.evolve(register, action="revoke"), True, 0)
    assert ctx.core.seen_registered and ctx.persisted == 1
    doubts.learn(ctx, register, True, 0)  # known already: nothing to persist
    assert ctx.persisted == 1


# -- hold_cancelled / recheck ----------------------------------------------------------------
async def test_a_cancelled_execute_is_held_reported_and_rechecked_early(world: World) -> None:
    ctx = Ctx(world)
    info = await sent(world, "execute")
    ctx.core.status = SessionStatus(info.execute_before, 10, 0, ())
    doubts.hold_cancelled(ctx, "execute", info, "t")
    assert ctx.core.in_doubt == [info]
    [(action, error)] = ctx.failures
    assert action == "execute" and error.code is ErrorCode.UNKNOWN_OUTCOME
    assert not error.retryable
    await ctx.run_spawned()  # the early recheck: its nonce is used
    assert ctx.core.in_doubt == [] and ctx.core.status.calls_used == 1
    assert ctx.refetched == 1
    assert len(ctx.clock_timers.armed) == 1  # the window's recheck stays armed


async def test_a_cancelled_owner_write_is_not_counted_and_refetched(world: World) -> None:
    ctx = Ctx(world)
    info = await sent(world)
    doubts.hold_cancelled(ctx, "register", info, "t")
    assert ctx.core.in_doubt == []
    assert [a for a, _ in ctx.failures] == ["register"]
    await ctx.run_spawned()
    assert ctx.refetched == 1


async def test_a_write_cancelled_by_closing_reports_nothing(world: World) -> None:
    ctx = Ctx(world, closed=True)
    info = await sent(world, "execute")
    doubts.hold_cancelled(ctx, "execute", info, "t")
    assert ctx.core.in_doubt == [info]
    assert ctx.failures == [] and ctx.spawned == []


async def test_recheck_settles_what_the_chain_decided_and_learns_registers(
    world: World,
) -> None:
    ctx = Ctx(world)
    executed = await sent(world, "execute")
    pending = never_sent(executed)
    register = await sent(world)
    for info in (executed, pending, register):
        ctx.core.hold(info)
    await doubts.recheck(ctx, ctx.core.generation)
    assert ctx.core.in_doubt == [pending]
    assert ctx.core.seen_registered and ctx.persisted == 1
    assert ctx.refetched == 1
