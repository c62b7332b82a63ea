"""What structured logging costs (docs/observability.md, "Logging").

Run: ``python benchmarks/bench_logging.py`` (``--quick`` for fewer rounds). Prints executes per
second on LocalChain with the log context set per action as shipped, and with it replaced by a
no-op, measured side by side in alternating rounds (so the ratio is meaningful on any
machine); then the per-action cost of setting the context and the per-record cost of the
filter.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import time
from typing import Any

import anyio

from chipi_session import Call, ChipiSession, ManualClock
from chipi_session import logs as logs_module
from chipi_session.localchain import LocalChain
from chipi_session.vault import KdfCost, Vault


async def executes_per_second(count: int) -> float:
    clock = ManualClock(1_000_000)
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(clock=clock, vault=vault)
    wallet = chain.create_wallet("bench-pin")
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 10**12)
    call = Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
    async with ChipiSession(
        wallet=wallet,
        encrypt_key="bench-pin",
        backend=chain,
        clock=clock,
        vault=vault,
        auto_check_status=False,
    ) as session:
        await session.create_session(3600)
        await session.register_session(max_calls=count + 1)
        started = time.perf_counter()
        for _ in range(count):
            await session.execute_with_session(call)
        return count / (time.perf_counter() - started)


def per_call_us(fn: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, count = (3, 100) if args.quick else (7, 300)
    real = logs_module.action

    def no_op(*_: Any, **__: Any) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    shipped, stubbed = [], []
    for _ in range(rounds):
        logs_module.action = real
        shipped.append(anyio.run(executes_per_second, count))
        logs_module.action = no_op  # type: ignore[assignment]
        stubbed.append(anyio.run(executes_per_second, count))
    logs_module.action = real
    a, b = statistics.median(shipped), statistics.median(stubbed)
    print(f"executes/s, log context per action : {a:8.0f}")
    print(f"executes/s, no log context         : {b:8.0f}")
    print(f"ratio (with / without)             : {a / b:8.3f}")

    base = logs_module.LogContext(slot="bench")

    def enter() -> None:
        with logs_module.action(base, "execute"):
            pass

    record = logging.LogRecord("chipi_session.bench", logging.DEBUG, __file__, 1, "m", (), None)
    stamp = logs_module.ContextFilter()

    def filtered() -> None:
        for name in logs_module.FIELDS:
            record.__dict__.pop(name, None)
        stamp.filter(record)

    print(f"setting the context, per action    : {per_call_us(enter, 100_000):8.2f} us")
    with logs_module.action(base, "execute"):
        print(f"stamping a record (filter)         : {per_call_us(filtered, 100_000):8.2f} us")


if __name__ == "__main__":
    main()
