"""handlers/execute on its own: ``execute`` driven directly (outside the facade's action
runner) with a ChipiSession on LocalChain as its context (handlers/context.ExecuteContext) and
a manual clock; ``confirm_execute`` and ``follow_revert`` with hand-made backends and
callbacks. The chain is the ground truth for what was sent."""

from __future__ import annotations

from typing import Any

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionState, TransactionSubmitted
from chipi_session.events import Event, TransactionConfirmed, TransactionFailed
from chipi_session.handlers.execute import confirm_execute, execute, follow_revert
from chipi_session.types import Call, CallOutcome, ExecutionResult, ExecutionStatus

from .gated import GatedChain
from .helpers import RECIPIENT, World, settle

pytestmark = pytest.mark.anyio


def chain_calls_used(world: World, s: Any) -> int:
    return world.chain.session_status(world.wallet.address, s.session.public_key).calls_used


async def test_execute_sends_counts_publishes_and_confirms_in_the_background(
    world: World,
) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        await s.create_session(3600)
        await s.register_session(max_calls=3)
        s.add_listener(seen.append)
        tx = await execute(s, world.transfer(5), False)
        assert isinstance(tx, str) and tx
        assert world.balance(RECIPIENT) == 5
        assert chain_calls_used(world, s) == 1 and s.remaining_calls == 2
        assert s.core.reserved == 0  # released once applied
        assert [e.tx_hash for e in seen if isinstance(e, TransactionSubmitted)] == [tx]
        await settle()
        confirmed = [e for e in seen if isinstance(e, TransactionConfirmed)]
        assert [e.tx_hash for e in confirmed] == [tx]


async def test_wait_returns_the_result_and_a_failed_call_raises_call_failed(
    world: World,
) -> None:
    async with world.session() as s:
        await s.create_session(3600)
        await s.register_session(max_calls=3)
        result = await execute(s, [world.transfer(1)], True)
        assert isinstance(result, ExecutionResult) and result.succeeded
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, [world.transfer(10**15)], True)  # more than the wallet holds
        assert info.value.code is ErrorCode.CALL_FAILED and info.value.applied is True
        assert info.value.result is not None
        assert info.value.result.status is ExecutionStatus.CALL_FAILED
        assert s.error is info.value
        assert chain_calls_used(world, s) == 2 and s.remaining_calls == 1  # it used a call


async def test_the_last_call_expires_the_session_and_the_next_is_refused_locally(
    world: World,
) -> None:
    async with world.session() as s:
        await s.create_session(3600)
        await s.register_session(max_calls=1)
        await execute(s, world.transfer(1), False)
        assert s.session_state is SessionState.EXPIRED and s.state_reason == "calls"
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, world.transfer(1), False)
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert chain_calls_used(world, s) == 1 and world.balance(RECIPIENT) == 1
        assert s.core.reserved == 0


async def test_refusals_before_sending_change_nothing(world: World) -> None:
    gated = GatedChain(world.chain)
    async with world.session(backend=gated) as s:
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, world.transfer(1), False)
        assert info.value.code is ErrorCode.NO_SESSION
        await s.create_session(3600)
        await s.register_session(max_calls=5, allowed_entrypoints=["approve"])
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, world.transfer(1), False)  # not whitelisted
        assert info.value.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
        await s.register_session(max_calls=5)
        await s.set_spending_policy(world.token, 10, 20, 3600)
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, world.transfer(11), False)  # above the cap per call
        assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
        with pytest.raises(ChipiSessionError) as info:
            await execute(s, [], False)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert gated.calls["execute_with_session"] == 0  # refused before sending
        assert chain_calls_used(world, s) == 0 and world.balance(RECIPIENT) == 0
        assert s.core.reserved == 0 and s.remaining_calls == 5


# ------------------------------------------------------------------ confirm_execute


class Reader:
    """An ``ExecutionResultReader`` answering one result, or raising one error."""

    def __init__(self, answer: ExecutionResult | ChipiSessionError) -> None:
        self.answer = answer

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        if isinstance(self.answer, ChipiSessionError):
            raise self.answer
        return self.answer


