"""A LocalChain world on a manual clock, and deterministic time travel.

Why: a bot's tests need a chain, a funded wallet, a token and a clock they control, and they
need "an hour passes" to fire the engine's timers (expiry, renewal, in-doubt re-checks) in the
order they would fire in production, not all at once. :func:`travel` steps the clock from one
sleeper's deadline to the next and lets every woken task run before the next step.
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs

from ..clock import ManualClock
from ..engine import ChipiSession
from ..localchain import LocalChain
from ..types import Call, WalletData
from ..vault import KdfCost, Vault

__all__ = ["ChainWorld", "make_world", "settle", "travel", "DEFAULT_PIN", "DEFAULT_START"]

DEFAULT_PIN = "1234"
#: Where the manual clock starts (unix seconds; any fixed value keeps runs reproducible).
DEFAULT_START = 1_000_000.0
#: Maximum number of timer steps one :func:`travel` takes (a timer re-arming itself at the
#: same instant forever would otherwise hang the test).
_MAX_STEPS = 100_000


@attrs.define
class ChainWorld:
    """Everything a test of a bot needs, on one manual clock: ``chain`` with a ``wallet``
    (PIN :data:`DEFAULT_PIN`) funded with ``funds`` of ``token`` (6 decimals)."""

    clock: ManualClock
    vault: Vault = attrs.field(repr=False)
    chain: LocalChain
    wallet: WalletData
    token: int
    pin: str = attrs.field(default=DEFAULT_PIN, repr=False)

    def session(self, **kwargs: Any) -> ChipiSession:
        """A :class:`ChipiSession` on this world (not entered); keyword arguments override
        the defaults (this wallet and PIN, the chain, the clock, the cheap test vault, no
        background status polling)."""
        kwargs.setdefault("wallet", self.wallet)
        kwargs.setdefault("encrypt_key", self.pin)
        kwargs.setdefault("backend", self.chain)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("vault", self.vault)
        kwargs.setdefault("auto_check_status", False)
        return ChipiSession(**kwargs)

    def new_wallet(self, funds: int = 0) -> WalletData:
        """Another wallet with the same PIN, funded with ``funds`` of :attr:`token`."""
        wallet = self.chain.create_wallet(self.pin)
        if funds:
            self.chain.mint(self.token, wallet.address, funds)
        return wallet

    def transfer(self, amount: int, to: int) -> Call:
        """An ERC-20 ``transfer`` of ``amount`` base units of :attr:`token` to ``to``."""
        return Call(to=self.token, selector="transfer", calldata=[to, amount, 0])

    def balance(self, owner: int) -> int:
        return self.chain.balance_of(self.token, owner)

    async def advance(self, seconds: float) -> None:
        """:func:`travel` on this world's clock."""
        await travel(self.clock, seconds)


def make_world(
    *, start: float = DEFAULT_START, funds: int = 1_000_000, pin: str = DEFAULT_PIN
) -> ChainWorld:
    """A fresh :class:`ChainWorld`. The vault uses the cheapest KDF: tests only."""
    clock = ManualClock(start)
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(clock=clock, vault=vault)
    wallet = chain.create_wallet(pin)
    token = chain.deploy_token("USDC", 6)
    if funds:
        chain.mint(token, wallet.address, funds)
    return ChainWorld(clock, vault, chain, wallet, token, pin)


async def settle() -> None:
    """Let every task that can run, run (time only moves when a test moves it)."""
    for _ in range(4):
        await anyio.sleep(0)
    await anyio.wait_all_tasks_blocked()


async def travel(clock: ManualClock, seconds: float) -> None:
    """Move ``clock`` forward by ``seconds``, stopping at every sleeper's deadline on the way.

    At each stop the tasks whose deadline came run to their next wait before time moves on,
    so timers fire in deadline order and see the time they were armed for, exactly as with a
    real clock, only instantly.
    """
    if seconds < 0:
        raise ValueError("time travel only goes forward")
    target = clock.now() + seconds
    for _ in range(_MAX_STEPS):
        await settle()
        nxt = clock.next_deadline()
        if nxt is None or nxt > target:
            break
        clock.set(max(nxt, clock.now()))
    else:  # pragma: no cover - a timer loop re-arming at one instant
        raise RuntimeError("time travel: timers keep re-arming at the same instant")
    clock.set(target)
    await settle()
