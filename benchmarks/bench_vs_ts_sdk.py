"""Side by side with Chipi's official TypeScript SDK (a script, not a test):

    python benchmarks/bench_vs_ts_sdk.py [--quick] [-n EXECUTES] [--rounds 3]

Starts one ``chipi-session localnet`` (a subprocess, fast KDF for its demo wallet) and runs, in
interleaved rounds so both see the same machine noise:

* sequential executes over HTTP: ours through ``ChipiSession`` (the default: returns the hash,
  confirms in the background: 2 REST + 3 JSON-RPC requests), ours through ``ChipiApiBackend``
  alone (prepare, check, sign, execute: the same 2 REST requests as the SDK), and the SDK's
  ``executeTransactionWithSession`` (node, from interop/ts-sdk) -- executes/s, client CPU and
  localnet server CPU per execute (from /proc);
* cold start -> first execute: a fresh process that imports, restores a stored session (a
  CryptoJS blob, as the SDK stores it) and executes once, timed from spawn by this process;
* import time and RSS of the working path (``ChipiSession``, ``Call``, ``WalletData``,
  ``ChipiApiBackend``) vs importing the SDK in node;
* in process on LocalChain: executes/s of 100 concurrent sessions, and one execute through
  ``ChipiSession`` vs the bare primitives (hash, sign, chain execute) -> ratio;
* the Argon2id default (``create_session`` encrypts, a restore decrypts), reported apart.

Without node (or when ``npm ci`` in interop/ts-sdk fails) the SDK columns say so. Figures are
medians over rounds. Prints a plain-text table; ``--json`` prints the raw numbers too.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
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
from anyio.streams.buffered import BufferedByteReceiveStream

from chipi_session import Call, ChipiSession, ManualClock
from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.hashing import ANY_CALLER, outside_execution_hash
from chipi_session.keys import SIGNER_BACKEND, SecretKey, session_signature
from chipi_session.localchain import LocalChain
from chipi_session.poseidon import POSEIDON_BACKEND
from chipi_session.types import WalletData
from chipi_session.vault import HighEntropyKey, KdfCost, Vault

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


# -- sequential executes over localnet ---------------------------------------------------------


class Segment:
    """Totals of one client over all rounds."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.client_ms: list[float] = []
        self.server_ms: list[float] = []

    def add(self, n: int, wall: float, client_cpu: float, server_cpu: float) -> None:
        self.rates.append(n / wall)
        self.client_ms.append(client_cpu / n * 1000)
        self.server_ms.append(server_cpu / n * 1000)


async def _settle() -> None:
    """Let background work (the engine's confirmations) finish before the next reading."""
    await anyio.sleep(0.3)


