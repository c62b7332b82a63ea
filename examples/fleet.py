"""A fleet of bot processes on one PostgreSQL and one ``chipi-session localnet``, under faults.

Three worker processes share the users' sessions (rendezvous-hashed, leased, renewed in batches,
auto-renewed session keys) and pay one unit per execute, each to a recipient address of its own
(so the chain tells exactly which attempts executed). Mid-load the orchestrator SIGKILLs one
worker, later adds a new one, and kills the database connection of another. At the end it
checks that every session is served by exactly one live worker, that the chain's executed
transfers equal the reported successes plus in-doubt writes that executed (nothing twice,
nothing lost), and that no private key reached the database or a file; it measures failover.

    python examples/fleet.py                      # starts its own PostgreSQL (pgserver)
    python examples/fleet.py --db postgresql://... --users 300 --backend trio --json

Needs the ``postgres`` and ``localnet`` extras (and ``pgserver`` without ``--db``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RECIPIENT_BASE = 0x5000000000
MAX_CALLS = 12  # small, so sessions are auto-renewed during the run
TTL = 3.0  # lease TTL (s): the failover time is about this plus one tick


# -- a worker ---------------------------------------------------------------------------------


async def worker(args: argparse.Namespace) -> None:
    import anyio
    import attrs

    from chipi_session import Call, ChipiSessionError, ErrorCode, RenewalPolicy, SessionHub
    from chipi_session.backends.chipi_api import ChipiApiBackend
    from chipi_session.fleet import Fleet
    from chipi_session.keys import generate_private_key
    from chipi_session.stores.postgres import PostgresStore
    from chipi_session.types import WalletData
    from chipi_session.vault import KdfCost, Vault

    info = json.loads(Path(args.localnet).read_text())
    demo = info["demoWallet"]
    wallet = WalletData(
        address=demo["publicKey"], encrypted_private_key=demo["encryptedPrivateKey"]
    )
    token, pin = int(demo["token"], 16), demo["pin"]
    workdir = Path(args.workdir)
    owner = f"w{args.index}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    keys = [f"user-{i}" for i in range(args.users)]
    generated: list[int] = []  # session private keys made here: in memory only, for the audit

    def key_source() -> int:
        key = generate_private_key()
        generated.append(key)
        return key

    store = PostgresStore(args.db, max_size=6, application_name=f"fleet-w{args.index}")
    # the fleet's heartbeats and batched renewals get a pool of their own: they must never
    # queue behind the sessions' journal writes (a late renewal stops the whole worker)
    fleet_store = PostgresStore(args.db, max_size=1, application_name=f"fleet-w{args.index}")
    log = open(workdir / f"attempts-{args.index}.log", "a", buffering=1)  # noqa: SIM115
    ids = itertools.count(args.index * 10_000_000)
    stopping = anyio.Event()
    busy: set[str] = set()
    limiter = anyio.CapacityLimiter(args.concurrency)

    async def open_user(hub: SessionHub, key: str) -> Any:
        session = await hub.open(key=key, wallet=wallet, encrypt_key=pin, key_source=key_source)
        if not session.has_active_session:
            await session.create_session(3600)
            await session.register_session(max_calls=MAX_CALLS, allowed_entrypoints=["transfer"])
        return session

    async def pay(fleet: Fleet, key: str) -> None:
        try:
            async with limiter, fleet.use(key) as session:
                if not session.has_active_session or session.is_renewing:
                    return
                n = next(ids)
                log.write(f"A {n} {key}\n")
                call = Call(to=token, selector="transfer", calldata=[RECIPIENT_BASE + n, 1, 0])
                try:
                    await session.execute_with_session(call)
                    log.write(f"S {n} {time.time():.3f}\n")
                except ChipiSessionError as exc:
                    if exc.applied:
                        log.write(f"S {n} {time.time():.3f}\n")  # executed; its hash was lost
                    elif (
                        exc.code is ErrorCode.UNKNOWN_OUTCOME
                        or exc.applied is None
                        and (exc.code in (ErrorCode.CLOSED, ErrorCode.ACTION_IN_PROGRESS))
                    ):
                        log.write(f"D {n} {exc.code.value}\n")
                    else:
                        log.write(f"F {n} {exc.code.value}\n")
                except Exception as exc:  # noqa: BLE001 - anything else: we cannot know
                    log.write(f"D {n} {type(exc).__name__}\n")
        except ChipiSessionError:
            pass  # not served here (moving, or not ours): the owner pays it
        finally:
            busy.discard(key)

    def status(fleet: Fleet, final: dict[str, Any] | None = None) -> None:
        data = {
            "owner": owner,
            "index": args.index,
            "keys": sorted(k for k in fleet.keys if fleet.serves(k)),
            "stats": attrs.asdict(fleet.stats),
            "final": final,
        }
        tmp = workdir / f".status-{args.index}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, workdir / f"status-{args.index}.json")

    async with ChipiApiBackend(
        info["apiKey"], base_url=info["restUrl"], rpc_url=info["rpcUrl"]
    ) as backend:

        async def bearer() -> str:
            return "fleet-user-jwt"  # localnet accepts any token; use your users' JWTs

        async with SessionHub(
            backend=backend,
            store=store,
            get_bearer_token=bearer,
            vault=Vault(KdfCost.FAST_FOR_TESTS),  # play money; use the default cost for real
            renewal=RenewalPolicy(min_remaining_calls=3),
            status_interval=5.0,
            **Fleet.hub_options(owner, TTL),
        ) as hub:
            fleet = Fleet(
                hub,
                fleet_store,
                owner=owner,
                keys=keys,
                open_session=open_user,
                lease_ttl=TTL,
                tick=TTL / 3,
                jitter=0.2,
                max_acquisitions_per_tick=60,
            )
            async with fleet, anyio.create_task_group() as tg:

                async def report() -> None:
                    while True:
                        status(fleet)
                        if (workdir / "stop").exists():
                            stopping.set()
                            return
                        await anyio.sleep(0.2)

                tg.start_soon(report)
                while not stopping.is_set():
                    for key in sorted(fleet.keys):
                        if key not in busy and fleet.serves(key):
                            busy.add(key)
                            tg.start_soon(pay, fleet, key)
                    await anyio.sleep(args.pace)
                with anyio.move_on_after(10):  # let in-flight payments and doubts settle
                    while busy or any(s.in_doubt for s in hub):
                        await anyio.sleep(0.1)
                served = sorted(fleet.keys)
                await fleet.drain()
    store.close()
    fleet_store.close()
    log.close()
    status_final = {"served_at_stop": served, "secret_found": _scan_secrets(args, generated)}
    tmp = workdir / f".final-{args.index}.tmp"
    tmp.write_text(json.dumps(status_final))
    os.replace(tmp, workdir / f"final-{args.index}.json")


def _forms(value: int) -> list[bytes]:
    text = [str(value), hex(value), format(value, "x"), format(value, "064x"), format(value, "X")]
    return [t.encode() for t in text] + [value.to_bytes(32, "big")]


def _db_bytes(url: str) -> bytes:
    import psycopg

    rows: list[str] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in tables.fetchall():
            rows += [repr(r) for r in conn.execute(f"SELECT * FROM {table}").fetchall()]  # noqa: S608
    return "\n".join(rows).encode()


def _scan_secrets(args: argparse.Namespace, secrets: list[int]) -> bool:
    """Is any of ``secrets`` in the database or in a file of the run, in any spelling?"""
    blobs = [_db_bytes(args.db)] + [
        p.read_bytes() for p in Path(args.workdir).iterdir() if p.is_file()
    ]
    return any(form in blob for secret in secrets for form in _forms(secret) for blob in blobs)


# -- the orchestrator -------------------------------------------------------------------------


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    data = tempfile.mkdtemp(prefix="chipi-fleet-pg-")
    server = pgserver.get_server(data, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def localnet(workdir: Path) -> Iterator[dict[str, Any]]:
    """``chipi-session localnet`` in a process of its own; its banner is in localnet.json."""
    code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
    chain = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--json", "--fast-kdf"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert chain.stdout is not None
        info = json.loads(chain.stdout.readline())
        (workdir / "localnet.json").write_text(json.dumps(info))
        yield info
    finally:
        chain.send_signal(signal.SIGTERM)
        try:
            chain.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chain.kill()


class Run:
    def __init__(self, args: argparse.Namespace, db: str, workdir: Path) -> None:
        self.args, self.db, self.workdir = args, db, workdir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.events: list[tuple[float, str]] = []

    def mark(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.t0, 3), what))
        if not self.args.json:
            print(f"[{self.events[-1][0]:7.2f}s] {what}", flush=True)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def start_worker(self, index: int) -> None:
        argv = [sys.executable, __file__, "worker", "--index", str(index), "--db", self.db]
        argv += ["--workdir", str(self.workdir), "--localnet", str(self.workdir / "localnet.json")]
        argv += ["--users", str(self.args.users), "--backend", self.args.backend]
        argv += ["--pace", str(self.args.pace), "--concurrency", str(self.args.concurrency)]
        err = open(self.workdir / f"worker-{index}.err", "wb")  # noqa: SIM115
        self.procs[index] = subprocess.Popen(argv, stdout=err, stderr=err)

    def statuses(self, live: list[int]) -> dict[int, dict[str, Any]]:
        out = {}
        for i in live:
            path = self.workdir / f"status-{i}.json"
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                out[i] = json.loads(path.read_text())
        return out

    def coverage(self, live: list[int]) -> tuple[list[str], list[str]]:
        """(unserved keys, keys served twice) among the live workers' last reports."""
        count: dict[str, int] = {f"user-{i}": 0 for i in range(self.args.users)}
        for status in self.statuses(live).values():
            for key in status["keys"]:
                count[key] += 1
        return sorted(k for k, c in count.items() if c == 0), sorted(
            k for k, c in count.items() if c > 1
        )

    def wait_covered(self, live: list[int], timeout: float, what: str) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            for i in live:
                if self.procs[i].poll() is not None:
                    raise SystemExit(f"worker {i} died: see {self.workdir}/worker-{i}.err")
            unserved, twice = self.coverage(live)
            if not unserved and not twice:
                return time.monotonic() - start
            time.sleep(0.05)
        raise SystemExit(f"timeout waiting for {what}: {self.coverage(live)}")


