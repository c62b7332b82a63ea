"""The ``chipi-session demo``: every lifecycle state on the embedded chain, one line per event.

Runs on a manual clock started at the current time, so "time passing to valid_until" takes no
wall time. Output goes to stdout through ``emit`` (the CLI's writer); the library never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from .clock import ManualClock
from .engine import ChipiSession
from .errors import ChipiSessionError
from .events import ActionFailed, Event, StateChanged, StatusRefreshed, TransactionSubmitted
from .localchain import LocalChain
from .types import Call, SessionState
from .vault import KdfCost, Vault

__all__ = ["run_demo", "describe"]

PIN = "482913"


def describe(event: Event) -> str:
    """One readable line per event."""
    if isinstance(event, StateChanged):
        return f"state    {event.previous.value:>8} -> {event.current.value:<8} ({event.reason})"
    if isinstance(event, TransactionSubmitted):
        return f"tx       {event.action:<22} {event.tx_hash[:18]}..."
    if isinstance(event, StatusRefreshed):
        s = event.status
        if s is None:
            return "status   (no session)"
        return f"status   valid_until={s.valid_until} calls {s.calls_used}/{s.max_calls}"
    if isinstance(event, ActionFailed):
        return f"refused  {event.action:<22} {event.error.code.value}: {event.error.message}"
    return repr(event)  # pragma: no cover


async def run_demo(emit: Callable[[str], object], fast_kdf: bool = False) -> int:
    """Run the demo, writing lines through ``emit``; returns the exit status."""
    out = emit
    clock = ManualClock(float(int(time.time())))
    vault = Vault(KdfCost.FAST_FOR_TESTS if fast_kdf else KdfCost.DEFAULT)
    chain = LocalChain(clock=clock, vault=vault)
    wallet = chain.create_wallet(PIN)
    usdc = chain.deploy_token("USDC", 6)
    alice, bob = 0xA11CE, 0xB0B
    chain.mint(usdc, wallet.address, 1_000_000_000)

    def balances() -> str:
        return (
            f"wallet={chain.balance_of(usdc, wallet.address)} alice="
            f"{chain.balance_of(usdc, alice)} bob={chain.balance_of(usdc, bob)}"
        )

    def pay(to: int, amount: int) -> Call:
        return Call(to=usdc, selector="transfer", calldata=[to, amount, 0])

    seen: set[SessionState] = set()

    def on_event(event: Event) -> None:
        if isinstance(event, StateChanged):
            seen.add(event.current)
        out(f"  [{event.timestamp - clock_start:>6.0f}s] {describe(event)}")

    clock_start = clock.now()
    out(f"wallet {hex(wallet.address)} (CHIPI), token USDC {hex(usdc)}; {balances()}")
    async with ChipiSession(
        wallet=wallet, encrypt_key=PIN, backend=chain, clock=clock, vault=vault
    ) as session:
        session.add_listener(on_event)
        seen.add(session.session_state)
        out("1. create a session key (local keygen + encryption), valid 1 hour")
        data = await session.create_session(3600)
        out("2. register it: whitelist [transfer], 3 calls")
        await session.register_session(max_calls=3, allowed_entrypoints=["transfer"])
        out("3. two transfers signed by the session alone")
        await session.execute_with_session(pay(alice, 250_000))
        await session.execute_with_session([pay(alice, 100_000), pay(bob, 50_000)])
        out(f"   balances: {balances()}")
        out("4. an approve is not whitelisted: refused locally, nothing signed")
        try:
            await session.execute_with_session(
                Call(to=usdc, selector="approve", calldata=[bob, 1, 0])
            )
        except ChipiSessionError:
            pass
        out("5. the third transfer uses up the budget")
        await session.execute_with_session(pay(bob, 10_000))
        try:
            await session.execute_with_session(pay(bob, 10_000))
        except ChipiSessionError:
            pass
        out("6. re-register: a fresh budget of 5 calls")
        await session.register_session(max_calls=5, allowed_entrypoints=["transfer"])
        await session.execute_with_session(pay(alice, 1_000))
        out("7. time passes to valid_until ... and one second beyond")
        clock.set(data.valid_until)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        out("8. a new session, registered, then revoked by the owner")
        await session.create_session(600)
        await session.register_session(max_calls=10)
        await session.execute_with_session(pay(bob, 5))
        await session.revoke_session()
        try:
            await session.execute_with_session(pay(bob, 5))
        except ChipiSessionError:
            pass
        out(f"   balances: {balances()}")
    missing = set(SessionState) - seen
    out(
        "states seen: "
        + ", ".join(s.value for s in SessionState if s in seen)
        + ("" if not missing else f" (missing: {sorted(m.value for m in missing)})")
    )
    return 0 if not missing else 1