async def sequential(net: Localnet, n: int, rounds: int, with_sdk: bool) -> dict[str, Segment]:
    segments = {"session": Segment(), "backend": Segment(), "sdk": Segment()}
    call = Call(to=net.token, selector="transfer", calldata=[int(RECIPIENT, 16), 1, 0])
    node: anyio.abc.Process | None = None
    node_out: BufferedByteReceiveStream | None = None
    try:
        if with_sdk:
            assert NODE is not None
            node = await anyio.open_process(
                [NODE, str(NODE_SCRIPT), str(SDK_DIR), net.node_config("seq")],
                stderr=subprocess.DEVNULL,
            )
            assert node.stdout is not None
            node_out = BufferedByteReceiveStream(node.stdout)
            ready = json.loads(await node_out.receive_until(b"\n", 1 << 20))
            assert ready.get("ready"), ready
        async with ChipiApiBackend(
            net.api_key, base_url=net.rest_url, rpc_url=net.rpc_url
        ) as backend, ChipiSession(
            wallet=net.wallet, encrypt_key=net.pin, backend=backend,
            get_bearer_token=bearer_token, auto_check_status=False,
            vault=Vault(KdfCost.FAST_FOR_TESTS),
        ) as session:
            data = await session.create_session(6 * 3600)
            await session.register_session(max_calls=10**6)
            key = SecretKey.generate()
            await backend.add_or_update_session_key(
                net.wallet, net.owner, session_public_key=key.public_key,
                valid_until=data.valid_until, max_calls=10**6, allowed_entrypoints=[],
                bearer_token=BEARER,
            )
            for _ in range(5):  # warm-up
                await session.execute_with_session(call)
                await backend.execute_with_session(
                    net.wallet, key, valid_until=data.valid_until, calls=[call],
                    bearer_token=BEARER,
                )
            await _settle()

            async def ours_session() -> None:
                await session.execute_with_session(call)

            async def ours_backend() -> None:
                await backend.execute_with_session(
                    net.wallet, key, valid_until=data.valid_until, calls=[call],
                    bearer_token=BEARER,
                )

            for r in range(rounds):
                for name, one in (("session", ours_session), ("backend", ours_backend)):
                    s0, c0, t0 = net.cpu(), time.process_time(), time.perf_counter()
                    for _ in range(n):
                        await one()
                    wall = time.perf_counter() - t0
                    await _settle()
                    segments[name].add(n, wall, time.process_time() - c0, net.cpu() - s0)
                if node is not None and node_out is not None:
                    assert node.stdin is not None
                    s0 = net.cpu()
                    await node.stdin.send(f"run {n}\n".encode())
                    got = json.loads(await node_out.receive_until(b"\n", 1 << 20))
                    await _settle()
                    segments["sdk"].add(n, got["wallMs"] / 1000, got["cpuMs"] / 1000,
                                        net.cpu() - s0)
                print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        if node is not None:
            if node.stdin is not None:
                with contextlib.suppress(Exception):
                    await node.stdin.send(b"quit\n")
            with anyio.move_on_after(5):
                await node.wait()
            if node.returncode is None:
                node.kill()
    return segments


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


# -- in process on LocalChain ------------------------------------------------------------------


def _chain(clock: ManualClock) -> LocalChain:
    return LocalChain(clock=clock, vault=Vault(KdfCost.FAST_FOR_TESTS))


async def localchain_concurrent(sessions_n: int, per_session: int) -> float:
    clock = ManualClock(1_700_000_000)
    chain = _chain(clock)
    token = chain.deploy_token("USDC", 6)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    async with contextlib.AsyncExitStack() as stack:
        sessions = []
        for _ in range(sessions_n):
            secret = HighEntropyKey.generate()
            wallet = chain.create_wallet(secret)
            chain.mint(token, wallet.address, 10**9)
            s = await stack.enter_async_context(ChipiSession(
                wallet=wallet, encrypt_key=secret, backend=chain, clock=clock,
                auto_check_status=False, vault=Vault(KdfCost.FAST_FOR_TESTS)))
            await s.create_session(10**6)
            await s.register_session(max_calls=per_session + 1)
            await s.execute_with_session(call)  # warm-up: decrypts the key once
            sessions.append(s)

        async def run(s: ChipiSession) -> None:
            for _ in range(per_session):
                await s.execute_with_session(call)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for s in sessions:
                tg.start_soon(run, s)
        dt = time.perf_counter() - t0
    return sessions_n * per_session / dt


