"""Engine benchmarks (a script, not a test): python benchmarks/bench_engine.py

1. execute latency through ChipiSession on LocalChain vs the bare primitives (the SNIP-12 hash,
   sign, the chain's execute_from_outside, which hashes and verifies) side by side -> ratio.
2. expiry lateness on the system clock: when StateChanged(expired) is published vs valid_until.
3. event fan-out: events/s delivered to 1, 10, 100 subscribers.
4. memory per idle session (entered ChipiSession holding a created session) at 10,000 sessions.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc

import anyio

from chipi_session import Call, ChipiSession, ManualClock, StateChanged, SystemClock
from chipi_session.hashing import ANY_CALLER, outside_execution_hash
from chipi_session.keys import session_signature
from chipi_session.localchain import LocalChain
from chipi_session.vault import HighEntropyKey, KdfCost, Vault


def world(clock: object) -> tuple[LocalChain, object, int, HighEntropyKey]:
    secret = HighEntropyKey.generate()
    chain = LocalChain(clock=clock, vault=Vault(KdfCost.FAST_FOR_TESTS))  # type: ignore[arg-type]
    wallet = chain.create_wallet(secret)
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 10**18)
    return chain, wallet, token, secret


async def bench_execute(n: int) -> None:
    clock = ManualClock(1_700_000_000)
    chain, wallet, token, secret = world(clock)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    async with ChipiSession(
        wallet=wallet, encrypt_key=secret, backend=chain, clock=clock, auto_check_status=False
    ) as session:
        data = await session.create_session(10**6)
        await session.register_session(max_calls=4 * n + 10)
        await session.execute_with_session(call)  # warm-up (decrypts the key once)
        key = session._session_key
        assert key is not None

        def bare() -> None:
            now = chain.now()
            nonce = time.perf_counter_ns()
            h = outside_execution_hash(
                account=wallet.address,  # type: ignore[attr-defined]
                chain_id=chain.chain_id,
                caller=ANY_CALLER,
                nonce=nonce,
                execute_after=now - 60,
                execute_before=now + 3600,
                calls=[call],
            )
            sig = session_signature(key, h, data.valid_until)
            chain.execute_from_outside(
                wallet.address, caller=ANY_CALLER, nonce=nonce, execute_after=now - 60,  # type: ignore[attr-defined]
                execute_before=now + 3600, calls=[call], signature=sig,
            )

        engine_t: list[float] = []
        bare_t: list[float] = []
        for _ in range(n):  # interleaved: both see the same machine noise
            t0 = time.perf_counter()
            await session.execute_with_session(call)
            t1 = time.perf_counter()
            bare()
            t2 = time.perf_counter()
            engine_t.append(t1 - t0)
            bare_t.append(t2 - t1)
    e, b = statistics.median(engine_t), statistics.median(bare_t)
    print(f"execute latency (median of {n}): ChipiSession {e*1e3:.3f} ms, bare primitives "
          f"{b*1e3:.3f} ms, overhead ratio {e/b:.3f} (target <= 1.25)")


async def bench_expiry(n: int, shared_second: int) -> None:
    """Sessions on the system clock, each expiring at its own whole second (valid_until is
    whole seconds), plus ``shared_second`` more expiring in the same second as the last one:
    timer precision, then the cost of a burst."""
    clock = SystemClock()
    chain, wallet, _token, secret = world(clock)
    alone: list[float] = []
    burst: list[float] = []
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    base = int(time.time()) + 2

    async def one(valid_until: int, into: list[float]) -> None:
        async with ChipiSession(
            wallet=wallet, encrypt_key=secret, backend=chain, clock=clock,
            auto_check_status=False, vault=vault,
        ) as s:
            done = anyio.Event()

            def on(ev: object) -> None:
                if isinstance(ev, StateChanged) and ev.current == "expired":
                    into.append(time.time() - valid_until)
                    done.set()

            s.add_listener(on)
            await s.create_session(valid_until - int(time.time()))
            await done.wait()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, base + i, alone)
        for _ in range(shared_second):
            tg.start_soon(one, base + n, burst)

    def stats(xs: list[float]) -> str:
        xs.sort()
        p99 = xs[min(len(xs) - 1, int(0.99 * len(xs)))]
        return (f"median {statistics.median(xs)*1e3:.2f} ms, p99 {p99*1e3:.2f} ms, "
                f"max {xs[-1]*1e3:.2f} ms")

    print(f"expiry lateness on the system clock, {n} sessions each alone in its second: "
          f"{stats(alone)} (target median <= 5 ms)")
    print(f"expiry lateness, {shared_second} standalone sessions expiring in the same second: "
          f"{stats(burst)}")


async def bench_fanout(events: int) -> None:
    from chipi_session.events import StatusRefreshed
    from chipi_session.pubsub import Broadcaster

    for subs in (1, 10, 100):
        b: Broadcaster[object] = Broadcaster()
        got = 0
        async with anyio.create_task_group() as tg:
            from contextlib import AsyncExitStack

            async with AsyncExitStack() as stack:
                streams = [await stack.enter_async_context(b.subscribe(events)) for _ in range(subs)]

                async def reader(stream: object) -> None:
                    nonlocal got
                    async for _ in stream:  # type: ignore[attr-defined]
                        got += 1

                for st in streams:
                    tg.start_soon(reader, st)
                ev = StatusRefreshed(timestamp=0.0, status=None)
                t0 = time.perf_counter()
                for _ in range(events):
                    b.publish(ev)
                    if _ % 64 == 0:
                        await anyio.sleep(0)
                while got < events * subs:
                    await anyio.sleep(0)
                dt = time.perf_counter() - t0
            tg.cancel_scope.cancel()
        print(f"fan-out to {subs:3d} subscribers: {events/dt:,.0f} events/s published, "
              f"{events*subs/dt:,.0f} deliveries/s")


async def bench_memory(n: int) -> None:
    clock = ManualClock(1_700_000_000)
    chain, wallet, _token, secret = world(clock)
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    from contextlib import AsyncExitStack

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    async with AsyncExitStack() as stack:
        sessions = []
        for _ in range(n):
            s = ChipiSession(wallet=wallet, encrypt_key=secret, backend=chain, clock=clock,
                             auto_check_status=False, vault=vault)
            await stack.enter_async_context(s)
            sessions.append(s)
        for s in sessions:
            await s.create_session(3600)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"memory per idle session at {n:,} sessions: {used/n/1024:.1f} KiB "
              "(entered ChipiSession with a created session, timer armed)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    q = a.quick
    anyio.run(bench_execute, 50 if q else 300)
    anyio.run(bench_expiry, 5 if q else 20, 300)
    anyio.run(bench_fanout, 2_000 if q else 20_000)
    anyio.run(bench_memory, 1_000 if q else 10_000)


if __name__ == "__main__":
    main()
