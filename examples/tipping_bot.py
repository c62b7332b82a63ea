"""A tipping bot with a daily limit per user, and its property test.

The bot tips users from one wallet through a session key, never more than ``DAILY_LIMIT`` base
units per user per UTC day. It counts a tip against the limit as soon as it may have moved money
(an ``UNKNOWN_OUTCOME`` that is not known to be unapplied counts): a user is never tipped over
the limit, even when the network fails.

    python examples/tipping_bot.py           # the demo
    pytest examples/tipping_bot.py           # its tests (pip install 'chipi-session[testing]')

The tests use the testing kit: the plugin's fixtures (``chipi_session``, ``chipi_world``,
``chipi_advance``), its hypothesis strategies and ``SessionLifecycleMachine``, which already
creates, registers, executes, revokes, moves time and injects faults; the bot adds one rule and
one invariant.
"""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from chipi_session import Call, ChipiSession, ChipiSessionError, ErrorCode
from chipi_session.testing import SessionLifecycleMachine, make_world
from chipi_session.testing import strategies as cst

DAILY_LIMIT = 100
DAY = 86_400


class TipRefused(Exception):
    """The tip would take the user over the daily limit (or is not a positive amount)."""


class TippingBot:
    def __init__(self, session: ChipiSession, token: int, daily_limit: int = DAILY_LIMIT) -> None:
        self.session, self.token, self.daily_limit = session, token, daily_limit
        self.ledger: dict[tuple[int, int], int] = defaultdict(int)  # (user, day) -> may have sent
        self.confirmed: dict[int, int] = defaultdict(int)  # user -> reported sent

    def today(self) -> int:
        return int(self.session.clock.now()) // DAY

    async def tip(self, user: int, amount: int) -> str:
        key = (user, self.today())
        if amount <= 0 or self.ledger[key] + amount > self.daily_limit:
            raise TipRefused(f"{amount} would exceed today's limit for {user:#x}")
        call = Call(to=self.token, selector="transfer", calldata=[user, amount, 0])
        try:
            tx = await self.session.execute_with_session(call)
        except ChipiSessionError as exc:
            if exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is not False:
                self.ledger[key] += amount  # it may have moved: it counts
            raise
        self.ledger[key] += amount
        self.confirmed[user] += amount
        return tx


async def demo() -> None:
    world = make_world()
    alice, bob = 0xA11CE, 0xB0B
    async with world.session() as session:
        await session.create_session(3600)
        await session.register_session(max_calls=10, allowed_entrypoints=["transfer"])
        bot = TippingBot(session, world.token)
        refused = 0
        for user, amount in [(alice, 60), (alice, 30), (alice, 20), (bob, 100), (bob, 1)]:
            try:
                await bot.tip(user, amount)
            except TipRefused:
                refused += 1
        print(f"alice {world.balance(alice)}, bob {world.balance(bob)}, refused {refused}")


# ------------------------------------------------------------------------ tests (pytest)


class TippingMachine(SessionLifecycleMachine):
    def __init__(self, anyio_backend: str | None = None) -> None:
        super().__init__(anyio_backend)
        self.bot, self.users = TippingBot(self.session, self.world.token), set[int]()

    @rule(
        user=cst.felts(max_value=2**64).filter(bool),
        amount=st.integers(-5, 80),
        faults=cst.fault_plans(methods=("execute_with_session",), max_size=1),
    )
    def tip(self, user: int, amount: int, faults: cst.FaultPlan) -> None:
        self.users.add(user)
        self.inject_faults(faults)  # the network may fail this tip
        try:
            self.attempt(self.bot.tip, user, amount)
        except TipRefused:
            pass

    @invariant()
    def never_over_the_limit(self) -> None:
        assert all(sent <= DAILY_LIMIT for sent in self.bot.ledger.values())
        for user in self.users:
            received = self.on_loop(self.world.balance, user)
            counted = sum(v for (u, _), v in self.bot.ledger.items() if u == user)
            assert self.bot.confirmed[user] <= received <= counted


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tipping_bot_under_the_lifecycle(backend: str) -> None:
    TippingMachine.run_as_test(backend, max_examples=25, derandomize=True)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_the_limit_resets_the_next_day(chipi_session, chipi_world, chipi_advance) -> None:  # type: ignore[no-untyped-def]
    bot = TippingBot(chipi_session, chipi_world.token)
    await bot.tip(0xA11CE, DAILY_LIMIT)
    with pytest.raises(TipRefused):
        await bot.tip(0xA11CE, 1)
    await chipi_advance(DAY - chipi_world.clock.now() % DAY)  # midnight UTC
    await chipi_session.create_session(3600)  # the fixture's session expired meanwhile
    await chipi_session.register_session(max_calls=5)
    await bot.tip(0xA11CE, 1)
    assert chipi_world.balance(0xA11CE) == DAILY_LIMIT + 1


if __name__ == "__main__":
    anyio.run(demo)
