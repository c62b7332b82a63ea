"""A SessionHub with Prometheus metrics on /metrics (pip install 'chipi-session[metrics]').

Two users pay five times each through an instrumented backend; their sessions renew when two
calls are left. Then the process serves the metrics until it is stopped (or ``--seconds``):

    python examples/metrics_server.py --port 9464
    curl -s localhost:9464/metrics | grep chipi_session_

Series and what they mean: chipi_session/metrics.py.
"""

from __future__ import annotations

import argparse

import anyio
from prometheus_client import start_http_server

from chipi_session import (
    Call,
    ChipiMetrics,
    KdfCost,
    LocalChain,
    RenewalPolicy,
    SessionHub,
    Vault,
)

PIN = "1234"


async def main(port: int, seconds: float | None) -> None:
    chain = LocalChain(vault=Vault(KdfCost.FAST_FOR_TESTS))  # cheap KDF: a demo only
    token = chain.deploy_token("USDC", 6)
    metrics = ChipiMetrics()
    backend = metrics.instrument(chain)  # latency of every backend call
    renewal = RenewalPolicy(min_remaining_calls=2)
    async with SessionHub(backend=backend, vault=chain.vault, renewal=renewal) as hub:
        metrics.observe(hub)  # counters from the hub's events, gauges from its sessions
        for user in ("alice", "bob"):
            wallet = chain.create_wallet(PIN)
            chain.mint(token, wallet.address, 1_000)
            session = await hub.open(key=user, wallet=wallet, encrypt_key=PIN)
            await session.create_session(3600)
            await session.register_session(max_calls=6, allowed_entrypoints=["transfer"])
            for _ in range(5):
                await session.execute_with_session(
                    Call(to=token, selector="transfer", calldata=[0xB0B, 1, 0])
                )
        await anyio.wait_all_tasks_blocked()
        server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
        print(f"serving http://127.0.0.1:{server.server_port}/metrics", flush=True)
        try:
            if seconds is None:
                await anyio.sleep_forever()
            await anyio.sleep(seconds)
        finally:
            server.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9464, help="0 = any free port")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args()
    try:
        anyio.run(main, args.port, args.seconds)
    except KeyboardInterrupt:
        pass
