"""What ``bench_vs_ts_sdk.py`` runs outside its own process: one ``chipi-session localnet``,
fresh Python and node processes for cold starts and imports, the pinned TS SDK's install.

Split out of the benchmark script (the file-size rule); the script imports it from this
directory (``python benchmarks/bench_vs_ts_sdk.py`` puts ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.keys import SecretKey
from chipi_session.types import WalletData
from chipi_session.vault import Vault

ROOT = Path(__file__).resolve().parent.parent
SDK_DIR = ROOT / "interop" / "ts-sdk"
SDK_VERSION = "14.4.0"
NODE_SCRIPT = Path(__file__).resolve().parent / "ts_sdk_bench.mjs"
BEARER = "bench-bearer-token"
RECIPIENT = "0xbeef"
NODE = shutil.which("node")
NPM = shutil.which("npm")


# -- helpers -----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (clock ticks, 10 ms resolution: measure long enough)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sdk_ready() -> str | None:
    """None if the pinned SDK is installed in interop/ts-sdk (``npm ci`` if needed), else why not."""
    if NODE is None or NPM is None:
        return "node/npm not installed"
    manifest = SDK_DIR / "node_modules" / "@chipi-stack" / "backend" / "package.json"

    def installed() -> bool:
        try:
            return bool(json.loads(manifest.read_text())["version"] == SDK_VERSION)
        except (OSError, ValueError, KeyError):
            return False

    if not installed():
        print("installing the TS SDK (npm ci in interop/ts-sdk) ...", file=sys.stderr)
        try:
            subprocess.run(
                [NPM, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=SDK_DIR, capture_output=True, timeout=180, check=False,
            )
        except subprocess.TimeoutExpired:
            return "npm ci timed out"
    return None if installed() else "npm ci failed"


class Localnet:
    """One ``chipi-session localnet`` subprocess and what its banner says."""

    def __init__(self) -> None:
        code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
        argv = [sys.executable, "-c", code, "--port", "0", "--json", "--fast-kdf",
                "--fund", str(10**15)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        demo = info["demoWallet"]
        self.api_key: str = info["apiKey"]
        self.rest_url: str = info["restUrl"]
        self.rpc_url: str = info["rpcUrl"]
        self.pin: str = demo["pin"]
        self.token = int(demo["token"], 16)
        self.wallet_json = {"publicKey": demo["publicKey"],
                            "encryptedPrivateKey": demo["encryptedPrivateKey"]}
        self.wallet = WalletData(address=demo["publicKey"],
                                 encrypted_private_key=demo["encryptedPrivateKey"])
        self.owner = Vault().decrypt(demo["encryptedPrivateKey"], self.pin)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def node_config(self, mode: str, **extra: Any) -> str:
        return json.dumps({
            "mode": mode, "restUrl": self.rest_url, "rpcUrl": self.rpc_url,
            "apiKey": self.api_key, "wallet": self.wallet_json, "pin": self.pin,
            "token": hex(self.token), "recipient": RECIPIENT, "bearer": BEARER, **extra,
        })

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def localnet() -> Iterator[Localnet]:
    net = Localnet()
    try:
        yield net
    finally:
        net.close()


async def bearer_token() -> str:
    return BEARER


# -- cold start, import ------------------------------------------------------------------------

_PY_COLD = """
import json, sys, time
from chipi_session import Call, ChipiSession, WalletData
from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.types import SessionKeyData
import anyio
cfg = json.loads(sys.argv[1])

async def bearer():
    return cfg["bearer"]

async def main():
    async with ChipiApiBackend(cfg["apiKey"], base_url=cfg["restUrl"], rpc_url=cfg["rpcUrl"]) as b:
        async with ChipiSession(
            wallet=WalletData(address=cfg["wallet"]["publicKey"],
                              encrypted_private_key=cfg["wallet"]["encryptedPrivateKey"]),
            encrypt_key=cfg["pin"], backend=b, get_bearer_token=bearer, auto_check_status=False,
            stored_session=SessionKeyData(**cfg["pySession"]),
        ) as s:
            tx = await s.execute_with_session(
                Call(to=cfg["token"], selector="transfer", calldata=[cfg["recipient"], 1, 0]))
            cpu_ms = time.process_time() * 1000  # the whole process, startup included
            sys.stdout.write(json.dumps({"ok": True, "txHash": tx, "cpuMs": cpu_ms}) + "\\n")
            sys.stdout.flush()
            sys.exit(0)  # timed: the hash is back; what follows is teardown

