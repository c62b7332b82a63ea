"""HTTP benchmark (a script, not a test): python benchmarks/bench_http.py [--quick]

Executes per second through ChipiSession + ChipiApiBackend over real loopback HTTP against an in-process
localnet (uvicorn on its own thread), with keep-alive, and where each execute's time goes:

- sign:   client-side crypto: checking the prepared typed data (SNIP-12 hash) + ECDSA signing
- server: time the server spent in the chain (prepare: issue the typed data; execute: hash,
          verify, run execute_from_outside_v2), from the Server-Timing header
- http:   the rest of the two round trips: both HTTP stacks, JSON, routing, loopback

Runs sequentially (latency) and with N concurrent tasks on one session (throughput), on
asyncio and trio. By default the server is a separate process (``chipi-session localnet``), so
client and server do not share a GIL; ``--in-process`` runs it on a thread of this process
(what the tests do), where both halves compete for one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import anyio

from chipi_session import ChipiSession
from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.http import Exchange
from chipi_session.keys import SIGNER_BACKEND, SecretKey
from chipi_session.localnet import LocalnetServer
from chipi_session.types import Call, WalletData
from chipi_session.vault import KdfCost, Vault

BEARER = "bench-token"


class Meter:
    """Collects per-execute phase timings from the backend's hooks."""

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = defaultdict(list)
        self.server: dict[str, list[float]] = defaultdict(list)
        self.requests = 0

    def timing(self, phase: str, seconds: float) -> None:
        self.phases[phase].append(seconds * 1000)

    def exchange(self, ex: Exchange) -> None:
        self.requests += 1
        if ex.server_ms is not None and ex.path.startswith("/v1/"):
            self.server[ex.path.rsplit("/", 1)[-1]].append(ex.server_ms)

    def reset(self) -> None:
        self.phases.clear()
        self.server.clear()
        self.requests = 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Target:
    """Where the server is and what it gave us to play with."""

    def __init__(
        self,
        api_key: str,
        rest_url: str,
        rpc_url: str,
        wallet: WalletData,
        owner: SecretKey,
        token: int,
        pin: str,
    ) -> None:
        self.api_key, self.rest_url, self.rpc_url = api_key, rest_url, rpc_url
        self.wallet, self.owner, self.token, self.pin = wallet, owner, token, pin


@contextlib.contextmanager
def in_process() -> Iterator[Target]:
    with LocalnetServer(kdf_cost=KdfCost.FAST_FOR_TESTS) as server:
        demo = server.create_demo_wallet("1234", fund=10**15)
        owner = Vault().decrypt(demo.encrypted_private_key, "1234")
        yield Target(
            server.api_key, server.rest_url, server.rpc_url, demo.wallet, owner, demo.token, "1234"
        )


@contextlib.contextmanager
def subprocess_server() -> Iterator[Target]:
    code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        sys.executable,
        "-c",
        code,
        "--port",
        "0",
        "--json",
        "--fast-kdf",
        "--fund",
        str(10**15),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        demo = info["demoWallet"]
        owner = Vault().decrypt(demo["encryptedPrivateKey"], demo["pin"])
        wallet = WalletData(
            address=demo["publicKey"], encrypted_private_key=demo["encryptedPrivateKey"]
        )
        yield Target(
            info["apiKey"],
            info["restUrl"],
            info["rpcUrl"],
            wallet,
            owner,
            int(demo["token"], 16),
            demo["pin"],
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def bearer_token() -> str:
    return BEARER


async def run(target: Target, n: int, concurrency: int) -> dict[str, Any]:
    """Executes through ChipiSession (pre-flight, reservation, events) over the backend."""
    meter = Meter()
    wallet, token = target.wallet, target.token
    async with ChipiApiBackend(
        target.api_key,
        base_url=target.rest_url,
        rpc_url=target.rpc_url,
        on_timing=meter.timing,
        on_exchange=meter.exchange,
    ) as backend, ChipiSession(
        wallet=wallet,
        encrypt_key=target.pin,
        backend=backend,
        get_bearer_token=bearer_token,
        auto_check_status=False,
        vault=Vault(KdfCost.FAST_FOR_TESTS),
    ) as session:
        await session.create_session(3600)
        await session.register_session(max_calls=10**6)
        call = Call(to=token, selector="transfer", calldata=[0xBEEF, 1, 0])

        async def one() -> None:
            await session.execute_with_session(call)

        for _ in range(5):  # warm-up: connections, caches
            await one()
        meter.reset()
        latencies: list[float] = []
        limiter = anyio.Semaphore(concurrency)

        async def timed() -> None:
            async with limiter:
                t0 = time.perf_counter()
                await one()
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(timed)
        wall = time.perf_counter() - started

    sign = [c + s for c, s in zip(meter.phases["check"], meter.phases["sign"], strict=True)]
    server_ms = [
        p + e
        for p, e in zip(
            meter.server["prepare-typed-data"],
            meter.server["execute-sponsored-transaction"],
            strict=True,
        )
    ]
    round_trips = [
        p + e for p, e in zip(meter.phases["prepare"], meter.phases["execute"], strict=True)
    ]
    http = [rt - sv for rt, sv in zip(round_trips, server_ms, strict=True)]
    return {
        "concurrency": concurrency,
        "executes": n,
        "executes_per_s": round(n / wall, 1),
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(pct(latencies, 0.95), 2),
        "sign_ms_p50": round(statistics.median(sign), 3),
        "http_ms_p50": round(statistics.median(http), 3),
        "server_ms_p50": round(statistics.median(server_ms), 3),
        "http_requests_per_execute": round(meter.requests / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer executes")
    parser.add_argument("-n", type=int, default=None, help="executes per run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument(
        "--in-process", action="store_true", help="server on a thread of this process"
    )
    args = parser.parse_args()
    n = args.n or (100 if args.quick else 500)

    with in_process() if args.in_process else subprocess_server() as target:
        where = "in-process" if args.in_process else "subprocess"
        print(
            f"signer: {SIGNER_BACKEND}; localnet ({where}) at {target.rest_url}; {n} executes per run"
        )
        for backend in ("asyncio", "trio"):
            for concurrency in (1, args.concurrency):
                result = anyio.run(run, target, n, concurrency, backend=backend)
                result["backend"] = backend
                if args.json:
                    print(json.dumps(result))
                else:
                    print(
                        f"{backend:7} x{concurrency:<3} {result['executes_per_s']:8.1f} exec/s  "
                        f"latency p50 {result['latency_ms_p50']:6.2f} ms p95 "
                        f"{result['latency_ms_p95']:6.2f} ms  | per execute: sign "
                        f"{result['sign_ms_p50']:.2f} ms, http {result['http_ms_p50']:.2f} ms, "
                        f"server {result['server_ms_p50']:.2f} ms  "
                        f"({result['http_requests_per_execute']} requests)"
                    )


if __name__ == "__main__":
    main()
