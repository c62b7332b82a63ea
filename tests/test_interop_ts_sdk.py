"""Chipi's official TypeScript SDK (``@chipi-stack/backend`` 14.4.0, from npm, unmodified)
against ``chipi-session localnet`` in a subprocess: create, register, execute with and revoke a
session, then a refused execute, then a second session the chain expires after
``devnet_increaseTime`` sent by the npm ``starknet-devnet`` package's ``DevnetProvider``
(interop/ts-sdk/lifecycle.mjs does the SDK side).

Needs ``node`` and ``npm``; skipped only when they are not installed. ``npm ci`` runs when
interop/ts-sdk/node_modules lacks the pinned SDK, and a failing install fails the test. Every
step is bounded: npm 180 s, localnet start 30 s, the node script 90 s, shutdown 10 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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

from chipi_session.felts import selector  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SDK_DIR = ROOT / "interop" / "ts-sdk"
SDK_VERSION = "14.4.0"
DEVNET_CLIENT_VERSION = "0.7.1"  # npm starknet-devnet (DevnetProvider)
NPM_TIMEOUT = 180.0
START_TIMEOUT = 30.0
NODE_TIMEOUT = 90.0
HEX = re.compile(r"0x[0-9a-f]{1,64}")

NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None,
    reason="node and npm are needed to run Chipi's TypeScript SDK (not installed)",
)


def _clean_env() -> dict[str, str]:
    """This process's environment minus anything that could redirect the SDK or the script."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHIPI_", "STARKNET_", "STARKSCAN_", "LIFECYCLE_"))
    }


