"""Engine benchmarks (a script, not a test): python benchmarks/bench_engine.py [--quick]
[--only localchain|overhead]

1. LocalChain, in process: executes/s of 100 concurrent sessions (wall and CPU), one execute
   through ChipiSession vs the bare primitives (the SNIP-12 hash, sign, the chain's
   execute_from_outside, which hashes and verifies) side by side -> ratio (both measured by
   bench_vs_ts_sdk.py's own functions, so the two scripts report the same figures), and the
   crypto floor of one execute measured in the same run (sign + verify + the Poseidon hashes
   that cannot be shared), i.e. the most executes/s one core can do, whatever else is trimmed.
   ``--only overhead``: the same comparison on CPU time (``time.thread_time``, so a loaded
   machine does not move it), each side saying what it includes (:func:`session_overhead`).
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


def crypto_floor_ms(n: int) -> dict[str, float]:
    """Median CPU ms of what every execute must compute, here as on a real chain: the session
    key's signature, the contract's verification, the client's OutsideExecution hash (3
    Poseidon hashes once the call's own hash is known) and the transaction hash (1)."""
    from chipi_session.felts import encode_short_string
    from chipi_session.keys import SecretKey
    from chipi_session.localchain.ecdsa import check_ecdsa_signature
    from chipi_session.poseidon import poseidon_many

    key = SecretKey.generate()
    call = Call(to=0x1234, selector="transfer", calldata=[0xB0B, 1, 0])
    prefix = encode_short_string("outside_execution")
    sign_t: list[float] = []
    verify_t: list[float] = []
    hash_t: list[float] = []
    clock = time.thread_time
    for i in range(n):
        t0 = clock()
        h = outside_execution_hash(
            account=0xABC,
            chain_id=0x534E5F4D41494E,
            caller=ANY_CALLER,
            nonce=10**12 + i,
            execute_after=1,
            execute_before=2,
            calls=[call],
        )
        poseidon_many([prefix, 0x5, i, 0xABC, 0x534E5F4D41494E, 10**12 + i])
        t1 = clock()
        sig = session_signature(key, h, 10**10)
        t2 = clock()
        assert check_ecdsa_signature(h, sig[0], sig[1], sig[2])
        t3 = clock()
        hash_t.append(t1 - t0)
        sign_t.append(t2 - t1)
        verify_t.append(t3 - t2)
    out = {
        "hash": statistics.median(hash_t) * 1e3,
        "sign": statistics.median(sign_t) * 1e3,
        "verify": statistics.median(verify_t) * 1e3,
    }
    out["total"] = sum(out.values())
    return out


async def localchain_concurrent(sessions_n: int, per_session: int) -> tuple[float, float]:
    """bench_vs_ts_sdk.py's figure (same setup, same timed section), timed on both clocks:
    executes per wall second and per CPU second of this process (the second does not move
    when other processes load the machine)."""
    from contextlib import AsyncExitStack

    clock = ManualClock(1_700_000_000)
    chain = LocalChain(clock=clock, vault=Vault(KdfCost.FAST_FOR_TESTS))
    token = chain.deploy_token("USDC", 6)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    async with AsyncExitStack() as stack:
        sessions = []
        for _ in range(sessions_n):
            secret = HighEntropyKey.generate()
            wallet = chain.create_wallet(secret)
            chain.mint(token, wallet.address, 10**9)
            s = await stack.enter_async_context(
                ChipiSession(
                    wallet=wallet,
                    encrypt_key=secret,
                    backend=chain,
                    clock=clock,
                    auto_check_status=False,
                    vault=Vault(KdfCost.FAST_FOR_TESTS),
                )
            )
            await s.create_session(10**6)
            await s.register_session(max_calls=per_session + 1)
            await s.execute_with_session(call)  # warm-up: decrypts the key once
            sessions.append(s)

        async def run(s: ChipiSession) -> None:
            for _ in range(per_session):
                await s.execute_with_session(call)

        t0, c0 = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for s in sessions:
                tg.start_soon(run, s)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    n = sessions_n * per_session
    return n / dt, n / dc