def _rpc_batch(url: str, calls: list[dict[str, Any]]) -> list[Any]:
    import httpx

    out: list[Any] = []
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(calls), 200):  # localnet takes batches of up to 256
            chunk = calls[start : start + 200]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": "starknet_call", "params": c}
                for i, c in enumerate(chunk)
            ]
            answers = sorted(client.post(url, json=payload).json(), key=lambda a: a["id"])
            out += [int(a["result"][0], 16) for a in answers]
    return out


def _balances(info: dict[str, Any], owners: list[int]) -> list[int]:
    from chipi_session.felts import selector, to_hex

    token = info["demoWallet"]["token"]
    sel = to_hex(selector("balance_of"))
    calls = [
        {
            "request": {
                "contract_address": token,
                "entry_point_selector": sel,
                "calldata": [to_hex(o)],
            },
            "block_id": "latest",
        }
        for o in owners
    ]
    return _rpc_batch(info["rpcUrl"], calls)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from chipi_session.stores.postgres import PostgresStore
    from chipi_session.vault import Vault

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chipi-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with _database(args.db) as db, localnet(workdir) as info:
        PostgresStore(db).close()  # create the schema once
        run = Run(args, db, workdir)
        try:
            wallet = int(info["demoWallet"]["publicKey"], 16)
            (funds_before,) = _balances(info, [wallet])
            for i in range(3):
                run.start_worker(i)
            run.mark("3 workers started")
            run.wait_covered([0, 1, 2], 60 + args.users, "the first assignment")
            run.mark(f"all {args.users} sessions served")
            time.sleep(args.phase)
            victim = run.statuses([1])[1]
            os.kill(run.procs[1].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            run.procs[1].wait()
            run.mark(f"SIGKILL worker 1 ({len(victim['keys'])} sessions)")
            run.wait_covered([0, 2], 60, "failover")
            failover = time.monotonic() - killed_at
            run.mark(f"failover done in {failover:.2f}s")
            time.sleep(args.phase / 2)
            run.start_worker(3)
            run.mark("worker 3 joins")
            joined_at = time.monotonic()
            while not run.statuses([3]).get(3, {}).get("keys"):
                if time.monotonic() - joined_at > 60 or run.procs[3].poll() is not None:
                    raise SystemExit(f"worker 3 never served: see {workdir}/worker-3.err")
                time.sleep(0.05)
            run.wait_covered([0, 2, 3], 60, "the join")
            join = time.monotonic() - joined_at
            run.mark(f"rebalanced after the join (+{join:.2f}s)")
            with psycopg.connect(db, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM"
                    " pg_stat_activity WHERE application_name = 'fleet-w2') t"
                ).fetchone()
            run.mark(f"killed worker 2's {cut[0] if cut else 0} database connections")
            time.sleep(args.phase)
            run.wait_covered([0, 2, 3], 30, "the steady state")
            unserved, twice = run.coverage([0, 2, 3])
            live_owners = {s["owner"] for s in run.statuses([0, 2, 3]).values()}
            with psycopg.connect(db) as conn:
                leases = conn.execute(
                    "SELECT key, owner FROM chipi_leases WHERE expires_at > extract(epoch"
                    " from now())"
                ).fetchall()
            by_dead = sorted(k for k, o in leases if o == victim["owner"])
            not_leased = sorted(
                {f"user-{i}" for i in range(args.users)}
                - {k for k, o in leases if o in live_owners}
            )
            run.mark("steady state checked; stopping")
            (workdir / "stop").touch()
            for i in (0, 2, 3):
                run.procs[i].wait(timeout=60)
            run.mark("workers stopped")
            attempts, outcome = _read_logs(workdir)
            ids = sorted(attempts)
            balances = dict(
                zip(ids, _balances(info, [RECIPIENT_BASE + n for n in ids]), strict=True)
            )
            (funds_after,) = _balances(info, [wallet])
            journal = PostgresStore(db)
            pending = len(journal.journal_pending())
            journal.close()
        finally:
            run.kill_all()
        executed = {n for n, b in balances.items() if b > 0}
        successes = {n for n, o in outcome.items() if o == "S"}
        failed = {n for n, o in outcome.items() if o == "F"}
        doubt = {n for n in attempts if outcome.get(n) in (None, "D")}
        finals = [
            json.loads((workdir / f"final-{i}.json").read_text())
            for i in (0, 2, 3)
            if (workdir / f"final-{i}.json").exists()
        ]
        owner_key = Vault().decrypt(
            info["demoWallet"]["encryptedPrivateKey"], info["demoWallet"]["pin"]
        )
        blobs = [_db_bytes(db)] + [p.read_bytes() for p in workdir.iterdir() if p.is_file()]
        owner_leak = any(f in b for f in _forms(owner_key.reveal()) for b in blobs)
        report = {
            "backend": args.backend,
            "users": args.users,
            "attempts": len(attempts),
            "executed": len(executed),
            "successes": len(successes),
            "failures": len(failed),
            "in_doubt": len(doubt),
            "in_doubt_executed": len(executed & doubt),
            "applied_twice": sum(1 for b in balances.values() if b > 1),
            "reported_failed_but_executed": len(failed & executed),
            "reported_success_not_executed": len(successes - executed),
            "executed_unexplained": (funds_before - funds_after) - sum(balances.values()),
            "unserved": unserved,
            "served_twice": twice,
            "served_by_dead": by_dead,
            "not_leased_by_a_live_worker": not_leased,
            "journal_pending": pending,
            "secret_in_db": owner_leak or any(f["secret_found"] for f in finals),
            "secret_in_files": owner_leak,
            "workers_reporting": len(finals),
            "failover_seconds": round(failover, 3),
            "timeline": run.events,
            "t0_wall": run.t0_wall,
            "workdir": str(workdir),
        }
        report["ok"] = (
            report["applied_twice"] == 0
            and report["reported_failed_but_executed"] == 0
            and report["reported_success_not_executed"] == 0
            and report["executed_unexplained"] == 0
            and not unserved
            and not twice
            and not by_dead
            and not not_leased
            and len(finals) == 3
            and not report["secret_in_db"]
        )
        return report


def _read_logs(workdir: Path) -> tuple[dict[int, str], dict[int, str]]:
    attempts: dict[int, str] = {}
    outcome: dict[int, str] = {}
    for path in workdir.glob("attempts-*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue  # a line cut by SIGKILL
            kind, n = parts[0], int(parts[1])
            if kind == "A":
                attempts[n] = parts[2] if len(parts) > 2 else ""
            else:
                outcome[n] = kind
    return attempts, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="orchestrate", choices=["orchestrate", "worker"])
    parser.add_argument("--db", default=None, help="PostgreSQL URL (default: start pgserver)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--phase", type=float, default=4.0, help="seconds of load between faults")
    parser.add_argument("--pace", type=float, default=0.5, help="seconds between payment rounds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--localnet", default=None)
    args = parser.parse_args()
    if args.role == "worker":
        import anyio

        anyio.run(worker, args, backend=args.backend)
        return
    report = orchestrate(args)
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in report.items():
            if name != "timeline":
                print(f"{name:>30}: {value}")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
