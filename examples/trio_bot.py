"""The same bot on trio: a nursery of users, each with its own ChipiSession.

    python examples/trio_bot.py --users 20
"""

from __future__ import annotations

import argparse
import time

import trio

from chipi_session import Call, ChipiSession, HighEntropyKey, LocalChain, StateChanged


async def serve_user(chain: LocalChain, token: int, user: int, log: list[str]) -> None:
    secret = HighEntropyKey.generate()
    wallet = chain.create_wallet(secret)
    chain.mint(token, wallet.address, 1_000)
    async with ChipiSession(wallet=wallet, encrypt_key=secret, backend=chain) as session:
        session.add_listener(
            lambda ev: log.append(f"user {user}: {ev.current}")
            if isinstance(ev, StateChanged)
            else None
        )
        await session.create_session(duration_seconds=600)
        await session.register_session(max_calls=5, allowed_entrypoints=["transfer"])
        await session.execute_with_session(
            Call(to=token, selector="transfer", calldata=[0xCAFE, 25, 0])
        )
        await session.revoke_session()


async def main(users: int) -> None:
    chain = LocalChain()
    token = chain.deploy_token("USDC", 6)
    log: list[str] = []
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for u in range(users):
            nursery.start_soon(serve_user, chain, token, u, log)
    print(f"{users} users on trio in {time.perf_counter() - started:.2f}s; "
          f"recipient balance {chain.balance_of(token, 0xCAFE)}; {len(log)} state changes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20)
    trio.run(main, parser.parse_args().users)
