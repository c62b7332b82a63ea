"""Side by side with Chipi's official TypeScript SDK (a script, not a test):

    python benchmarks/bench_vs_ts_sdk.py [--quick] [-n EXECUTES] [--rounds 3]

Starts one ``chipi-session localnet`` (a subprocess, fast KDF for its demo wallet) and runs, in
interleaved rounds so both see the same machine noise:

* sequential executes over HTTP: ours through ``ChipiSession`` (the default: returns the hash,
  confirms in the background: 2 REST requests + 1 JSON-RPC batch of receipt and trace), ours
  through ``ChipiApiBackend``
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
import subprocess
import sys
import time

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream
from ts_sdk_procs import (
    BEARER,
    NODE,
    NODE_SCRIPT,
    RECIPIENT,
    SDK_DIR,
    SDK_VERSION,
    Localnet,
    bearer_token,
    cold_starts,
    imports,
    localnet,
    median,
    sdk_ready,
)

from chipi_session import Call, ChipiSession, ManualClock
from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.hashing import ANY_CALLER, outside_execution_hash
from chipi_session.keys import SIGNER_BACKEND, SecretKey, session_signature
from chipi_session.localchain import LocalChain
from chipi_session.poseidon import POSEIDON_BACKEND
from chipi_session.vault import HighEntropyKey, KdfCost, Vault

# -- sequential executes over localnet ---------------------------------------------------------


class Segment:
    """Totals of one client over all rounds."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.client_ms: list[float] = []
        self.server_ms: list[float] = []
        self.requests: list[float] = []

    def add(self, n: int, wall: float, client_cpu: float, server_cpu: float,
            requests: int = 0) -> None:
        self.rates.append(n / wall)
        self.client_ms.append(client_cpu / n * 1000)
        self.server_ms.append(server_cpu / n * 1000)
        self.requests.append(requests / n)


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
        sent: list[object] = []  # every HTTP request our client makes (REST and RPC)
        async with ChipiApiBackend(
            net.api_key, base_url=net.rest_url, rpc_url=net.rpc_url, on_exchange=sent.append
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
                    sent.clear()
                    s0, c0, t0 = net.cpu(), time.process_time(), time.perf_counter()
                    for _ in range(n):
                        await one()
                    wall = time.perf_counter() - t0
                    await _settle()
                    segments[name].add(n, wall, time.process_time() - c0, net.cpu() - s0,
                                       len(sent))
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
        ("HTTP requests per execute: ChipiSession / ChipiApiBackend (REST + RPC)",
         f"{median(s.requests):.2f} / {median(b.requests):.2f}", "2" if with_sdk else "-", ""),
        ("localnet server CPU per execute, ChipiSession's 3 requests (ms)",
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