class Calls:
    """The callbacks ``confirm_execute`` is handed, recording what it did."""

    def __init__(self, current: bool = True) -> None:
        self.current = current
        self.published: list[tuple[type[Event], dict[str, Any]]] = []
        self.errors: list[ChipiSessionError] = []
        self.refetched = 0
        self.followed: list[tuple[Call, ...]] = []

    def kwargs(self) -> dict[str, Any]:
        async def refetch() -> None:
            self.refetched += 1

        async def follow(calls: tuple[Call, ...]) -> None:
            self.followed.append(calls)

        return {
            "publish": lambda cls, **fields: self.published.append((cls, fields)),
            "record_error": self.errors.append,
            "is_current": lambda: self.current,
            "refetch": refetch,
            "follow": follow,
        }


CALL = Call(to=0x7, selector="transfer", calldata=[RECIPIENT, 1, 0])


async def test_confirm_without_a_reader_is_unknown_and_silent() -> None:
    cb = Calls()
    result, error = await confirm_execute(object(), "0x1", (CALL,), 5, **cb.kwargs())
    assert result.status is ExecutionStatus.UNKNOWN and error is None
    assert cb.published == [] and cb.errors == [] and cb.refetched == 0


async def test_confirm_publishes_success_with_the_signing_key() -> None:
    cb = Calls()
    ok = ExecutionResult("0x1", ExecutionStatus.SUCCEEDED, (CallOutcome(0, True),))
    result, error = await confirm_execute(Reader(ok), "0x1", (CALL,), 0xAB, **cb.kwargs())
    assert result == ok and error is None
    assert [(c, f["session_public_key"]) for c, f in cb.published] == [
        (TransactionConfirmed, "0xab")
    ]
    assert cb.followed == [] and cb.errors == []


@pytest.mark.parametrize("current", [True, False])
async def test_a_revert_is_followed_only_for_the_current_session(current: bool) -> None:
    cb = Calls(current)
    reverted = ExecutionResult("0x1", ExecutionStatus.REVERTED, revert_reason="boom")
    result, error = await confirm_execute(Reader(reverted), "0x1", (CALL,), 5, **cb.kwargs())
    assert error is not None and error.code is ErrorCode.CALL_FAILED and cb.errors == [error]
    assert [c for c, _ in cb.published] == [TransactionFailed]
    assert cb.followed == ([(CALL,)] if current else [])


async def test_a_failed_call_is_not_followed_and_a_rejection_refetches() -> None:
    cb = Calls()
    failed = ExecutionResult("0x1", ExecutionStatus.CALL_FAILED, (CallOutcome(0, False, "x"),))
    _, error = await confirm_execute(Reader(failed), "0x1", (CALL,), 5, **cb.kwargs())
    assert error is not None and cb.followed == [] and cb.refetched == 0
    cb = Calls()
    rejected = ChipiSessionError(ErrorCode.TRANSACTION_REJECTED, "no", retryable=True)
    result, error = await confirm_execute(Reader(rejected), "0x1", (CALL,), 5, **cb.kwargs())
    assert result.status is ExecutionStatus.UNKNOWN
    assert error is not None and error.applied is False and error.retryable is False
    assert cb.refetched == 1 and [c for c, _ in cb.published] == [TransactionFailed]
    cb = Calls()
    unreadable = ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "down")
    result, error = await confirm_execute(Reader(unreadable), "0x1", (CALL,), 5, **cb.kwargs())
    assert result.status is ExecutionStatus.UNKNOWN and error is None and cb.published == []


async def test_follow_revert_rereads_only_the_tracked_tokens_it_spent() -> None:
    refetched: list[int] = []
    reread: list[int] = []

    async def refetch() -> None:
        refetched.append(1)

    async def reread_policy(token: int) -> None:
        reread.append(token)
        if token == 0x9:
            raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "down")  # swallowed

    calls = (
        Call(to=0x7, selector="transfer", calldata=[RECIPIENT, 1, 0]),
        Call(to=0x8, selector="transfer", calldata=[RECIPIENT, 1, 0]),  # not tracked
        Call(to=0x9, selector="approve", calldata=[RECIPIENT, 1, 0]),
        Call(to=0xA, selector="balance_of", calldata=[RECIPIENT]),  # spends nothing
    )
    await follow_revert(
        calls, refetch=refetch, tracked={0x7, 0x9, 0xA}, reread_policy=reread_policy
    )
    assert refetched == [1] and sorted(reread) == [0x7, 0x9]
