"""localnet server CPU per execute (issue 12): how much a ``chipi-session localnet`` process
spends serving one sponsored execute (the SDK's 2 requests: prepare-typed-data + execute).

Starts ``chipi-session localnet`` as a subprocess (fast KDF for its demo wallet), registers a
session key, then drives N sequential executes with ``ChipiApiBackend`` and reads the server's
utime + stime from ``/proc/<pid>/stat`` around them (clock ticks: use N >= 500). Rounds are
interleaved when several server variants are compared, so load changes hit all of them alike.

    python benchmarks/bench_localnet.py                 # the default server, 3 x 1000 executes
    python benchmarks/bench_localnet.py --http h11 --http auto   # protocol side by side
    python benchmarks/bench_localnet.py --profile out.prof       # cProfile the server (1 round)
    python benchmarks/bench_localnet.py --baseline /tmp/old      # vs an older source tree

``--http`` is the server's ``--http`` (``auto``: httptools when installed, else h11).
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
from collections.abc import Iterator

import anyio

from chipi_session.backends.chipi_api import ChipiApiBackend
from chipi_session.keys import SecretKey
from chipi_session.types import Call, WalletData
from chipi_session.vault import Vault

BEARER = "bench-bearer"
RECIPIENT = 0xBEEF


_PROFILED = """
import cProfile, sys, time
from chipi_session.localnet import main
profiler = cProfile.Profile(time.process_time)
profiler.enable()
try:
    status = main(sys.argv[1:])
finally:
    profiler.disable()
    profiler.dump_stats({out})
sys.exit(status)
"""


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (clock ticks, 10 ms resolution: measure long enough)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One localnet subprocess (optionally under cProfile) and what its banner says."""

    def __init__(self, http: str | None, profile: str | None, src: str | None = None) -> None:
        code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
        args = ["--port", "0", "--json", "--fast-kdf", "--fund", str(10**15)]
        if profile:  # CPU time, not wall time: waiting on the socket is not the server's cost
            code = _PROFILED.format(out=json.dumps(profile))
        if http:
            args += ["--http", http]
        argv = [sys.executable, "-c", code, *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.label = http or "default"
        if src is not None:  # another source tree (e.g. an older commit) as the baseline
            env["PYTHONPATH"] = src
            self.label = f"{os.path.basename(src.rstrip('/'))}:{self.label}"
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=src)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        demo = info["demoWallet"]
        self.api_key: str = info["apiKey"]
        self.rest_url: str = info["restUrl"]
        self.rpc_url: str = info["rpcUrl"]
        self.token = int(demo["token"], 16)
        self.wallet = WalletData(
            address=demo["publicKey"], encrypted_private_key=demo["encryptedPrivateKey"]
        )
        self.owner = Vault().decrypt(demo["encryptedPrivateKey"], demo["pin"])

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def servers(
    https: list[str | None], profile: str | None, baselines: list[str]
) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for src in baselines:
            started.append(Server(None, profile, src))
        for http in https:
            started.append(Server(http, profile))
        yield started
    finally:
        for server in started:
            server.close()


class Client:
    """A ChipiApiBackend with a registered session key on one server."""

    def __init__(self, server: Server, backend: ChipiApiBackend) -> None:
        self.server = server
        self.backend = backend
        self.key = SecretKey.generate()
        self.valid_until = int(time.time()) + 6 * 3600
        self.call = Call(to=server.token, selector="transfer", calldata=[RECIPIENT, 1, 0])

    async def register(self) -> None:
        await self.backend.add_or_update_session_key(
            self.server.wallet,
            self.server.owner,
            session_public_key=self.key.public_key,
            valid_until=self.valid_until,
            max_calls=10**7,
            allowed_entrypoints=[],
            bearer_token=BEARER,
        )

    async def execute(self) -> None:
        await self.backend.execute_with_session(
            self.server.wallet,
            self.key,
            valid_until=self.valid_until,
            calls=[self.call],
            bearer_token=BEARER,
        )


async def run(
    https: list[str | None], n: int, rounds: int, profile: str | None, baselines: list[str]
) -> None:
    results: dict[str, list[float]] = {}
    client_ms: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    with servers(https, profile, baselines) as started:
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for server in started:
                backend = await stack.enter_async_context(
                    ChipiApiBackend(
                        server.api_key, base_url=server.rest_url, rpc_url=server.rpc_url
                    )
                )
                client = Client(server, backend)
                await client.register()
                for _ in range(20):  # warm-up
                    await client.execute()
                clients.append(client)
            for r in range(rounds):
                for client in clients:
                    s0, c0, t0 = client.server.cpu(), time.process_time(), time.perf_counter()
                    for _ in range(n):
                        await client.execute()
                    wall = time.perf_counter() - t0
                    ms = (client.server.cpu() - s0) / n * 1000
                    label = client.server.label
                    results.setdefault(label, []).append(ms)
                    client_ms.setdefault(label, []).append((time.process_time() - c0) / n * 1000)
                    rates.setdefault(label, []).append(n / wall)
                    print(
                        f"  round {r + 1}/{rounds} {client.server.label}: server {ms:.3f} ms "
                        f"per execute, {n / wall:.0f} exec/s",
                        file=sys.stderr,
                    )
    load = os.getloadavg()[0]
    print(f"localnet server CPU per execute (2 requests), {n} x {rounds}, load {load:.1f}")
    print(
        f"  {'server':24s} {'server CPU ms (min-max)':>26s} {'client CPU ms':>14s} {'exec/s':>7s}"
    )
    for label, values in results.items():
        spread = f"{statistics.median(values):.3f} ({min(values):.2f}-{max(values):.2f})"
        print(
            f"  {label:24s} {spread:>26s} {statistics.median(client_ms[label]):14.3f} "
            f"{statistics.median(rates[label]):7.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="executes per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--http", action="append", help="server protocol: h11, httptools or auto (repeatable)"
    )
    parser.add_argument("--profile", help="cProfile the (single) server into this file")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="DIR",
        help="also run the server from this source tree (e.g. `git archive` of an older "
        "commit), interleaved (repeatable)",
    )
    args = parser.parse_args()
    https: list[str | None] = list(args.http) if args.http else [None]
    if args.profile and len(https) + len(args.baseline) != 1:
        parser.error("--profile takes one server")
    anyio.run(run, https, args.n, args.rounds, args.profile, args.baseline)


if __name__ == "__main__":
    main()
