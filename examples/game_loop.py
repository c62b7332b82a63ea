"""A fixed-timestep game loop driving a session with BlockingChipiSession.

The loop never waits on the chain: actions are ``submit``-ted (a Future) and the frame reads
``poll_events()``. Game time is a manual clock advanced by one timestep per frame, so the
simulation runs as fast as the CPU allows; a real game would sleep to the next frame.

    python examples/game_loop.py --frames 600
"""

from __future__ import annotations

import argparse
from concurrent.futures import Future

from chipi_session import BlockingChipiSession, Call, LocalChain, ManualClock, StateChanged

PIN = "2468"
TIMESTEP = 1 / 60


def main(frames: int) -> int:
    clock = ManualClock(1_700_000_000)
    chain = LocalChain(clock=clock)
    wallet = chain.create_wallet(PIN)
    gold = chain.deploy_token("GOLD", 0)
    chain.mint(gold, wallet.address, 10_000)
    shop = 0x5409
    pending: Future[str] | None = None
    purchases = 0
    with BlockingChipiSession(
        wallet=wallet, encrypt_key=PIN, backend=chain, clock=clock, auto_check_status=False
    ) as session:
        session.create_session(duration_seconds=5)  # 5 s of game time
        session.register_session(max_calls=100, allowed_entrypoints=["transfer"])
        for frame in range(frames):
            session.portal.call(clock.advance, TIMESTEP)  # the world's time moves on
            for event in session.poll_events():
                if isinstance(event, StateChanged):
                    print(f"frame {frame:4d}: session {event.previous} -> {event.current}"
                          f" ({event.reason})")
            if pending is not None and pending.done():
                if pending.exception() is None:
                    purchases += 1
                pending = None
            if frame % 30 == 0 and pending is None and session.has_active_session:
                buy = Call(to=gold, selector="transfer", calldata=[shop, 10, 0])
                pending = session.submit("execute_with_session", [buy])
        if pending is not None:
            pending.exception()
    print(f"{frames} frames, {purchases} purchases, shop gold {chain.balance_of(gold, shop)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    raise SystemExit(main(parser.parse_args().frames))
