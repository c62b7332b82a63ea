"""SessionHub benchmarks (a script, not a test): python benchmarks/bench_hub.py [--quick]

- open/close cost per session with 1k vs 10k sessions already open (ratio ~1 = independent)
- memory per open session at 10k (a created session each; key crypto state included)
- idle CPU of a hub holding 10k sessions (system clock)
- expiry-timer lateness with 10k deadlines armed (system clock)
- status polling for 10k sessions at the default 30 s interval: reads/s and batched requests/s
- executes per second across 100 concurrent sessions on LocalChain
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc

import anyio

from chipi_session import Call, ManualClock, SessionHub, StateChanged, SystemClock
from chipi_session.localchain import LocalChain
from chipi_session.vault import HighEntropyKey, KdfCost, Vault


def setup(clock: object) -> tuple[LocalChain, object, HighEntropyKey, Vault]:
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(clock=clock, vault=vault)  # type: ignore[arg-type]
    secret = HighEntropyKey.generate()
    return chain, chain.create_wallet(secret), secret, vault


async def bench_open_close(sizes: tuple[int, ...], probes: int) -> None:
    clock = ManualClock(1_700_000_000)
    chain, wallet, secret, vault = setup(clock)
    per: dict[int, float] = {}
    async with SessionHub(backend=chain, clock=clock, vault=vault) as hub:
        for size in sizes:
            while len(hub) < size:
                await hub.open(wallet=wallet, encrypt_key=secret)
            samples = []
            for _ in range(probes):
                t0 = time.perf_counter()
                s = await hub.open(wallet=wallet, encrypt_key=secret)
                await hub.close(s)
                samples.append(time.perf_counter() - t0)
            per[size] = statistics.median(samples)
            print(f"open+close with {size:>6,} open: {per[size]*1e6:8.1f} us")
    a, b = sizes
    print(f"open+close cost ratio {b:,} vs {a:,} open: {per[b]/per[a]:.2f} (1.0 = independent)")


async def bench_memory(n: int) -> None:
    clock = ManualClock(1_700_000_000)
    chain, wallet, secret, vault = setup(clock)
    async with SessionHub(backend=chain, clock=clock, vault=vault) as hub:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        sessions = [await hub.open(wallet=wallet, encrypt_key=secret) for _ in range(n)]
        gc.collect()
        opened = tracemalloc.get_traced_memory()[0] - base
        for s in sessions:
            await s.create_session(3600)
        gc.collect()
        created = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    print(f"memory per session at {n:,}: {opened/n:,.0f} B open, {created/n:,.0f} B with a "
          f"created session (incl. its ~200 B encrypted blob and key object); target <= 4 KB")


async def bench_idle_and_lateness(n: int, spread: float) -> None:
    clock = SystemClock()
    chain, wallet, secret, vault = setup(clock)
    lateness: list[float] = []
    valid_until: dict[str | None, int] = {}
    async with SessionHub(backend=chain, clock=clock, vault=vault) as hub:
        def on(ev: object) -> None:
            if isinstance(ev, StateChanged) and ev.current == "expired":
                lateness.append(time.time() - valid_until[ev.session_public_key])

        hub.add_listener(on)
        sessions = [await hub.open(wallet=wallet, encrypt_key=secret, auto_check_status=False)
                    for _ in range(n)]
        start = time.time()
        base = int(start) + 20  # whole-second valid_until values, after all are armed
        for i, s in enumerate(sessions):
            target = base + int(i * spread / n)
            data = await s.create_session(target - int(time.time()))
            valid_until[hex(data.public_key)] = data.valid_until
        print(f"armed {len(hub.scheduler.timers):,} expiry deadlines in {time.time()-start:.1f} s "
              f"(valid_until spread over {spread:.0f} whole seconds)")
        cpu0, wall0 = os.times(), time.perf_counter()
        await anyio.sleep(2.0)
        cpu1 = os.times()
        idle = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (time.perf_counter() - wall0)
        print(f"idle CPU with {n:,} sessions and {n:,} timers armed: {idle*100:.2f} % of a core")
        while len(lateness) < n:
            await anyio.sleep(0.05)
    lateness.sort()
    med, p99 = statistics.median(lateness), lateness[int(0.99 * (len(lateness) - 1))]
    per_second = n / max(spread, 1)
    print(f"expiry lateness with {n:,} deadlines armed (~{per_second:,.0f} sharing each second): "
          f"median {med*1e3:.2f} ms, p99 {p99*1e3:.2f} ms, max {lateness[-1]*1e3:.2f} ms")


async def bench_polling(n: int, seconds: float) -> None:
    clock = ManualClock(1_700_000_000)
    chain, wallet, secret, vault = setup(clock)
    async with SessionHub(backend=chain, clock=clock, vault=vault, status_interval=30.0) as hub:
        sessions = [await hub.open(wallet=wallet, encrypt_key=secret) for _ in range(n)]
        for s in sessions:
            await s.create_session(10**6)
        poller = hub.scheduler.poller
        for _ in range(int(31 / 0.05)):  # warm up: the first round starts one interval in
            clock.advance(0.05)
            await anyio.wait_all_tasks_blocked()
        r0, b0 = poller.reads, poller.batches
        t0 = time.perf_counter()
        steps = int(seconds / 0.05)
        for _ in range(steps):
            clock.advance(0.05)
            await anyio.wait_all_tasks_blocked()
        wall = time.perf_counter() - t0
        reads, batches = poller.reads - r0, poller.batches - b0
    print(f"status polling, {n:,} sessions, 30 s interval, {seconds:.0f} s of clock time: "
          f"{reads/seconds:,.0f} session reads/s in {batches/seconds:,.1f} batched requests/s "
          f"(batch size {poller.batch_size}); simulated in {wall:.1f} s wall")


async def bench_executes(sessions_n: int, per_session: int) -> None:
    clock = ManualClock(1_700_000_000)
    chain, _wallet, _secret, vault = setup(clock)
    token = chain.deploy_token("USDC", 6)
    async with SessionHub(backend=chain, clock=clock, vault=vault) as hub:
        sessions = []
        for _ in range(sessions_n):
            secret = HighEntropyKey.generate()
            wallet = chain.create_wallet(secret)
            chain.mint(token, wallet.address, 10**9)
            s = await hub.open(wallet=wallet, encrypt_key=secret, auto_check_status=False)
            await s.create_session(10**6)
            await s.register_session(max_calls=per_session + 1)
            await s.execute_with_session(Call(to=token, selector="transfer", calldata=[1, 1, 0]))
            sessions.append(s)
        call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])

        async def run(s: object) -> None:
            for _ in range(per_session):
                await s.execute_with_session(call)  # type: ignore[attr-defined]

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for s in sessions:
                tg.start_soon(run, s)
        dt = time.perf_counter() - t0
    total = sessions_n * per_session
    print(f"executes across {sessions_n} concurrent sessions on LocalChain: {total/dt:,.0f} tx/s "
          f"({total} tx in {dt:.2f} s; each = typed-data hash + sign + chain verify)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    q = p.parse_args().quick
    n = 2_000 if q else 10_000
    anyio.run(bench_open_close, (n // 10, n), 200)
    anyio.run(bench_memory, n)
    anyio.run(bench_idle_and_lateness, n, 10.0)
    anyio.run(bench_polling, n, 60.0 if q else 90.0)
    anyio.run(bench_executes, 100, 5 if q else 20)


if __name__ == "__main__":
    main()