anyio.run(main)
"""

_PY_IMPORT = """
import time
t, c = time.perf_counter(), time.process_time()
from chipi_session import ChipiSession, Call, WalletData
from chipi_session.backends.chipi_api import ChipiApiBackend
ms, cpu_ms = (time.perf_counter() - t) * 1000, time.process_time() * 1000
import json, sys
# current RSS (VmRSS; ru_maxrss would carry the forking parent's high-water mark across exec)
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))
print(json.dumps({"importMs": ms, "cpuMs": cpu_ms, "rssMb": rss / 1024,
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"starknet_py", "sympy"})}))
"""


def timed_first_line(argv: list[str]) -> tuple[float, dict[str, Any]]:
    """Spawn ``argv``; milliseconds until its first stdout line, and that line as JSON."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ms = (time.perf_counter() - t0) * 1000
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return ms, json.loads(line) if line.strip() else {}


async def register_cold_session(net: Localnet) -> dict[str, Any]:
    """A session registered on the wallet and stored as a CryptoJS blob (the SDK's format)."""
    key = SecretKey.generate()
    valid_until = int(time.time()) + 6 * 3600
    blob = Vault().encrypt_legacy_cryptojs(key.reveal(), net.pin)
    async with ChipiApiBackend(net.api_key, base_url=net.rest_url, rpc_url=net.rpc_url) as b:
        await b.add_or_update_session_key(
            net.wallet, net.owner, session_public_key=key.public_key, valid_until=valid_until,
            max_calls=10**6, allowed_entrypoints=[], bearer_token=BEARER,
        )
    return {"publicKey": hex(key.public_key), "encryptedPrivateKey": blob,
            "validUntil": valid_until}


def cold_starts(net: Localnet, rounds: int, with_sdk: bool) -> dict[str, list[float]]:
    stored = anyio.run(register_cold_session, net)
    cfg = json.loads(net.node_config("cold", session=stored))
    cfg["token"] = net.token
    cfg["recipient"] = int(RECIPIENT, 16)
    cfg["pySession"] = {"public_key": stored["publicKey"],
                        "encrypted_private_key": stored["encryptedPrivateKey"],
                        "valid_until": stored["validUntil"]}
    out: dict[str, list[float]] = {"ours": [], "sdk": [], "ours_cpu": [], "sdk_cpu": []}
    for _ in range(rounds):
        ms, got = timed_first_line([sys.executable, "-c", _PY_COLD, json.dumps(cfg)])
        if got.get("ok"):
            out["ours"].append(ms)
            out["ours_cpu"].append(got["cpuMs"])
        if with_sdk:
            assert NODE is not None
            ms, got = timed_first_line([NODE, str(NODE_SCRIPT), str(SDK_DIR),
                                        net.node_config("cold", session=stored)])
            if got.get("ok"):
                out["sdk"].append(ms)
                out["sdk_cpu"].append(got["cpuMs"])
    return out


def imports(rounds: int, with_sdk: bool) -> dict[str, Any]:
    ours = [timed_first_line([sys.executable, "-c", _PY_IMPORT])[1] for _ in range(rounds)]
    result: dict[str, Any] = {
        "ours_ms": median([o["importMs"] for o in ours]),
        "ours_cpu": median([o["cpuMs"] for o in ours]),
        "ours_rss": median([o["rssMb"] for o in ours]),
        "heavy": sorted({m for o in ours for m in o["heavy"]}),
    }
    if with_sdk:
        assert NODE is not None
        cfg = json.dumps({"mode": "import", "rpcUrl": "http://127.0.0.1:9/rpc"})
        sdk = [timed_first_line([NODE, str(NODE_SCRIPT), str(SDK_DIR), cfg])[1]
               for _ in range(rounds)]
        result["sdk_ms"] = median([s["importMs"] for s in sdk])
        result["sdk_cpu"] = median([s["cpuMs"] for s in sdk])
        result["sdk_rss"] = median([s["rssMb"] for s in sdk])
    return result