def bench_localchain(quick: bool) -> None:
    from bench_vs_ts_sdk import session_vs_bare

    rounds = 3
    floor = crypto_floor_ms(100 if quick else 400)
    runs = [anyio.run(localchain_concurrent, 100, 5 if quick else 10) for _ in range(rounds)]
    tps = statistics.median(r[0] for r in runs)
    cpu_tps = statistics.median(r[1] for r in runs)
    engine_ms, bare_ms = anyio.run(session_vs_bare, 100 if quick else 300)
    ceiling = 1e3 / floor["total"]
    print(
        f"LocalChain, 100 concurrent sessions: {tps:,.0f} executes/s, {cpu_tps:,.0f} per CPU "
        f"second (medians of {rounds}; target >= 1,000/s)"
    )
    print(
        f"  crypto floor per execute {floor['total']:.3f} ms CPU (sign {floor['sign']:.3f} + "
        f"verify {floor['verify']:.3f} + 4 Poseidon hashes {floor['hash']:.3f}): at most "
        f"{ceiling:,.0f} executes per CPU second, whatever else is trimmed; reached "
        f"{cpu_tps / ceiling:.0%} of it"
    )
    print(
        f"execute latency on LocalChain (wall, median of {100 if quick else 300}): "
        f"ChipiSession {engine_ms:.3f} ms (send, state, events, confirmation), bare "
        f"primitives {bare_ms:.3f} ms (hash, sign, execute_from_outside; no confirmation), "
        f"overhead ratio {engine_ms / bare_ms:.3f} (target <= 1.05; on CPU time, like for "
        "like: --only overhead)"
    )


