"""A bot serving many users from one SessionHub, with a SQLite store, auto-renewal and a restart.

Run 1 opens one session per user, registers it with a small budget and pays until renewal has
replaced each session at least once. Run 2 ("after a restart") opens a new hub on the same
store: every user's session comes back from the database and the chain, and keeps paying.

    python examples/hub_bot.py --users 20
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from chipi_session import (
    Call,
    HighEntropyKey,
    LocalChain,
    RenewalPolicy,
    SessionHub,
    SessionRenewed,
    SqliteStore,
)


async def main(users: int, db: Path) -> None:
    chain = LocalChain()
    token = chain.deploy_token("USDC", 6)
    secrets = {f"user-{i}": HighEntropyKey.generate() for i in range(users)}
    wallets = {user: chain.create_wallet(secret) for user, secret in secrets.items()}
    for wallet in wallets.values():
        chain.mint(token, wallet.address, 10_000)
    pay = Call(to=token, selector="transfer", calldata=[0xCAFE, 1, 0])
    renewals = 0

    def count(event: object) -> None:
        nonlocal renewals
        renewals += isinstance(event, SessionRenewed)

    # run 1: open, register, pay through a renewal
    store = SqliteStore(db)
    policy = RenewalPolicy(min_remaining_calls=2)
    async with SessionHub(backend=chain, store=store, renewal=policy) as hub:
        hub.add_listener(count)
        for user, secret in secrets.items():
            session = await hub.open(key=user, wallet=wallets[user], encrypt_key=secret)
            await session.create_session(duration_seconds=3600)
            await session.register_session(max_calls=4, allowed_entrypoints=["transfer"])

        async def serve(user: str) -> None:
            session = hub.get(user)
            assert session is not None
            for _ in range(6):
                await session.execute_with_session(pay)

        async with asyncio.TaskGroup() as tg:
            for user in secrets:
                tg.create_task(serve(user))
        while any(s.is_renewing for s in hub):
            await asyncio.sleep(0.01)
    store.close()
    print(f"run 1: {users} users, {6 * users} payments, {renewals} renewals")

    # run 2: a new process would do exactly this
    store = SqliteStore(db)
    async with SessionHub(backend=chain, store=store) as hub:
        states = []
        for user, secret in secrets.items():
            session = await hub.open(key=user, wallet=wallets[user], encrypt_key=secret)
            states.append(session.session_state.value)
            await session.execute_with_session(pay)
    store.close()
    print(f"run 2: restored states {sorted(set(states))}, "
          f"recipient balance {chain.balance_of(token, 0xCAFE)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    if args.db is None:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(main(args.users, Path(d) / "bot.db"))
    else:
        asyncio.run(main(args.users, Path(args.db)))
