"""localnet as a dev chain: starknet-devnet's methods over HTTP (time, mint, dump / load,
restart), a session the chain expires after ``devnet_increaseTime`` through the whole Python
stack, and ``--state-file``: a restarted localnet still knows every wallet, session and
balance, and the session keeps working."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionState  # noqa: E402
from chipi_session.backends.chipi_api import ChipiApiBackend  # noqa: E402
from chipi_session.clock import SystemClock  # noqa: E402
from chipi_session.felts import selector  # noqa: E402
from chipi_session.localnet import LocalnetServer  # noqa: E402
from chipi_session.localnet.devnet import (  # noqa: E402
    ETH_ADDRESS,
    STRK_ADDRESS,
    OffsetClock,
    state_to_json,
)
from chipi_session.types import Call, SessionKeyData, WalletData  # noqa: E402
from chipi_session.vault import KdfCost, Vault  # noqa: E402

BEARER = "user-jwt"


def rpc(url: str, method: str, params: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    answer: dict[str, Any] = httpx.post(url, json=body, timeout=10).json()
    return answer


def ok(url: str, method: str, params: Any) -> Any:
    answer = rpc(url, method, params)
    assert "error" not in answer, answer
    return answer["result"]


def block_time(url: str) -> int:
    return int(ok(url, "starknet_getBlockWithTxHashes", {"block_id": "latest"})["timestamp"])


def balance(url: str, token: int, owner: int) -> int:
    request = {
        "contract_address": hex(token),
        "entry_point_selector": hex(selector("balance_of")),
        "calldata": [hex(owner)],
    }
    low, high = ok(url, "starknet_call", {"request": request, "block_id": "latest"})
    return int(low, 16) + (int(high, 16) << 128)


def session_data(url: str, wallet: int, key: int) -> list[int]:
    request = {
        "contract_address": hex(wallet),
        "entry_point_selector": hex(selector("get_session_data")),
        "calldata": [hex(key)],
    }
    return [
        int(x, 16) for x in ok(url, "starknet_call", {"request": request, "block_id": "latest"})
    ]


# ---------------------------------------------------------------------------- time


def test_increase_and_set_time(chipi_localnet: LocalnetServer) -> None:
    url = chipi_localnet.rpc_url
    before = block_time(url)
    moved = ok(url, "devnet_increaseTime", {"time": 7200})
    assert set(moved) == {"time", "block_hash"} and moved["time"] >= before + 7200
    assert moved["time"] <= block_time(url) <= moved["time"] + 5
    assert ok(url, "devnet_setTime", {"time": 2_000_000_000}) == {"time": 2_000_000_000}
    assert 2_000_000_000 <= block_time(url) <= 2_000_000_005
    with_block = ok(url, "devnet_setTime", {"time": 1_900_000_000, "generate_block": True})
    assert with_block["time"] == 1_900_000_000 and with_block["block_hash"].startswith("0x")
    assert block_time(url) < 2_000_000_000  # devnet lets time go back
    for bad in ({"time": -1}, {"time": 1.5}, {"time": "soon"}, {}, {"time": 1, "extra": 2}):
        assert rpc(url, "devnet_increaseTime", bad)["error"]["code"] == -32602, bad
    assert ok(url, "devnet_increaseTime", [60])["time"] >= 1_900_000_060  # positional too


@pytest.mark.anyio
async def test_a_session_expires_on_chain_after_increase_time(
    chipi_localnet: LocalnetServer,
) -> None:
    demo = chipi_localnet.create_demo_wallet()
    wallet = WalletData(
        address=demo.wallet.address, encrypted_private_key=demo.encrypted_private_key
    )
    # the client moves its clock with the chain's (the window check), the engine keeps wall time
    shifted = OffsetClock(SystemClock())
    async with ChipiApiBackend(
        chipi_localnet.api_key,
        base_url=chipi_localnet.url,
        rpc_url=chipi_localnet.rpc_url,
        clock=shifted,
        allow_insecure_http=True,
    ) as backend:
        session = ChipiSession(
            wallet=wallet,
            encrypt_key=demo.pin,
            backend=backend,
            clock=SystemClock(),
            vault=Vault(KdfCost.FAST_FOR_TESTS),
            auto_check_status=False,
            get_bearer_token=_bearer,
        )
        async with session:
            await session.create_session(600)
            await session.register_session(max_calls=5, allowed_entrypoints=["transfer"])
            pay = Call(to=demo.token, selector="transfer", calldata=[0xB0B, 7, 0])
            await session.execute_with_session(pay)
            ok(chipi_localnet.rpc_url, "devnet_increaseTime", {"time": 601})
            shifted.offset += 601
            with pytest.raises(ChipiSessionError) as info:
                await session.execute_with_session(pay)
            # the chain refused it as expired (the engine's own clock, wall time, does not
            # know the chain's moved: its local state follows that clock)
            assert info.value.code is ErrorCode.SESSION_EXPIRED, info.value
    assert balance(chipi_localnet.rpc_url, demo.token, 0xB0B) == 7  # only the first one


async def _bearer() -> str:
    return BEARER


# ---------------------------------------------------------------------------- mint


def test_mint_fee_tokens_and_any_token(chipi_localnet: LocalnetServer) -> None:
    url = chipi_localnet.rpc_url
    minted = ok(url, "devnet_mint", {"address": "0xabc", "amount": 10**21, "unit": "FRI"})
    assert minted["new_balance"] == str(10**21) and minted["unit"] == "FRI"
    assert minted["tx_hash"].startswith("0x")
    again = ok(url, "devnet_mint", {"address": "0xabc", "amount": 5})  # FRI by default
    assert again["new_balance"] == str(10**21 + 5) and again["tx_hash"] != minted["tx_hash"]
    assert balance(url, STRK_ADDRESS, 0xABC) == 10**21 + 5
    ok(url, "devnet_mint", {"address": "0xabc", "amount": 3, "unit": "WEI"})
    assert balance(url, ETH_ADDRESS, 0xABC) == 3
    demo = chipi_localnet.create_demo_wallet(fund=100)
    ours = ok(
        url,
        "devnet_mint",
        {"address": hex(demo.wallet.address), "amount": 1, "token": hex(demo.token)},
    )
    assert ours["new_balance"] == "101"
    for bad in (
        {"address": "0xabc", "amount": -1},
        {"address": "0xabc", "amount": 1, "unit": "USD"},
        {"address": "nope", "amount": 1},
        {"address": "0xabc", "amount": 1, "token": "0x1234"},  # no token there
        {"address": "0xabc"},
    ):
        assert rpc(url, "devnet_mint", bad)["error"]["code"] == -32602, bad
    assert balance(url, STRK_ADDRESS, 0xABC) == 10**21 + 5  # refused mints changed nothing


# ---------------------------------------------------------------------------- dump / load / restart


def test_dump_load_and_restart(chipi_localnet: LocalnetServer, tmp_path: Path) -> None:
    url = chipi_localnet.rpc_url
    demo = chipi_localnet.create_demo_wallet(fund=1000)
    ok(url, "starknet_blockNumber", [])  # the first request: restart comes back here
    ok(
        url,
        "devnet_mint",
        {"address": hex(demo.wallet.address), "amount": 5, "token": hex(demo.token)},
    )
    ok(url, "devnet_increaseTime", {"time": 3600})
    shifted_time = block_time(url)
    dump = tmp_path / "state.json"
    assert ok(url, "devnet_dump", {"path": str(dump)}) is None
    assert dump.stat().st_mode & 0o777 == 0o600
    inline = ok(url, "devnet_dump", {})
    assert inline["format"] == "chipi-localnet-state" and inline["blockNumber"] >= 0

    assert ok(url, "devnet_restart", {}) is None
    assert balance(url, demo.token, demo.wallet.address) == 1000
    assert block_time(url) < shifted_time - 3000  # time is back too

    assert ok(url, "devnet_load", {"path": str(dump)}) is None
    assert balance(url, demo.token, demo.wallet.address) == 1005
    assert block_time(url) >= shifted_time

    assert (
        rpc(url, "devnet_load", {"path": str(tmp_path / "missing.json")})["error"]["code"] == -32602
    )
    evil = dict(inline, receipts={"c": "os:system", "f": {"command": "true"}})
    (tmp_path / "evil.json").write_text(json.dumps(evil))
    assert rpc(url, "devnet_load", {"path": str(tmp_path / "evil.json")})["error"]["code"] == -32602
    other_chain = dict(inline, chainId="0x1")
    (tmp_path / "other.json").write_text(json.dumps(other_chain))
    assert (
        rpc(url, "devnet_load", {"path": str(tmp_path / "other.json")})["error"]["code"] == -32602
    )
    assert balance(url, demo.token, demo.wallet.address) == 1005  # refused loads changed nothing
    with chipi_localnet.locked() as chain:
        assert state_to_json(chain)["state"] == inline["state"]


# ---------------------------------------------------------------------------- --state-file


def _start(state: Path, banner: Path) -> subprocess.Popen[str]:
    code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
    args = ["--port", "0", "--json", "--fast-kdf", "--state-file", str(state)]
    with banner.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, text=True)
    deadline = time.monotonic() + 30
    while not banner.read_text().endswith("\n"):
        assert proc.poll() is None, f"localnet exited with {proc.returncode}"
        assert time.monotonic() < deadline, "no banner"
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.mark.anyio
async def test_a_restarted_localnet_knows_every_wallet_session_and_balance(
    state_dir: Path,
) -> None:
    state = state_dir / "chain.json"
    proc = _start(state, state_dir / "banner1.json")
    try:
        info = json.loads((state_dir / "banner1.json").read_text())
        stored, wallet = await _register_and_pay(info, None)
    finally:
        _stop(proc)
    assert state.stat().st_mode & 0o777 == 0o600
    proc = _start(state, state_dir / "banner2.json")
    try:
        again = json.loads((state_dir / "banner2.json").read_text())
        assert again["demoWallet"]["publicKey"] == info["demoWallet"]["publicKey"]
        assert again["apiKey"] == info["apiKey"]
        token = int(info["demoWallet"]["token"], 16)
        assert int(again["demoWallet"]["balance"]) == int(info["demoWallet"]["balance"]) - 7
        url = again["rpcUrl"]
        assert balance(url, token, 0xB0B) == 7
        assert session_data(url, wallet.address, stored.public_key)[1:] == [3, 1, 1]
        await _register_and_pay(again, stored)  # the stored session still works
        assert balance(url, token, 0xB0B) == 14
        assert session_data(url, wallet.address, stored.public_key)[2] == 2
    finally:
        _stop(proc)


async def _register_and_pay(
    info: dict[str, Any], stored: SessionKeyData | None
) -> tuple[SessionKeyData, WalletData]:
    demo = info["demoWallet"]
    wallet = WalletData.from_json(demo)
    async with ChipiApiBackend(
        info["apiKey"], base_url=info["restUrl"].removesuffix("/v1"), rpc_url=info["rpcUrl"]
    ) as backend:
        session = ChipiSession(
            wallet=wallet,
            encrypt_key=demo["pin"],
            backend=backend,
            stored_session=stored,
            vault=Vault(KdfCost.FAST_FOR_TESTS),
            auto_check_status=False,
            get_bearer_token=_bearer,
        )
        async with session:
            if stored is None:
                await session.create_session(3600)
                await session.register_session(max_calls=3, allowed_entrypoints=["transfer"])
            else:
                assert session.session_state is SessionState.ACTIVE
            pay = Call(to=int(demo["token"], 16), selector="transfer", calldata=[0xB0B, 7, 0])
            await session.execute_with_session(pay)
            assert session.session is not None
            return session.session, wallet