async def session_overhead(n: int, block: int = 25) -> dict[str, float]:
    """CPU ms per execute (``time.thread_time``), four ways, one session on LocalChain, in
    interleaved blocks of ``block`` executes (median of the blocks' means):

    * ``session``: ``execute_with_session(call)`` as an app calls it (``wait=False``): the
      pre-flight, the journalled signed send, the state and budget, ``TransactionSubmitted``
      and the confirmation read with ``TransactionConfirmed``; a block ends once the session
      has nothing left to run (a background confirmation is counted in its block);
    * ``session_wait``: the same with ``wait=True`` (the caller gets the ExecutionResult);
    * ``bare``: the SNIP-12 hash, the session key's signature and the chain's
      ``execute_from_outside`` (which hashes and verifies): no journal, no state, no events,
      no confirmation;
    * ``bare_confirmed``: ``bare`` plus reading the receipt as an ExecutionResult (what the
      session's confirmation reads), i.e. the like-for-like floor of ``session``;
    * ``backend``: LocalChain's own ``execute_with_session`` (the Chipi API's paymaster
      emulated: the request issued, its SNIP-12 hash, the signature, the sponsored
      ``execute_from_outside``) awaited directly, plus its ``get_execution_result``: what
      any engine on this backend pays, so ``session / backend`` is the engine's own share.
    """
    from anyio.lowlevel import checkpoint

    from chipi_session.keys import SecretKey
    from chipi_session.localchain.backend import receipt_result
    from chipi_session.localchain.testing import owner_invoke
    from chipi_session.selfcalls import add_or_update_session_key_call

    clock = ManualClock(1_700_000_000)
    chain, wallet, token, secret = world(clock)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    key = SecretKey.generate()
    budget = 4 * n + 10
    cpu = time.thread_time
    async with ChipiSession(
        wallet=wallet,  # type: ignore[arg-type]
        encrypt_key=secret,
        backend=chain,
        clock=clock,
        auto_check_status=False,
        vault=Vault(KdfCost.FAST_FOR_TESTS),
    ) as session:
        data = await session.create_session(10**6)
        await session.register_session(max_calls=budget)
        await session.execute_with_session(call)  # warm-up: decrypts the key once
        owner = Vault(KdfCost.FAST_FOR_TESTS).decrypt(wallet.encrypted_private_key, secret)  # type: ignore[attr-defined]
        owner_invoke(
            chain,
            wallet.address,  # type: ignore[attr-defined]
            owner,
            [
                add_or_update_session_key_call(
                    wallet.address,  # type: ignore[attr-defined]
                    key.public_key,
                    data.valid_until,
                    budget,
                    (),
                )
            ],
        )
        nonce = [10**9]

        def bare(confirmed: bool) -> None:
            nonce[0] += 1
            now = chain.now()
            h = outside_execution_hash(
                account=wallet.address,  # type: ignore[attr-defined]
                chain_id=chain.chain_id,
                caller=ANY_CALLER,
                nonce=nonce[0],
                execute_after=now - 60,
                execute_before=now + 3600,
                calls=[call],
            )
            receipt = chain.execute_from_outside(
                wallet.address,  # type: ignore[attr-defined]
                caller=ANY_CALLER,
                nonce=nonce[0],
                execute_after=now - 60,
                execute_before=now + 3600,
                calls=[call],
                signature=session_signature(key, h, data.valid_until),
            )
            if confirmed:
                receipt_result(chain.get_receipt(receipt.tx_hash))

        async def direct() -> None:
            tx = await chain.execute_with_session(
                wallet,  # type: ignore[arg-type]
                key,
                valid_until=data.valid_until,
                calls=[call],
            )
            await chain.get_execution_result(tx)

        async def settle() -> None:  # let a background confirmation run, in the block
            for _ in range(3):
                await checkpoint()

        times: dict[str, list[float]] = {
            "session": [],
            "session_wait": [],
            "bare": [],
            "bare_confirmed": [],
            "backend": [],
        }
        for _ in range(max(1, n // block)):
            c0 = cpu()
            for _ in range(block):
                await session.execute_with_session(call)
            await settle()
            c1 = cpu()
            for _ in range(block):
                await session.execute_with_session(call, wait=True)
            await settle()
            c2 = cpu()
            for _ in range(block):
                bare(False)
            await settle()
            c3 = cpu()
            for _ in range(block):
                bare(True)
            await settle()
            c4 = cpu()
            for _ in range(block):
                await direct()
            await settle()
            c5 = cpu()
            spans = (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4)
            for name, dt in zip(times, spans, strict=True):
                dt_ms = dt / block * 1e3
                times[name].append(dt_ms)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_overhead(quick: bool) -> None:
    n = 200 if quick else 1000
    for backend in ("asyncio", "trio"):
        try:
            ms = anyio.run(session_overhead, n, backend=backend)
        except ModuleNotFoundError:
            continue
        print(
            f"execute CPU on LocalChain ({backend}, thread_time, median of {n // 25} blocks of "
            f"25): ChipiSession {ms['session']:.3f} ms (default: send, state, events, "
            f"confirmation read), wait=True {ms['session_wait']:.3f} ms; bare primitives "
            f"{ms['bare']:.3f} ms (hash, sign, execute_from_outside; no confirmation), "
            f"bare + receipt read {ms['bare_confirmed']:.3f} ms; LocalChain's "
            f"execute_with_session + get_execution_result awaited directly "
            f"{ms['backend']:.3f} ms"
        )
        print(
            f"  overhead ratio vs bare: {ms['session'] / ms['bare']:.3f} (target <= 1.05); "
            f"like for like (both confirmed): {ms['session'] / ms['bare_confirmed']:.3f}; "
            f"wait=True vs bare confirmed: {ms['session_wait'] / ms['bare_confirmed']:.3f}; "
            f"the engine's own share (vs the backend awaited directly): "
            f"{ms['session'] / ms['backend']:.3f}"
        )


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
            wallet=wallet,
            encrypt_key=secret,
            backend=chain,
            clock=clock,
            auto_check_status=False,
            vault=vault,
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
        return (
            f"median {statistics.median(xs) * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
            f"max {xs[-1] * 1e3:.2f} ms"
        )

    print(
        f"expiry lateness on the system clock, {n} sessions each alone in its second: "
        f"{stats(alone)} (target median <= 5 ms)"
    )
    print(
        f"expiry lateness, {shared_second} standalone sessions expiring in the same second: "
        f"{stats(burst)}"
    )


async def bench_fanout(events: int) -> None:
    from chipi_session.events import StatusRefreshed
    from chipi_session.pubsub import Broadcaster

    for subs in (1, 10, 100):
        b: Broadcaster[object] = Broadcaster()
        got = 0
        async with anyio.create_task_group() as tg:
            from contextlib import AsyncExitStack

            async with AsyncExitStack() as stack:
                streams = [
                    await stack.enter_async_context(b.subscribe(events)) for _ in range(subs)
                ]

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
        print(
            f"fan-out to {subs:3d} subscribers: {events / dt:,.0f} events/s published, "
            f"{events * subs / dt:,.0f} deliveries/s"
        )


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
            s = ChipiSession(
                wallet=wallet,
                encrypt_key=secret,
                backend=chain,
                clock=clock,
                auto_check_status=False,
                vault=vault,
            )
            await stack.enter_async_context(s)
            sessions.append(s)
        for s in sessions:
            await s.create_session(3600)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(
            f"memory per idle session at {n:,} sessions: {used / n / 1024:.1f} KiB "
            "(entered ChipiSession with a created session, timer armed)"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", choices=["localchain", "overhead"], help="run only this part")
    a = p.parse_args()
    q = a.quick
    if a.only == "overhead":
        bench_overhead(q)
        return
    bench_localchain(q)
    if a.only:
        return
    bench_overhead(q)
    anyio.run(bench_expiry, 5 if q else 20, 300)
    anyio.run(bench_fanout, 2_000 if q else 20_000)
    anyio.run(bench_memory, 1_000 if q else 10_000)


if __name__ == "__main__":
    main()
