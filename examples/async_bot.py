"""A bot serving many users at once on asyncio: one session per user, all concurrent.

Each user's wallet key and session key are protected by a high-entropy key (as a bot would
fetch from its secret store), which skips the slow PIN KDF so thousands of sessions open fast.

    python examples/async_bot.py --users 50
"""

from __future__ import annotations

import argparse
import asyncio
import time

from chipi_session import Call, ChipiSession, HighEntropyKey, LocalChain, SessionState


async def serve_user(chain: LocalChain, token: int, user: int, payments: int) -> int:
    secret = HighEntropyKey.generate()  # in production: from your secret store
    wallet = chain.create_wallet(secret)
    chain.mint(token, wallet.address, 1_000)
    async with ChipiSession(wallet=wallet, encrypt_key=secret, backend=chain) as session:
        await session.create_session(duration_seconds=600)
        await session.register_session(max_calls=payments, allowed_entrypoints=["transfer"])
        for i in range(payments):
            await session.execute_with_session(
                Call(to=token, selector="transfer", calldata=[0xB0B + user, 10 + i, 0])
            )
        assert session.session_state is SessionState.EXPIRED  # the budget is used up
        return payments


async def main(users: int, payments: int) -> None:
    chain = LocalChain()  # the embedded chain on the system clock
    token = chain.deploy_token("USDC", 6)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(serve_user(chain, token, u, payments)) for u in range(users)]
    done = sum(t.result() for t in tasks)
    elapsed = time.perf_counter() - started
    print(f"{users} users, {done} payments in {elapsed:.2f}s ({done / elapsed:.0f} tx/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--payments", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.payments))
