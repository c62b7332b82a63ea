"""``chipi-session watch``: it renders a localnet's sessions and a hub store's slots, and the
next frame shows what changed (a session registered, a call spent, time past expiry); the
CLI redraws in place (captured screen: one "home + clear" per frame)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session import SessionHub  # noqa: E402
from chipi_session.keys import SecretKey, generate_private_key, public_key_of  # noqa: E402
from chipi_session.localnet import LocalnetServer  # noqa: E402
from chipi_session.stores import SqliteStore  # noqa: E402
from chipi_session.testing import make_world  # noqa: E402
from chipi_session.types import Call  # noqa: E402
from chipi_session.watch import CLEAR, read_localnet, read_store, render, run  # noqa: E402


def test_a_localnet_view_follows_the_chain(chipi_localnet: LocalnetServer) -> None:
    url = chipi_localnet.rpc_url
    owner = SecretKey(generate_private_key())
    session = SecretKey(generate_private_key())
    with chipi_localnet.locked() as chain:
        wallet = chain.create_wallet("1234", private_key=owner.reveal())
        token = chain.deploy_token("TKN", 6)
        chain.mint(token, wallet.address, 100)
        valid_until = chain.now() + 600
    with httpx.Client(timeout=10) as client:
        frame = render(read_localnet(url, client))
        assert "sessions 0: none" in frame
        with chipi_localnet.locked() as chain:
            anyio.run(
                lambda: chain.add_or_update_session_key(
                    wallet, owner, session_public_key=public_key_of(session.reveal()),
                    valid_until=valid_until, max_calls=3, allowed_entrypoints=[],
                )
            )  # fmt: skip
        snapshot = read_localnet(url, client)
        frame = render(snapshot)
        left = valid_until - snapshot.now  # the chain's clock is wall time: read, not assumed
        assert "sessions 1: active 1" in frame and "0/3" in frame
        assert f"{left // 60}m{left % 60:02d}s" in frame
        with chipi_localnet.locked() as chain:
            pay = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
            tx = anyio.run(
                lambda: chain.execute_with_session(
                    wallet, session, valid_until=valid_until, calls=[pay]
                )
            )
        frame = render(read_localnet(url, client))
        assert "1/3" in frame and "recent transactions:" in frame
        assert tx[-4:] in frame and "SUCCEEDED" in frame
        client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "devnet_increaseTime",
                               "params": {"time": 601}})  # fmt: skip
        frame = render(read_localnet(url, client))
        assert "expired (time)" in frame and "past" in frame


@pytest.mark.anyio
async def test_a_store_view_shows_each_slot(tmp_path: Path) -> None:
    world = make_world()
    path = str(tmp_path / "hub.db")
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, store=SqliteStore(path)
    ) as hub:
        a = await hub.open(key="alice", wallet=world.wallet, encrypt_key=world.pin)
        await a.create_session(600)
        await a.register_session(max_calls=4)
        b = await hub.open(key="bob", wallet=world.new_wallet(), encrypt_key=world.pin)
        await b.create_session(600)
    with httpx.Client() as client:
        frame = render(read_store(path, None, client))
    lines = {line.split()[0]: line for line in frame.splitlines()[4:] if line.strip()}
    assert "registered" in lines["alice"] and "?/4" in lines["alice"]
    assert "created" in lines["bob"]
    assert "sessions 2:" in frame


def test_run_redraws_in_place() -> None:
    frames = iter(["one", "two", "three"])

    class Out:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    from chipi_session.watch import Snapshot

    out = Out()
    slept: list[float] = []
    n = run(
        lambda: Snapshot(next(frames), 5, None, ()),
        out,  # type: ignore[arg-type]
        interval=0.5,
        iterations=3,
        sleep=slept.append,
    )
    assert n == 3 and slept == [0.5, 0.5]
    screens = out.text.split(CLEAR)[1:]
    assert [s.splitlines()[0] for s in screens] == [
        f"chipi-session watch — {name}" for name in ("one", "two", "three")
    ]


def test_the_cli_draws_frames(chipi_localnet: LocalnetServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chipi_session.cli", "watch", "--rpc", chipi_localnet.rpc_url,
         "--interval", "0.05", "--iterations", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(CLEAR) == 2 and "sessions 0: none" in done.stdout