async def session_vs_bare(n: int) -> tuple[float, float]:
    """Median ms of one execute through ChipiSession and through the bare primitives."""
    clock = ManualClock(1_700_000_000)
    chain = _chain(clock)
    secret = HighEntropyKey.generate()
    wallet = chain.create_wallet(secret)
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 10**18)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    key = SecretKey.generate()
    async with ChipiSession(
        wallet=wallet, encrypt_key=secret, backend=chain, clock=clock, auto_check_status=False,
        vault=Vault(KdfCost.FAST_FOR_TESTS),
    ) as session:
        data = await session.create_session(10**6)
        await session.register_session(max_calls=2 * n + 10)
        await session.execute_with_session(call)
        owner_vault = Vault(KdfCost.FAST_FOR_TESTS)
        owner = owner_vault.decrypt(wallet.encrypted_private_key, secret)
        from chipi_session.localchain.testing import owner_invoke
        from chipi_session.selfcalls import add_or_update_session_key_call

        owner_invoke(chain, wallet.address, owner, [add_or_update_session_key_call(
            wallet.address, key.public_key, data.valid_until, 2 * n + 10, ())])

        def bare(nonce: int) -> None:
            now = chain.now()
            h = outside_execution_hash(
                account=wallet.address, chain_id=chain.chain_id, caller=ANY_CALLER, nonce=nonce,
                execute_after=now - 60, execute_before=now + 3600, calls=[call],
            )
            chain.execute_from_outside(
                wallet.address, caller=ANY_CALLER, nonce=nonce, execute_after=now - 60,
                execute_before=now + 3600, calls=[call],
                signature=session_signature(key, h, data.valid_until),
            )

        engine_t: list[float] = []
        bare_t: list[float] = []
        for i in range(n):  # interleaved
            t0 = time.perf_counter()
            await session.execute_with_session(call)
            t1 = time.perf_counter()
            bare(10**9 + i)
            t2 = time.perf_counter()
            engine_t.append(t1 - t0)
            bare_t.append(t2 - t1)
    return median(engine_t) * 1000, median(bare_t) * 1000


def argon2id_ms(rounds: int) -> tuple[float, float]:
    vault = Vault()  # the default KdfCost
    enc: list[float] = []
    dec: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        blob = vault.encrypt(0x1234567, "1234")
        t1 = time.perf_counter()
        vault.decrypt(blob, "1234").zero()
        t2 = time.perf_counter()
        enc.append((t1 - t0) * 1000)
        dec.append((t2 - t1) * 1000)
    return median(enc), median(dec)


# -- report ------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"


