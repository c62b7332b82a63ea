"""Persist a session to a JSON file, "restart", and resume it.

``on_session_created`` writes the session (its key encrypted under the PIN) atomically; a new
process passes it back as ``stored_session`` and the engine reconciles it with the chain.

    python examples/persistence.py /tmp/chipi-session.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from chipi_session import Call, ChipiSession, LocalChain, SessionKeyData

PIN = "1357"


def save(path: Path, data: SessionKeyData) -> None:
    """Atomic replace: a crash leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name)
    with os.fdopen(fd, "w") as f:
        json.dump(data.to_json(), f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(path: Path) -> SessionKeyData | None:
    if not path.exists():
        return None
    return SessionKeyData.from_json(json.loads(path.read_text()))


async def main(path: Path) -> None:
    chain = LocalChain()  # outlives the "process restarts" below, like a real chain
    wallet = chain.create_wallet(PIN)
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 1_000)
    pay = Call(to=token, selector="transfer", calldata=[0xF00D, 5, 0])

    # first run: create, persist, register, spend
    async with ChipiSession(
        wallet=wallet,
        encrypt_key=PIN,
        backend=chain,
        stored_session=load(path),
        on_session_created=lambda data: save(path, data),
    ) as session:
        if session.session is None:
            await session.create_session(duration_seconds=3600)
            await session.register_session(max_calls=4, allowed_entrypoints=["transfer"])
        await session.execute_with_session(pay)
        print(f"run 1: {session.session_state}, {session.remaining_calls} calls left")

    # "restart": a new ChipiSession from the file; state comes back from the chain
    stored = load(path)
    async with ChipiSession(
        wallet=wallet, encrypt_key=PIN, backend=chain, stored_session=stored
    ) as session:
        print(f"run 2: restored {session.session_state}, {session.remaining_calls} calls left")
        await session.execute_with_session(pay)
        print(f"run 2: {session.remaining_calls} calls left, "
              f"recipient balance {chain.balance_of(token, 0xF00D)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path", nargs="?", default=None)
    args = parser.parse_args()
    if args.path is None:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(main(Path(d) / "session.json"))
    else:
        asyncio.run(main(Path(args.path)))
