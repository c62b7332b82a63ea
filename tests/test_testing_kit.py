"""chipi_session.testing: the plugin's switch and fixtures, time travel, the strategies (valid
values accepted, invalid ones refused) and the lifecycle machine, on asyncio and trio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionHub, SessionState
from chipi_session.backends.faults import FaultInjectingBackend
from chipi_session.clock import ManualClock
from chipi_session.felts import parse_felt
from chipi_session.session_inputs import check_policy as _check_policy
from chipi_session.session_inputs import parse_entrypoints as _parse_entrypoints
from chipi_session.testing import ChainWorld, SessionLifecycleMachine, make_world, travel
from chipi_session.testing import strategies as cst
from chipi_session.testing.plugin import FIXTURES_MODULE, fixtures_enabled
from chipi_session.types import SessionStatus, coerce_calls

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_pytest(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh process and directory: a project that installed chipi-session."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ---------------------------------------------------------------------------- the plugin


def test_the_switch_reads_on_off_and_auto() -> None:
    assert fixtures_enabled("on") and fixtures_enabled(" ON ")
    assert not fixtures_enabled("off") and not fixtures_enabled("false")
    assert fixtures_enabled("auto")  # hypothesis is installed here
    with pytest.raises(pytest.UsageError):
        fixtures_enabled("sometimes")


def test_our_suite_has_the_fixtures(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin(FIXTURES_MODULE)


USER_TEST = """
import pytest
from chipi_session import SessionState

pytestmark = pytest.mark.anyio

async def test_expires(chipi_session, chipi_world, chipi_advance):
    await chipi_session.execute_with_session(chipi_world.transfer(5, 0xB0B))
    assert chipi_world.balance(0xB0B) == 5
    await chipi_advance(3601)
    assert chipi_session.session_state is SessionState.EXPIRED
