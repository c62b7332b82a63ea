"""Stale reads and racing writes (issue 9 §2): each test forces one observed interleaving with
gates (tests/gated.py) on the manual clock, and checks what the engine reports against the chain.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from chipi_session import (
    ActionFailed,
    ChipiSession,
    ChipiSessionError,
    ErrorCode,
    SessionHub,
    SessionState,
)
from chipi_session.events import Event
from chipi_session.outcome import OutcomeResolution, resolve_outcome
from chipi_session.types import SubmitInfo

from .gated import BatchedGatedChain, GatedChain
from .helpers import PIN, RECIPIENT, World, eventually, settle

pytestmark = pytest.mark.anyio

EXECUTE = "execute_with_session"
REGISTER = "add_or_update_session_key"
REVOKE = "revoke_session_key"
STATUS = "get_session_status"


def chain_status(world: World, s: ChipiSession) -> Any:
    assert s.session is not None
    return world.chain.session_status(world.wallet.address, s.session.public_key)


async def outcome_of(fn: Any, *args: Any) -> Any:
    try:
        return await fn(*args)
    except ChipiSessionError as exc:
        return exc


# ------------------------------------------------------------------------ stale status reads


async def test_a_read_started_before_register_does_not_flip_it_to_revoked(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session()
        gate = gated.hold(STATUS)  # reads "not registered", answers late
        tg.start_soon(s.refetch_status)
        await gate.reached.wait()
        await s.register_session(max_calls=5)
        gate.release()
        await settle()
        assert s.session_state is SessionState.ACTIVE
        assert s.session_status == chain_status(world, s)
        await s.execute_with_session(world.transfer(1))
        assert world.balance(RECIPIENT) == 1


async def test_a_read_started_before_revoke_never_revives_the_key(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(STATUS)  # reads "active", answers after the revoke
        tg.start_soon(s.refetch_status)
        await gate.reached.wait()
        await s.revoke_session()
        gate.release()
        await settle()
        assert s.session_state is SessionState.REVOKED
        sent = gated.calls[EXECUTE]
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_REVOKED
        assert gated.calls[EXECUTE] == sent  # nothing was signed with the revoked key


async def test_a_read_started_before_an_execute_does_not_undo_it(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(STATUS)  # reads calls_used=0
        tg.start_soon(s.refetch_status)
        await gate.reached.wait()
        await s.execute_with_session(world.transfer(1))
        gate.release()
        await settle()
        assert s.session_status == chain_status(world, s)
        assert s.remaining_calls == 4


async def test_a_read_answered_while_an_execute_is_in_flight_is_not_counted_twice(
    world: World,
) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session()
        await s.register_session(max_calls=1)
        gate = gated.hold(EXECUTE)  # the execute ran on chain; its response is late
        tg.start_soon(s.execute_with_session, world.transfer(1))
        await gate.reached.wait()
        await s.refetch_status()  # the chain already counts the execute
        gate.release()
        await settle()
        assert s.session_status == chain_status(world, s)
        assert s.session_status is not None and s.session_status.calls_used == 1


async def test_the_hubs_batched_poller_drops_reads_older_than_a_write(world: World) -> None:
    gated = BatchedGatedChain(world.chain)
    async with SessionHub(
        backend=gated, clock=world.clock, vault=world.vault, status_interval=10
    ) as hub, anyio.create_task_group():
        s = await hub.open(wallet=world.wallet, encrypt_key=PIN)
        await s.create_session()
        gate = gated.hold("get_session_statuses")
        world.clock.advance(10)
        await gate.reached.wait()  # the poll read "not registered"
        await s.register_session(max_calls=5)
        gate.release()
        await settle()
        assert s.session_state is SessionState.ACTIVE
        # the next poll (no write in between) is applied as usual
        await s.execute_with_session(world.transfer(1))
        world.clock.advance(10)
        await settle()
        assert s.session_status == chain_status(world, s)


async def test_explicit_refetch_rereads_when_its_first_read_went_stale(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s, anyio.create_task_group() as tg:
        await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(STATUS)
        result: list[Any] = []

        async def refetch() -> None:
            result.append(await s.refetch_status())

        tg.start_soon(refetch)
        await gate.reached.wait()
        await s.execute_with_session(world.transfer(1))
        gate.release()
        await settle()
        assert result == [chain_status(world, s)]  # what it returns is the fresh read


# ------------------------------------------------------------------------ racing owner writes


@pytest.mark.parametrize("when", ["before", "after"])
async def test_register_racing_revoke_runs_one_at_a_time(world: World, when: str) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        gate = gated.hold(REGISTER, when)
        results: dict[str, Any] = {}

        async def run(name: str, fn: Any) -> None:
            results[name] = await outcome_of(fn)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "register", s.register_session)
            await gate.reached.wait()
            tg.start_soon(run, "revoke", s.revoke_session)
            await settle()
            assert s.is_revoking and gated.calls[REVOKE] == 0  # waits for the register
            gate.release()
        assert isinstance(results["register"], str), results
        assert isinstance(results["revoke"], str), results
        assert s.session_state is SessionState.REVOKED
        assert not chain_status(world, s).exists  # the chain agrees: revoked last


async def test_revoke_first_then_register_is_refused_before_sending(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REVOKE, "before")
        results: dict[str, Any] = {}

        async def run(name: str, fn: Any) -> None:
            results[name] = await outcome_of(fn)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "revoke", s.revoke_session)
            await gate.reached.wait()
            tg.start_soon(run, "register", s.register_session)
            await settle()
            gate.release()
        assert isinstance(results["revoke"], str)
        err = results["register"]
        assert isinstance(err, ChipiSessionError) and err.code is ErrorCode.SESSION_REVOKED
        assert gated.calls[REGISTER] == 1  # the refused register was never sent
        assert s.session_state is SessionState.REVOKED
        assert not chain_status(world, s).exists


async def test_spending_policy_writes_wait_for_a_register(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REGISTER, "before")
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.register_session, 7)
            await gate.reached.wait()
            tg.start_soon(s.set_spending_policy, world.token, 10, 100, 60)
            await settle()
            assert gated.calls["set_spending_policy"] == 0
            gate.release()
        found = await s.get_spending_policy(world.token)
        assert found is not None and found.max_per_call == 10
        assert chain_status(world, s).max_calls == 7


# ------------------------------------------------------------------- reservations and budget


async def test_re_registering_with_executes_in_flight_never_overspends(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=10)
        gates = [gated.hold(EXECUTE, "before") for _ in range(3)]
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(s.execute_with_session, world.transfer(1))
            for gate in gates:
                await gate.reached.wait()
            await s.register_session(max_calls=10)  # chain: calls_used back to 0
            for gate in gates:
                gate.release()
        assert chain_status(world, s).calls_used == 3  # they landed after the register
        sent_before = gated.calls[EXECUTE]
        results: list[Any] = []

        async def pay() -> None:
            results.append(await outcome_of(s.execute_with_session, world.transfer(1)))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(pay)
        ok = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, ChipiSessionError)]
        assert len(ok) == 7
        assert all(e.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED for e in refused)
        assert gated.calls[EXECUTE] - sent_before == 7  # never sent one the chain refuses
        assert chain_status(world, s).calls_used == 10
        assert s.session_status == chain_status(world, s)


# ------------------------------------------------------------ cancelled and crashed writes


async def test_an_execute_cancelled_after_it_was_sent_is_held_in_doubt(world: World) -> None:
    gated = GatedChain(world.chain)
    seen: list[Event] = []
    async with world.session(backend=gated) as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=2)
        gate = gated.hold(EXECUTE)  # executed on chain; the caller gives up waiting
        gated.nonce_answers.append(False)  # the first nonce read cannot tell yet
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.execute_with_session, world.transfer(5))
                await gate.reached.wait()
                scope.cancel()
        assert world.balance(RECIPIENT) == 5
        await settle()
        assert len(s.in_doubt) == 1  # counted against the budget until resolved
        failed = [e for e in seen if isinstance(e, ActionFailed) and e.action == "execute"]
        assert failed and failed[-1].error.code is ErrorCode.UNKNOWN_OUTCOME
        assert failed[-1].error.applied is None
        # the pre-flight counts it: one call left, not two
        await s.execute_with_session(world.transfer(1))
        sent = gated.calls[EXECUTE]
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert gated.calls[EXECUTE] == sent  # refused locally, never sent
        # resolved like a timeout once its window closes: executed, so counted once
        assert s.in_doubt
        world.clock.advance(3601)
        await settle()
        await eventually(lambda: not s.in_doubt)
        await settle()
        assert s.session_status == chain_status(world, s)
        assert s.remaining_calls == 0


async def test_a_cancelled_execute_resolves_at_once_when_the_nonce_says_so(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        gate = gated.hold(EXECUTE)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.execute_with_session, world.transfer(5))
                await gate.reached.wait()
                scope.cancel()
        await settle()
        await eventually(lambda: not s.in_doubt)
        await settle()
        assert s.remaining_calls == 2 == chain_status(world, s).remaining_calls


async def test_an_execute_cancelled_before_it_was_sent_moves_nothing(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        gate = gated.hold(EXECUTE, "before")
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.execute_with_session, world.transfer(5))
                await gate.reached.wait()
                scope.cancel()
        await settle()
        assert not s.in_doubt and s.remaining_calls == 3
        assert world.balance(RECIPIENT) == 0


async def test_an_unexpected_exception_after_sending_is_unknown_outcome(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        gated.raise_after(EXECUTE, RecursionError("deeply nested JSON"))
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(5))
        assert info.value.code is ErrorCode.UNKNOWN_OUTCOME
        assert info.value.applied is True and info.value.retryable is False
        assert world.balance(RECIPIENT) == 5
        await settle()
        assert s.remaining_calls == 2 == chain_status(world, s).remaining_calls


async def test_an_unexpected_exception_after_an_owner_write_is_unknown_outcome(
    world: World,
) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        gated.raise_after(REGISTER, RecursionError("deeply nested JSON"))
        gated.nonce_answers.append(False)  # cannot tell yet: held in doubt
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session(max_calls=3)
        assert info.value.code is ErrorCode.UNKNOWN_OUTCOME
        assert info.value.applied is None and info.value.retryable is False
        await settle()
        assert s.session_state is SessionState.ACTIVE  # the chain says so
        assert s.session_status == chain_status(world, s)


# ------------------------------------------------------------------------ outcome resolution


class _Reader:
    """A nonce reader whose nonce becomes used between two reads (a block landed)."""

    def __init__(self, answers: list[bool], now: int) -> None:
        self.answers = answers
        self.now = now
        self.reads = 0

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        self.reads += 1
        return self.answers.pop(0)

    async def chain_time(self) -> int:
        return self.now


INFO = SubmitInfo("execute", 0xA, 7, 0x1, execute_before=100)


async def test_resolution_rereads_the_nonce_after_reading_the_time() -> None:
    reader = _Reader([False, True], now=150)
    assert await resolve_outcome(reader, INFO) is OutcomeResolution.EXECUTED
    assert reader.reads == 2
    reader = _Reader([False, False], now=150)
    assert await resolve_outcome(reader, INFO) is OutcomeResolution.NOT_EXECUTED
    reader = _Reader([False], now=99)
    assert await resolve_outcome(reader, INFO) is OutcomeResolution.PENDING
    reader = _Reader([True], now=0)
    assert await resolve_outcome(reader, INFO) is OutcomeResolution.EXECUTED


async def test_the_engine_uses_the_same_resolution(world: World) -> None:
    """A nonce read 'unused', then the window closes, then a re-read finds it used: the
    engine reports the write as executed (the older engine copy said 'never will')."""
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        gated.raise_after(EXECUTE, ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, "timeout"))
        gated.nonce_answers.extend([False, True])
        world.clock.advance(0)
        gate = gated.hold("chain_time", "before")
        async with anyio.create_task_group() as tg:
            box: list[Any] = []

            async def run() -> None:
                box.append(await outcome_of(s.execute_with_session, world.transfer(5)))

            tg.start_soon(run)
            await gate.reached.wait()
            world.clock.advance(3601)  # the window closed while the time was being read
            gate.release()
        err = box[0]
        assert isinstance(err, ChipiSessionError) and err.code is ErrorCode.UNKNOWN_OUTCOME
        assert err.applied is True
        assert world.balance(RECIPIENT) == 5


@pytest.mark.parametrize("action", ["register", "revoke"])
async def test_an_owner_write_cancelled_after_it_was_sent_converges_to_the_chain(
    world: World, action: str
) -> None:
    gated = GatedChain(world.chain)
    seen: list[Event] = []
    async with world.session(backend=gated) as s:
        s.add_listener(seen.append)
        await s.create_session()
        if action == "revoke":
            await s.register_session(max_calls=3)
        gate = gated.hold(REGISTER if action == "register" else REVOKE)
        call = s.register_session if action == "register" else s.revoke_session
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await gate.reached.wait()
                scope.cancel()
        await settle()
        failed = [e for e in seen if isinstance(e, ActionFailed) and e.action == action]
        assert failed and failed[-1].error.code is ErrorCode.UNKNOWN_OUTCOME
        expected = SessionState.ACTIVE if action == "register" else SessionState.REVOKED
        assert s.session_state is expected
        assert chain_status(world, s).exists is (action == "register")
        assert not s.is_registering and not s.is_revoking


async def test_an_execute_cancelled_while_its_outcome_is_being_read_is_held_in_doubt(
    world: World,
) -> None:
    gated = GatedChain(world.chain)
    seen: list[Event] = []
    async with world.session(backend=gated) as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=3)
        gated.raise_after(EXECUTE, ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, "timeout"))
        gate = gated.hold("outside_nonce_used", "before")  # the caller gives up meanwhile
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.execute_with_session, world.transfer(5))
                await gate.reached.wait()
                scope.cancel()
        assert world.balance(RECIPIENT) == 5
        failed = [e for e in seen if isinstance(e, ActionFailed) and e.action == "execute"]
        assert failed and failed[-1].error.code is ErrorCode.UNKNOWN_OUTCOME
        await settle()
        await eventually(lambda: not s.in_doubt)
        await settle()
        assert s.remaining_calls == 2 == chain_status(world, s).remaining_calls
