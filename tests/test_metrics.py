"""chipi_session.metrics: a scripted hub run (executes, a failure, a renewal, an expiry, a
revocation, a write left in doubt, a slow subscriber) and the numbers a scrape of /metrics
shows, on asyncio and trio; and nothing of prometheus-client is imported unless asked for."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from chipi_session import ChipiSessionError, ErrorCode, RenewalPolicy, SessionHub  # noqa: E402
from chipi_session.backends.faults import FaultInjectingBackend, FaultRates  # noqa: E402
from chipi_session.metrics import ChipiMetrics  # noqa: E402
from chipi_session.testing import make_world, settle, travel  # noqa: E402

from .helpers import eventually  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.anyio
async def test_a_scripted_run_shows_on_metrics() -> None:
    world = make_world()
    metrics = ChipiMetrics()
    faults = FaultInjectingBackend(world.chain, clock=world.clock)
    backend = metrics.instrument(faults)
    pay = world.transfer(1, 0xB0B)
    hub = SessionHub(backend=backend, clock=world.clock, vault=world.vault)
    async with hub, hub.subscribe(buffer_size=1) as slow:
        metrics.observe(hub)
        metrics.watch_subscription("slow", slow)
        wallets = {k: world.new_wallet(funds=100) for k in ("payer", "renewer", "idle", "doubt")}
        sessions = {}
        for key, wallet in wallets.items():
            renewal = RenewalPolicy(min_remaining_calls=1) if key == "renewer" else None
            s = await hub.open(
                key=key, wallet=wallet, encrypt_key=world.pin, auto_check_status=False,
                renewal=renewal,
            )  # fmt: skip
            await s.create_session(600 if key == "idle" else 20_000)
            await s.register_session(max_calls=3, allowed_entrypoints=["transfer"])
            sessions[key] = s
        payer = sessions["payer"]
        for _ in range(3):
            await payer.execute_with_session(pay)  # 3 executes: the budget is used up
        with pytest.raises(ChipiSessionError) as refused:
            await payer.execute_with_session(pay)
        assert refused.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        faults.fail_next("execute_with_session", "error_before_send")
        with pytest.raises(ChipiSessionError):
            await sessions["renewer"].execute_with_session(pay)
        await sessions["renewer"].execute_with_session(pay)
        await sessions["renewer"].execute_with_session(pay)  # 1 call left: renew
        renewer = sessions["renewer"]
        # the renewal and the old key's revoke decrypt keys in worker threads: wait for them
        await eventually(lambda: not renewer.is_renewing and not renewer.retiring_keys)
        await settle()
        # an execute whose outcome cannot be read yet (nonce reads fail): held in doubt
        faults.fail_next("execute_with_session", "drop_response")
        faults.per_method["outside_nonce_used"] = FaultRates(error_before_send=1.0)
        with pytest.raises(ChipiSessionError):
            await sessions["doubt"].execute_with_session(pay)
        await settle()
        await travel(world.clock, 601)  # "idle" expires
        await sessions["payer"].revoke_session()
        await settle()
        assert [s.session_state.value for s in sessions.values()] == [
            "revoked", "active", "expired", "active",
        ]  # fmt: skip
        assert len(sessions["doubt"].in_doubt) == 1
        assert slow.dropped > 0

        samples = scrape(prometheus_client.generate_latest(metrics.registry).decode())
        ns = "chipi_session_"
        assert value(samples, ns + "sessions", state="active") == 2
        assert value(samples, ns + "sessions", state="revoked") == 1
        assert value(samples, ns + "sessions", state="expired") == 1
        assert value(samples, ns + "in_doubt_writes") == 1
        assert value(samples, ns + "executes_total") == 5  # 3 payer + 2 renewer
        assert value(samples, ns + "renewals_total") == 1
        # 4 registers (the renewal's own register publishes SessionRenewed instead)
        assert value(samples, ns + "transactions_submitted_total", action="register") == 4
        assert value(samples, ns + "transactions_submitted_total", action="revoke_previous") == 1
        registers = value(
            samples, ns + "backend_request_seconds_count", method="add_or_update_session_key"
        )
        assert registers == faults.calls["add_or_update_session_key"] == 5
        assert value(samples, ns + "transactions_submitted_total", action="revoke") == 1
        failures = {
            labels: v
            for (name, labels), v in samples.items()
            if name == ns + "action_failures_total" and v
        }
        assert failures == {
            (("action", "execute"), ("code", "SESSION_MAX_CALLS_EXCEEDED")): 1,
            (("action", "execute"), ("code", "BACKEND_UNAVAILABLE")): 1,
            (("action", "execute"), ("code", "UNKNOWN_OUTCOME")): 1,
        }
        sent = faults.calls["execute_with_session"]  # every execute that reached the backend
        assert sent == 7
        count = value(samples, ns + "backend_request_seconds_count", method="execute_with_session")
        assert count == sent
        assert value(
            samples, ns + "backend_errors_total", method="execute_with_session",
            code="BACKEND_UNAVAILABLE",
        ) == 1  # fmt: skip
        assert value(samples, ns + "subscriber_dropped_events", subscriber="slow") == slow.dropped


@pytest.mark.anyio
async def test_the_pollers_batches_are_counted() -> None:
    world = make_world()
    metrics = ChipiMetrics()
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, status_interval=30
    ) as hub:
        metrics.observe(hub)
        for key in ("a", "b"):
            s = await hub.open(key=key, wallet=world.new_wallet(), encrypt_key=world.pin)
            await s.create_session(3600)
            await s.register_session(max_calls=2)
        await travel(world.clock, 61)
        poller = hub.scheduler.poller
        assert poller.batches >= 2 and poller.reads >= 4
        samples = scrape(prometheus_client.generate_latest(metrics.registry).decode())
        assert value(samples, "chipi_session_status_poll_batches_total") == poller.batches
        assert value(samples, "chipi_session_status_poll_reads_total") == poller.reads


def test_the_example_serves_metrics() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "metrics_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        deadline = time.monotonic() + 30
        while True:
            reply = httpx.get(url, timeout=5)
            if reply.status_code == 200:
                break
            assert time.monotonic() < deadline
        samples = scrape(reply.text)
        ns = "chipi_session_"
        assert value(samples, ns + "executes_total") == 10
        assert value(samples, ns + "sessions", state="active") == 2
        assert value(samples, ns + "renewals_total") >= 1
        assert (
            value(samples, ns + "backend_request_seconds_count", method="execute_with_session")
            == 10
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_nothing_of_prometheus_is_imported_unless_asked() -> None:
    code = (
        "import sys, anyio\n"
        "from chipi_session import SessionHub, ChipiSession\n"
        "from chipi_session.testing import make_world\n"
        "async def main():\n"
        "    w = make_world()\n"
        "    async with w.session() as s:\n"
        "        await s.create_session(60); await s.register_session(max_calls=2)\n"
        "        await s.execute_with_session(w.transfer(1, 0xB0B))\n"
        "anyio.run(main)\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "import chipi_session.metrics\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