"""


def test_a_project_gets_the_fixtures_and_can_switch_them_off(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TEST)
    on = run_pytest(tmp_path)
    assert on.returncode == 0, on.stdout + on.stderr
    assert "passed" in on.stdout
    off = run_pytest(tmp_path, "-o", "chipi_session_fixtures=off")
    assert off.returncode != 0 and "fixture 'chipi_session' not found" in off.stdout
    explicit = run_pytest(tmp_path, "-o", "chipi_session_fixtures=off", "-p", FIXTURES_MODULE)
    assert explicit.returncode == 0, explicit.stdout + explicit.stderr
    gone = run_pytest(tmp_path, "-p", "no:chipi_session")
    assert gone.returncode != 0 and "fixture 'chipi_session' not found" in gone.stdout


# ---------------------------------------------------------------------------- the fixtures


def test_the_world_fixtures_are_one_world(
    chipi_world: ChainWorld, chipi_chain: object, chipi_clock: ManualClock, chipi_token: int
) -> None:
    assert chipi_chain is chipi_world.chain and chipi_clock is chipi_world.clock
    assert chipi_world.balance(chipi_world.wallet.address) == 1_000_000
    assert chipi_token == chipi_world.token
    other = chipi_world.new_wallet(funds=7)
    assert chipi_world.balance(other.address) == 7


@pytest.mark.anyio
async def test_the_session_fixture_is_ready_and_time_travel_expires_it(
    chipi_session: ChipiSession, chipi_world: ChainWorld, chipi_advance: object
) -> None:
    assert chipi_session.session_state is SessionState.ACTIVE
    assert chipi_session.remaining_calls == 100
    assert chipi_session.session is not None
    valid_until = chipi_session.session.valid_until
    await chipi_session.execute_with_session(chipi_world.transfer(5, 0xB0B))
    assert chipi_world.balance(0xB0B) == 5
    await chipi_world.advance(valid_until - chipi_world.clock.now())
    assert chipi_session.session_state is SessionState.ACTIVE  # inclusive bound
    await chipi_world.advance(1)
    assert chipi_session.session_state is SessionState.EXPIRED
    assert chipi_session.state_reason == "time"


@pytest.mark.anyio
async def test_the_hub_fixture_opens_sessions(
    chipi_hub: SessionHub, chipi_world: ChainWorld
) -> None:
    session = await chipi_hub.open(key="u1", wallet=chipi_world.wallet, encrypt_key="1234")
    await session.create_session(600)
    await session.register_session(max_calls=2)
    await session.execute_with_session(chipi_world.transfer(3, 0xB0B))
    assert chipi_world.balance(0xB0B) == 3 and session.remaining_calls == 1


@pytest.mark.anyio
async def test_the_fault_fixture_injects_into_the_chain(
    chipi_faults: FaultInjectingBackend, chipi_world: ChainWorld
) -> None:
    async with chipi_world.session(backend=chipi_faults) as session:
        await session.create_session(600)
        chipi_faults.fail_next("add_or_update_session_key", "error_before_send")
        with pytest.raises(ChipiSessionError) as info:
            await session.register_session(max_calls=2)
        assert info.value.code is ErrorCode.BACKEND_UNAVAILABLE
        assert session.session_state is SessionState.CREATED
        await session.register_session(max_calls=2)
        assert session.session_state is SessionState.ACTIVE


@pytest.mark.anyio
async def test_the_localnet_fixture_serves_rpc(chipi_localnet: object) -> None:
    from chipi_session.localnet import LocalnetServer

    assert isinstance(chipi_localnet, LocalnetServer)
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            chipi_localnet.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "starknet_chainId", "params": []},
        )
    assert reply.json()["result"] == hex(chipi_localnet.chain.chain_id)


# ---------------------------------------------------------------------------- time travel


@pytest.mark.anyio
async def test_travel_wakes_each_timer_at_its_own_time() -> None:
    clock = ManualClock(100)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, at: float, then: float | None = None) -> None:
        await clock.sleep_until(at)
        woke.append((name, clock.now()))
        if then is not None:  # a timer armed by a timer, inside the same travel
            await clock.sleep_until(then)
            woke.append((name + "'", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "b", 120)
        tg.start_soon(sleeper, "a", 110, 115)
        tg.start_soon(sleeper, "late", 200)
        await travel(clock, 50)
        assert woke == [("a", 110), ("a'", 115), ("b", 120)]
        assert clock.now() == 150 and clock.next_deadline() == 200
        await travel(clock, 50)
    assert woke[-1] == ("late", 200)
    with pytest.raises(ValueError):
        await travel(clock, -1)


# ---------------------------------------------------------------------------- strategies


@FAST
@given(st.data())
def test_felts(data: st.DataObject) -> None:
    assert 0 <= parse_felt(data.draw(cst.felts())) < 2**252
    with pytest.raises(ChipiSessionError):
        parse_felt(data.draw(cst.felts(valid=False)))


@FAST
@given(st.data())
def test_calls(data: st.DataObject) -> None:
    good = data.draw(cst.calls())
    assert coerce_calls(good) == tuple(good)
    with pytest.raises(ChipiSessionError) as info:
        coerce_calls(data.draw(cst.calls(valid=False)))
    assert info.value.code is ErrorCode.INVALID_INPUT


@FAST
@given(st.data())
def test_whitelists(data: st.DataObject) -> None:
    good = data.draw(cst.whitelists())
    assert len(_parse_entrypoints(good)) == len(good)
    with pytest.raises(ChipiSessionError) as info:
        _parse_entrypoints(data.draw(cst.whitelists(valid=False)))
    assert info.value.code in (ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED, ErrorCode.INVALID_INPUT)


@FAST
@given(st.data())
def test_spending_policies(data: st.DataObject) -> None:
    good = data.draw(cst.spending_policies())
    _check_policy(good.max_per_call, good.max_per_window, good.window_seconds)
    bad = data.draw(cst.spending_policies(valid=False))
    with pytest.raises(ChipiSessionError) as info:
        _check_policy(bad.max_per_call, bad.max_per_window, bad.window_seconds)
    assert info.value.code is ErrorCode.INVALID_SPENDING_POLICY


@FAST
@given(st.data())
def test_session_statuses(data: st.DataObject) -> None:
    good = data.draw(cst.session_statuses(now=5000))
    felts = [good.valid_until, good.max_calls, good.calls_used, len(good.allowed_entrypoints)]
    assert SessionStatus.from_felts(felts, good.allowed_entrypoints) == good
    assert good.calls_used <= good.max_calls
    assert good.valid_until == 0 or abs(good.valid_until - 5000) <= 7200
    felts_bad, allowed_bad = data.draw(cst.session_statuses(valid=False))
    with pytest.raises(ChipiSessionError) as info:
        SessionStatus.from_felts(felts_bad, allowed_bad)
    assert info.value.code is ErrorCode.SESSION_INVALID_RESPONSE
    assert isinstance(data.draw(cst.session_states()), SessionState)


@FAST
@given(st.data())
def test_fault_plans(data: st.DataObject) -> None:
    world = make_world()
    backend = FaultInjectingBackend(world.chain)
    plan = data.draw(cst.fault_plans())
    plan.apply(backend)
    assert backend.pending() == len(plan.steps)
    with pytest.raises(ValueError):
        data.draw(cst.fault_plans(valid=False)).apply(FaultInjectingBackend(world.chain))


# ---------------------------------------------------------------------------- the machine


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_lifecycle_machine(backend: str) -> None:
    SessionLifecycleMachine.run_as_test(backend, max_examples=12, derandomize=True)


class BrokenBot(SessionLifecycleMachine):
    """A "bot" that reports money it never sent: the base invariants must catch it."""

    @rule(amount=st.integers(1, 10))
    def claim_a_transfer(self, amount: int) -> None:
        self.reported += amount


def test_the_machine_catches_a_lie() -> None:
    with pytest.raises(AssertionError):
        BrokenBot.run_as_test("asyncio", max_examples=20, derandomize=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_tipping_bot_example(backend: str) -> None:
    out = run_pytest(ROOT, str(ROOT / "examples" / "tipping_bot.py"), "-k", backend)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout and "failed" not in out.stdout