@pytest.fixture(scope="module")
def sdk_installed() -> Path:
    """interop/ts-sdk with the pinned SDK in node_modules (``npm ci`` from the lockfile if not)."""
    pinned = {"@chipi-stack/backend": SDK_VERSION, "starknet-devnet": DEVNET_CLIENT_VERSION}

    def installed() -> bool:
        try:
            return all(
                json.loads((SDK_DIR / "node_modules" / name / "package.json").read_text())[
                    "version"
                ]
                == version
                for name, version in pinned.items()
            )
        except (OSError, ValueError, KeyError):
            return False

    if not installed():
        assert NPM is not None
        cmd = [NPM, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        try:
            done = subprocess.run(
                cmd,
                cwd=SDK_DIR,
                env=_clean_env(),
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {SDK_DIR} did not finish in {NPM_TIMEOUT:.0f} s")
        if done.returncode != 0 or not installed():
            pytest.fail(
                f"`npm ci` in {SDK_DIR} failed (exit {done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
    return SDK_DIR


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(params=["real", "legacy"], ids=["real-layout", "legacy-session-layout"])
def localnet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`chipi-session localnet --port 0 --json` in a subprocess; yields the banner (plus the
    banner file's path and the layout). Always terminated."""
    banner_file = tmp_path / "localnet.json"
    log_file = tmp_path / "localnet.log"
    args = ["--port", "0", "--json", "--fast-kdf"]
    if request.param == "legacy":
        args.append("--legacy-session-layout")
    code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
    with banner_file.open("w") as out, log_file.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=out,
            stderr=err,
            text=True,
            env={**_clean_env(), "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not banner_file.read_text().endswith("\n"):
            if proc.poll() is not None:
                pytest.fail(f"localnet exited with {proc.returncode}: {log_file.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"localnet printed no banner in {START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        info: dict[str, Any] = json.loads(banner_file.read_text().splitlines()[0])
        info["bannerFile"] = str(banner_file)
        info["layout"] = request.param
        yield info
    finally:
        _stop(proc)


def _rpc(client: httpx.Client, url: str, method: str, params: Any) -> Any:
    answer = client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    answer.raise_for_status()
    body = answer.json()
    assert "error" not in body, body
    return body["result"]


def _call(client: httpx.Client, url: str, to: str, entrypoint: str, calldata: list[str]) -> Any:
    request = {
        "contract_address": to,
        "entry_point_selector": hex(selector(entrypoint)),
        "calldata": calldata,
    }
    return _rpc(client, url, "starknet_call", {"request": request, "block_id": "latest"})


def _balance(client: httpx.Client, url: str, token: str, owner: str) -> int:
    low, high = _call(client, url, token, "balance_of", [owner])
    return int(low, 16) + (int(high, 16) << 128)


def test_official_ts_sdk_session_lifecycle(sdk_installed: Path, localnet: dict[str, Any]) -> None:
    assert NODE is not None
    try:
        done = subprocess.run(
            [NODE, "lifecycle.mjs", localnet["bannerFile"]],
            cwd=sdk_installed,
            env={**_clean_env(), "LIFECYCLE_TIMEOUT_MS": str(int(NODE_TIMEOUT - 15) * 1000)},
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"node lifecycle.mjs did not finish in {NODE_TIMEOUT:.0f} s")
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output (exit {done.returncode}); stderr:\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], (result, done.stderr[-4000:])
    wallet = localnet["demoWallet"]
    assert result["sdk"] == {"name": "@chipi-stack/backend", "version": SDK_VERSION}
    assert result["wallet"] == wallet["publicKey"] and result["token"] == wallet["token"]
    amount = int(result["amount"])
    recipient = result["recipient"]

    # four distinct 0x-hex transaction hashes: register, execute, revoke, the short session's
    hashes = result["txHashes"]
    assert set(hashes) == {"register", "execute", "revoke", "registerShort"}
    assert all(HEX.fullmatch(h) for h in hashes.values()), hashes
    assert len(set(hashes.values())) == 4

    # after devnet_increaseTime(120) the chain refused the 60 s session as expired
    assert result["expiry"]["chainTimeAfter"] > result["expiry"]["validUntil"]
    expired = result["expiredExecute"]
    assert expired["refused"] is True and expired["errorClass"] == "ChipiApiError"
    assert expired["code"] == "SESSION_EXPIRED" and expired["status"] == 400
    assert result["balances"]["afterExpiredExecute"] == result["balances"]["afterExecute"]

    # the revoked session's execute was refused by localnet with Chipi's code, via the SDK's
    # ChipiApiError (the contract's panic text is its message)
    refused = result["revokedExecute"]
    assert refused["refused"] is True
    assert refused["errorClass"] == "ChipiApiError"
    assert refused["code"] == "SESSION_NOT_REGISTERED" and refused["status"] == 400
    assert "valid_until" in refused["message"]

    # the SDK spoke only to localnet, with the expected exchanges
    traffic = result["traffic"]
    assert not any(t.get("blocked") for t in traffic)
    rest = [t["path"].rsplit("/", 1)[-1] for t in traffic if t["path"].startswith("/v1/")]
    assert rest == ["prepare-typed-data", "execute-sponsored-transaction"] * 6
    assert [t["status"] for t in traffic if t["path"].startswith("/v1/")][-1] == 400
    assert {t.get("rpc") for t in traffic if t["path"] == "/rpc"} == {"starknet_call"}

    with httpx.Client(timeout=10) as client:
        url = localnet["rpcUrl"]
        # balances, read independently: exactly one transfer of `amount` happened
        assert (
            _balance(client, url, wallet["token"], wallet["publicKey"])
            == int(wallet["balance"]) - amount
        )
        assert _balance(client, url, wallet["token"], recipient) == amount
        balances = result["balances"]
        assert int(balances["before"]["wallet"]) - int(balances["afterExecute"]["wallet"]) == amount
        assert balances["afterRevokedExecute"] == balances["afterExecute"]

        # every transaction succeeded; the execute emitted the token's Transfer event
        for name, tx in hashes.items():
            receipt = _rpc(client, url, "starknet_getTransactionReceipt", [tx])
            assert receipt["execution_status"] == "SUCCEEDED", (name, receipt)
        events = _rpc(client, url, "starknet_getTransactionReceipt", [hashes["execute"]])["events"]
        transfer_key = [hex(selector("Transfer")), wallet["publicKey"], recipient]
        assert any(
            int(e["from_address"], 16) == int(wallet["token"], 16)
            and [int(k, 16) for k in e["keys"]] == [int(k, 16) for k in transfer_key]
            and [int(d, 16) for d in e["data"]] == [amount, 0]
            for e in events
        ), events

        # the session is gone on chain
        session_key = result["session"]["publicKey"]
        assert (
            _call(client, url, wallet["publicKey"], "get_session_data", [session_key])
            == ["0x0"] * 4
        )

    # sdk.sessions.getSessionData: recorded, not relied on. 14.4.0 decodes
    # [is_active, valid_until, remaining, ...], so with the chain's real layout
    # [valid_until, max_calls, calls_used, len] it calls a live session inactive.
    valid_until = result["session"]["validUntil"]
    read = result["sdkGetSessionData"]["afterRegister"]
    if localnet["layout"] == "real":
        assert result["sessionData"]["afterRegister"] == [hex(valid_until), "0x5", "0x0", "0x1"]
        assert result["sessionData"]["afterExecute"] == [hex(valid_until), "0x5", "0x1", "0x1"]
        assert read["matchesChain"] is False
        assert read["sdk"]["isActive"] is False and read["sdk"]["validUntil"] == 5  # the defect
    else:
        assert read["matchesChain"] is True
        assert read["sdk"]["allowedEntrypoints"] == [hex(selector("transfer"))]
    assert result["sdkGetSessionData"]["afterRevoke"]["matchesChain"] is True


def test_devnet_provider_drives_localnet(
    sdk_installed: Path, chipi_localnet: Any, tmp_path: Path
) -> None:
    """The npm starknet-devnet DevnetProvider: time, mint, dump / load and restart
    (interop/ts-sdk/devnet.mjs does the JS side)."""
    assert NODE is not None
    dump = tmp_path / "dump.json"
    done = subprocess.run(
        [NODE, "devnet.mjs", chipi_localnet.rpc_url, str(dump)],
        cwd=sdk_installed,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output (exit {done.returncode}); stderr:\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result["ok"], result
    t = result["time"]
    assert t["increased"]["time"] >= t["before"] + 3600
    assert t["increased"]["time"] <= t["afterIncrease"] <= t["increased"]["time"] + 5
    assert t["set"]["time"] == 2_000_000_000 and HEX.fullmatch(t["set"]["block_hash"])
    assert 2_000_000_000 <= t["afterSet"] <= 2_000_000_005
    minted = result["mint"]
    assert minted["newBalance"] == minted["read"] == str(10**21) and minted["unit"] == "FRI"
    assert HEX.fullmatch(minted["txHash"])
    assert result["dump"]["afterMoreMint"] == str(10**21 + 5)
    assert dump.stat().st_mode & 0o777 == 0o600
    assert result["load"]["balance"] == str(10**21)  # the mint after the dump is gone
    assert result["load"]["time"] >= 2_000_000_000  # and the time came back with the state
    # restart: back to the state localnet first served, before the STRK token existed
    assert "Contract not found" in result["restart"]["balance"]