def _compare(ours: float, peer: float, better: str, worse: str) -> str:
    """``peer / ours`` for a cost (time, CPU): "1.50x faster" or "1.20x slower"."""
    if not (ours and peer and ours == ours and peer == peer):
        return "n/a"
    r = peer / ours
    return f"{r:.2f}x {better}" if r >= 1 else f"{1 / r:.2f}x {worse}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer executes per round")
    parser.add_argument("-n", type=int, default=None, help="sequential executes per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    args = parser.parse_args()
    n = args.n or (60 if args.quick else 200)
    rounds = args.rounds
    why_not = sdk_ready()
    with_sdk = why_not is None
    node_version = (subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
                    .strip() if NODE else "-")

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    with localnet() as net:
        print("sequential executes ...", file=sys.stderr)
        seq = anyio.run(sequential, net, n, rounds, with_sdk)
        print("cold starts ...", file=sys.stderr)
        cold = cold_starts(net, rounds, with_sdk)
    print("imports, LocalChain, Argon2id ...", file=sys.stderr)
    imp = imports(max(rounds, 5), with_sdk)
    tps = median([anyio.run(localchain_concurrent, 100, 5 if args.quick else 10)
                  for _ in range(rounds)])
    engine_ms, bare_ms = anyio.run(session_vs_bare, 100 if args.quick else 300)
    kdf_enc, kdf_dec = argon2id_ms(rounds)

    s, b, t = seq["session"], seq["backend"], seq["sdk"]
    sdk_rate = median(t.rates)
    rows: list[tuple[str, str, str, str]] = [
        ("sequential executes/s over localnet: ChipiSession (default, + background confirm)",
         f"{median(s.rates):.0f}", f"{sdk_rate:.0f}" if with_sdk else "-",
         _ratio(median(s.rates), sdk_rate)),
        ("sequential executes/s over localnet: ChipiApiBackend (the SDK's 2 requests)",
         f"{median(b.rates):.0f}", f"{sdk_rate:.0f}" if with_sdk else "-",
         _ratio(median(b.rates), sdk_rate)),
        ("client CPU per execute, ChipiSession (ms)", f"{median(s.client_ms):.2f}",
         f"{median(t.client_ms):.2f}" if with_sdk else "-",
         _compare(median(s.client_ms), median(t.client_ms), "less", "more")),
        ("client CPU per execute, ChipiApiBackend (ms)", f"{median(b.client_ms):.2f}",
         f"{median(t.client_ms):.2f}" if with_sdk else "-",
         _compare(median(b.client_ms), median(t.client_ms), "less", "more")),
        ("localnet server CPU per execute, ChipiSession's 5 requests (ms)",
         f"{median(s.server_ms):.2f}", "-", ""),
        ("localnet server CPU per execute, 2 requests: ours / SDK's (ms)",
         f"{median(b.server_ms):.2f}", f"{median(t.server_ms):.2f}" if with_sdk else "-",
         _compare(median(b.server_ms), median(t.server_ms), "less", "more") if with_sdk else ""),
        ("import of the working path (ms) / SDK import in node",
         f"{imp['ours_ms']:.0f}", f"{imp['sdk_ms']:.0f}" if with_sdk else "-",
         _compare(imp["ours_ms"], imp.get("sdk_ms", float("nan")), "faster", "slower")),
        ("CPU of that process until imported (ms, runtime startup included)",
         f"{imp['ours_cpu']:.0f}", f"{imp['sdk_cpu']:.0f}" if with_sdk else "-",
         _compare(imp["ours_cpu"], imp.get("sdk_cpu", float("nan")), "less", "more")),
        ("RSS after that import (MB)", f"{imp['ours_rss']:.0f}",
         f"{imp['sdk_rss']:.0f}" if with_sdk else "-",
         _compare(imp["ours_rss"], imp.get("sdk_rss", float("nan")), "less", "more")),
        ("cold start -> first execute over localnet (ms, spawn to hash)",
         f"{median(cold['ours']):.0f}", f"{median(cold['sdk']):.0f}" if with_sdk else "-",
         _compare(median(cold["ours"]), median(cold["sdk"]), "faster", "slower")),
        ("cold start -> first execute: CPU of the whole process (ms)",
         f"{median(cold['ours_cpu']):.0f}",
         f"{median(cold['sdk_cpu']):.0f}" if with_sdk else "-",
         _compare(median(cold["ours_cpu"]), median(cold["sdk_cpu"]), "less", "more")),
        ("LocalChain, 100 concurrent sessions (executes/s, in process)", f"{tps:,.0f}", "-", ""),
        ("LocalChain, one execute: ChipiSession vs bare primitives (ms)",
         f"{engine_ms:.3f}", f"{bare_ms:.3f} (bare)", f"{engine_ms / bare_ms:.3f}"),
        ("Argon2id default KdfCost: encrypt / decrypt one key (ms, not in cold start)",
         f"{kdf_enc:.0f} / {kdf_dec:.0f}", "-", ""),
    ]
    print(f"chipi-session vs @chipi-stack/backend {SDK_VERSION}  ({started}; "
          f"{os.cpu_count()} cores, load {load:.1f} at start)")
    print(f"python {platform.python_version()}, node {node_version}; Poseidon: "
          f"{POSEIDON_BACKEND}; signer: {SIGNER_BACKEND}; {n} executes x {rounds} rounds, "
          "interleaved, medians")
    if not with_sdk:
        print(f"TS SDK not run: {why_not}")
    if imp["heavy"]:
        print(f"warning: the working path imported {imp['heavy']}")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'ours':>12}  {'TS SDK':>14}  ratio")
    for label, ours, peer, ratio in rows:
        print(f"{label:<{width}}  {ours:>12}  {peer:>14}  {ratio}")
    if args.json:
        print(json.dumps({
            "session": vars(s), "backend": vars(b), "sdk": vars(t), "cold": cold,
            "import": imp, "localchain_tps": tps, "engine_ms": engine_ms, "bare_ms": bare_ms,
            "argon2id_ms": [kdf_enc, kdf_dec],
        }))


if __name__ == "__main__":
    main()
