"""Fleet benchmarks: store latency per journaled execute (Memory / SQLite / PostgreSQL), lease
renewal cost for 10,000 keys (one statement vs one per key), executes/s with 1, 2 and 3 worker
processes on one PostgreSQL and one localnet, and the failover of examples/fleet.py's fault run
(drawn as a timeline PNG when matplotlib is installed).

    python benchmarks/bench_fleet.py                 # everything (~5 minutes on 2 cores)
    python benchmarks/bench_fleet.py --only store,renewal --json

PostgreSQL is a local ``pgserver`` (bundled binaries, Unix socket, fsync on) in a temp dir.
Every process of the fleet (workers, localnet, PostgreSQL) shares this machine's cores: the
throughput table reports the machine's CPU use next to the figures, so a flat curve from 2 to 3
workers reads as "CPU-bound here", not as "does not scale".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from chipi_session.stores import JournalEntry, MemoryStore, SqliteStore, ThreadedStore
from chipi_session.stores.postgres import PostgresStore

ROOT = Path(__file__).resolve().parent.parent


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("fleet_example", ROOT / "examples" / "fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    server = pgserver.get_server(tempfile.mkdtemp(prefix="chipi-bench-pg-"), cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def new_database(server: Any) -> str:
    import psycopg

    name = f"bench_{os.urandom(6).hex()}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return str(server.get_uri(name))


# -- store latency per journaled execute ----------------------------------------------------


async def _journaled_executes(store: ThreadedStore, n: int) -> list[float]:
    """The store work of one journaled execute, as the hub does it: append before signing,
    record the nonce before sending, remove once the outcome is known (all fenced)."""
    token = await store.acquire_lease("user", "bench", 600, time.time())
    assert token is not None
    times = []
    for i in range(n):
        start = time.perf_counter()
        entry = JournalEntry.new("user", "execute", 0x1234, created_at=float(i))
        await store.journal_append(entry, fencing_token=token)
        sent = JournalEntry(entry.entry_id, "user", "execute", 0x1234, float(i), i + 1, 10**9, 7)
        await store.journal_update(sent, fencing_token=token)
        await store.journal_remove(entry.entry_id, fencing_token=token)
        times.append(time.perf_counter() - start)
    return times


def bench_store(server: Any, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        stores: dict[str, Callable[[], Any]] = {
            "memory": MemoryStore,
            "sqlite": lambda: SqliteStore(Path(d) / "bench.db"),
            "postgres": lambda: PostgresStore(new_database(server)),
        }
        for name, make in stores.items():
            sync = make()
            try:
                times = anyio.run(_journaled_executes, ThreadedStore(sync), n)
            finally:
                sync.close()
            times.sort()
            out[name] = {
                "median_ms": round(statistics.median(times) * 1e3, 3),
                "p95_ms": round(times[int(len(times) * 0.95)] * 1e3, 3),
            }
    return out


# -- lease renewal for 10,000 keys ----------------------------------------------------------


def bench_renewal(server: Any, keys: int, sample: int) -> dict[str, Any]:
    import psycopg

    url = new_database(server)
    store = PostgresStore(url)
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:  # setup, not measured: 10k leases
        conn.execute(
            "INSERT INTO chipi_leases (key, owner, token, expires_at)"
            " SELECT 'user-' || g, 'bench', 1, %s FROM generate_series(0, %s) g",
            (now + 600, keys - 1),
        )
    names = [f"user-{i}" for i in range(keys)]
    start = time.perf_counter()
    kept = store.renew_leases(names, "bench", 600, now + 1)
    batch = time.perf_counter() - start
    assert len(kept) == keys
    start = time.perf_counter()
    for name in names[:sample]:
        assert store.renew_lease(name, "bench", 600, now + 2)
    per_key_pg = (time.perf_counter() - start) / sample
    store.close()
    with tempfile.TemporaryDirectory() as d:
        lite = SqliteStore(Path(d) / "leases.db")
        for name in names[:sample]:
            lite.acquire_lease(name, "bench", 600, now)
        start = time.perf_counter()
        for name in names[:sample]:
            assert lite.renew_lease(name, "bench", 600, now + 1)
        per_key_sqlite = (time.perf_counter() - start) / sample
        lite.close()
    return {
        "keys": keys,
        "postgres_one_statement_s": round(batch, 4),
        "postgres_per_key_s_extrapolated": round(per_key_pg * keys, 2),
        "sqlite_per_key_s_extrapolated": round(per_key_sqlite * keys, 2),
        "per_key_sample": sample,
    }


# -- executes/s with 1, 2, 3 workers --------------------------------------------------------


def _successes(workdir: Path) -> list[tuple[int, float]]:
    """(worker index, wall time) of every reported success."""
    out = []
    for path in workdir.glob("attempts-*.log"):
        index = int(path.stem.split("-")[1])
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "S":
                out.append((index, float(parts[2])))
    return out


def bench_throughput(server: Any, workers: int, users: int, window: float) -> dict[str, Any]:
    import psutil

    example = _example()
    workdir = Path(tempfile.mkdtemp(prefix="chipi-bench-fleet-"))
    args = argparse.Namespace(
        users=users, backend="asyncio", pace=0.05, concurrency=32, json=True, phase=0
    )
    db = new_database(server)
    PostgresStore(db).close()
    with example.localnet(workdir):
        run = example.Run(args, db, workdir)
        try:
            for i in range(workers):
                run.start_worker(i)
            run.wait_covered(list(range(workers)), 60 + 2 * users, "the first assignment")
            time.sleep(2.0)  # past the first registrations
            psutil.cpu_percent()
            start = time.time()
            time.sleep(window)
            end = time.time()
            cpu = psutil.cpu_percent()
            (workdir / "stop").touch()
            for proc in run.procs.values():
                proc.wait(timeout=60)
        finally:
            run.kill_all()
    done = [t for _, t in _successes(workdir) if start <= t < end]
    return {
        "workers": workers,
        "executes_per_s": round(len(done) / (end - start), 1),
        "machine_cpu_percent": cpu,
        "cores": os.cpu_count(),
    }


# -- failover, and the picture --------------------------------------------------------------


def bench_failover(server: Any, users: int, png: Path | None) -> dict[str, Any]:
    example = _example()
    workdir = Path(tempfile.mkdtemp(prefix="chipi-bench-failover-"))
    args = argparse.Namespace(
        db=new_database(server),
        users=users,
        backend="asyncio",
        workdir=str(workdir),
        phase=6.0,
        pace=0.2,
        concurrency=16,
        json=True,
    )
    report = example.orchestrate(args)
    out = {k: report[k] for k in ("ok", "failover_seconds", "executed", "successes", "in_doubt")}
    out["timeline"] = report["timeline"]
    if png is not None:
        out["png"] = _draw(workdir, report, png)
    return out


def _draw(workdir: Path, report: dict[str, Any], png: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    t0 = report["t0_wall"]
    per: dict[int, dict[int, int]] = {}
    for index, t in _successes(workdir):
        second = int(t - t0)
        per.setdefault(index, {}).setdefault(second, 0)
        per[index][second] += 1
    fig, ax = plt.subplots(figsize=(10, 4))
    for index in sorted(per):
        xs = sorted(per[index])
        ax.plot(xs, [per[index][x] for x in xs], label=f"worker {index}")
    for offset, what in report["timeline"]:
        if any(word in what for word in ("SIGKILL", "joins", "connections")):
            ax.axvline(offset, color="grey", linestyle="--")
            ax.text(offset, ax.get_ylim()[1] * 0.95, what.split(" (")[0], rotation=90, va="top")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("executes/s")
    ax.set_title(
        f"fleet under faults ({report['users']} users); failover {report['failover_seconds']} s"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    return str(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="store,renewal,throughput,failover")
    parser.add_argument("--executes", type=int, default=300)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=120, help="users of the throughput runs")
    parser.add_argument("--failover-users", type=int, default=300)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--png", default="fleet-timeline.png")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    results: dict[str, Any] = {}
    with postgres() as server:
        if "store" in parts:
            results["store_per_journaled_execute"] = bench_store(server, args.executes)
            _show("store latency per journaled execute (3 fenced writes)", results)
        if "renewal" in parts:
            results["lease_renewal"] = bench_renewal(server, args.keys, sample=1000)
            _show("lease renewal", results)
        if "throughput" in parts:
            results["throughput"] = [
                bench_throughput(server, n, args.users, args.window) for n in (1, 2, 3)
            ]
            _show("executes/s by workers", results)
        if "failover" in parts:
            results["failover"] = bench_failover(server, args.failover_users, Path(args.png))
            _show("failover", results)
    if args.json:
        print(json.dumps(results))


def _show(title: str, results: dict[str, Any]) -> None:
    key = list(results)[-1]
    print(f"== {title}", file=sys.stderr)
    print(json.dumps(results[key], indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
