"""The engine under injected faults (FaultInjectingBackend over LocalChain, manual clock).

Every fault kind is scripted exactly on execute, register and revoke; a randomized soak then
mixes them with latency on both anyio backends. Invariants checked throughout:

* errors are always ``ChipiSessionError`` and ``retryable`` is right: before-send failures are
  ``BACKEND_UNAVAILABLE`` retryable with nothing applied; ``UNKNOWN_OUTCOME`` is not retryable;
  a resolved "did not execute" is ``BACKEND_UNAVAILABLE`` retryable ``applied=False``; a
  resolved "executed" is ``UNKNOWN_OUTCOME`` ``applied=True``;
* the chain accepted exactly the executes the engine reported as executed (``applied=True``
  counted as executed; in-doubt ones counted once the chain decided them), and money moved
  exactly once per executed transfer;
* the call budget is never over-spent, and the engine never even sends an execute the chain
  refuses for its budget;
* the local state converges to the chain's after ``refetch_status()`` / the in-doubt window;
* no action is left stuck (``is_executing`` and friends end False).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from chipi_session import ChipiSession, ChipiSessionError, ErrorCode, SessionState, StateChanged
from chipi_session.backends.base import NonceReader, SessionBackend
from chipi_session.backends.faults import (
    FAULT_KINDS,
    FaultInjectingBackend,
    FaultKind,
    FaultRates,
)
from chipi_session.felts import selector
from chipi_session.lifecycle import derive_state
from chipi_session.types import SessionStatus

from .helpers import RECIPIENT, World, eventually, make_world, settle

pytestmark = pytest.mark.anyio

#: Past the SNIP-9 window the paymaster issues (an hour): an unused nonce is then dead.
PAST_WINDOW = 3601
EXECUTE = "execute_with_session"
REGISTER = "add_or_update_session_key"
REVOKE = "revoke_session_key"
NONCE = "outside_nonce_used"
APPLIED_KINDS: tuple[FaultKind, ...] = ("timeout_after_send", "drop_response")


def faulty(world: World, **kwargs: Any) -> FaultInjectingBackend:
    return FaultInjectingBackend(world.chain, **kwargs)


def chain_status(world: World, public_key: int) -> SessionStatus:
    return world.chain.session_status(world.wallet.address, public_key)


def chain_events(world: World, name: str, public_key: int) -> int:
    """How many ``name`` events the wallet emitted for this session key."""
    sel = selector(name)
    return sum(
        1
        for e in world.chain.events
        if e.from_address == world.wallet.address and e.keys[:2] == (sel, public_key)
    )


def chain_state(world: World, session: ChipiSession) -> SessionState:
    """The state the chain says (docs/engine.md, "Deriving the state from the chain"), knowing from the chain's events whether the
    key was ever registered (or revoked)."""
    assert session.session is not None
    pub = session.session.public_key
    seen = chain_events(world, "SessionKeyAdded", pub) + chain_events(
        world, "SessionKeyRevoked", pub
    )
    now = int(world.clock.now())
    state, _ = derive_state(
        chain_status(world, pub),
        now,
        local_valid_until=session.session.valid_until,
        seen_registered=seen > 0,
    )
    if state is SessionState.CREATED and now > session.session.valid_until:
        return SessionState.EXPIRED  # never registered, and now it never can be (lifecycle)
    return state


def check_error(exc: BaseException) -> ChipiSessionError:
    """Every failure is typed, and ``retryable`` / ``applied`` say the truth."""
    assert isinstance(exc, ChipiSessionError), repr(exc)
    if exc.code is ErrorCode.BACKEND_UNAVAILABLE:
        assert exc.retryable is True, exc  # a retryable=False one is an engine bug report
        assert exc.applied in (None, False)
    elif exc.code is ErrorCode.UNKNOWN_OUTCOME:
        assert exc.retryable is False
        assert exc.applied in (None, True)
    else:
        assert exc.applied is None
    return exc


async def failing(action: Awaitable[Any]) -> ChipiSessionError:
    try:
        await action
    except ChipiSessionError as exc:
        return check_error(exc)
    raise AssertionError("the action should have failed")


async def while_advancing(
    world: World,
    backend: FaultInjectingBackend,
    action: Callable[[], Awaitable[Any]],
    seconds: float,
) -> ChipiSessionError | Any:
    """Run ``action`` and, once it waits on the clock inside the backend, move time."""
    box: dict[str, Any] = {}

    async def run() -> None:
        try:
            box["value"] = await action()
        except ChipiSessionError as exc:
            box["value"] = check_error(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await eventually(lambda: backend.waiting_on_clock > 0)
        world.clock.advance(seconds)
    return box["value"]


async def quiesce() -> None:
    """``settle`` without its 0.1 s naps on asyncio: let fresh tasks run first."""
    for _ in range(8):
        await anyio.sleep(0)
    await settle()


def assert_idle(s: ChipiSession) -> None:
    assert not (s.is_executing or s.is_registering or s.is_revoking or s.is_loading_status)


async def active_session(
    world: World, backend: SessionBackend, max_calls: int = 5, **kwargs: Any
) -> ChipiSession:
    s = world.session(backend=backend, **kwargs)
    await s.__aenter__()
    await s.create_session()
    await s.register_session(max_calls=max_calls, allowed_entrypoints=["transfer"])
    return s


# --------------------------------------------------------------------------- the wrapper


class _Minimal:
    """A backend without outside_nonce_used (no NonceReader capability)."""

    requires_bearer_token = True

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    def __getattr__(self, name: str) -> Any:
        if name == "outside_nonce_used":
            raise AttributeError(name)
        return getattr(self._chain, name)


async def test_wrapper_is_a_nonce_reader_exactly_when_the_inner_backend_is(world: World) -> None:
    wrapped = faulty(world)
    assert isinstance(wrapped, FaultInjectingBackend)
    assert isinstance(wrapped, SessionBackend) and isinstance(wrapped, NonceReader)
    assert wrapped.clock is world.clock and wrapped.requires_bearer_token is False
    plain = FaultInjectingBackend(_Minimal(world.chain))
    assert isinstance(plain, FaultInjectingBackend) and isinstance(plain, SessionBackend)
    assert not isinstance(plain, NonceReader)
    assert plain.requires_bearer_token is True
    with pytest.raises(ValueError):
        plain.fail_next(NONCE, "error_before_send")


def test_configuration_is_validated(world: World) -> None:
    with pytest.raises(ValueError):
        FaultRates(error_before_send=0.7, drop_response=0.7)
    with pytest.raises(ValueError):
        FaultRates(timeout_after_send=1.5)
    with pytest.raises(ValueError):
        FaultRates(max_checkpoints=-1)
    wrapped = faulty(world)
    with pytest.raises(ValueError):
        wrapped.fail_next("transfer", "error_before_send")
    with pytest.raises(ValueError):
        wrapped.fail_next(EXECUTE, "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wrapped.fail_next("get_session_status", "timeout_after_send")  # a read has no effect
    with pytest.raises(ValueError):
        faulty(world, per_method={"nope": FaultRates()})
    wrapped.fail_next(EXECUTE, "drop_response", times=2)
    wrapped.fail_next(REGISTER, "error_before_send")
    assert wrapped.pending() == 3 and wrapped.pending(EXECUTE) == 2
    wrapped.restart(4)
    assert wrapped.down_for == 4
    wrapped.clear()
    assert wrapped.pending() == 0 and wrapped.down_for == 0


async def test_the_same_seed_replays_the_same_faults() -> None:
    rates = FaultRates(error_before_send=0.3, restart=0.05)

    async def trace(seed: int) -> list[str]:
        world = make_world()
        wrapped = faulty(world, seed=seed, rates=rates, restart_down_calls=2)
        out = []
        for _ in range(60):
            try:
                await wrapped.get_session_status(world.wallet.address, 1)
                out.append("ok")
            except ChipiSessionError as exc:
                out.append(check_error(exc).message)
        return out

    first = await trace(7)
    assert first == await trace(7)
    assert first != await trace(8)
    assert "ok" in first and len(set(first)) >= 3  # ok, unavailable, restarted, restarting


async def test_clock_latency_interleaves_concurrent_executes(world: World) -> None:
    """Delays on the injected clock hold calls until the test moves time: all three executes
    are in flight together, the budget reserved for each, then all complete once."""
    fb = faulty(world, per_method={EXECUTE: FaultRates(max_delay=10.0, max_checkpoints=3)})
    s = await active_session(world, fb, max_calls=3)
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(s.execute_with_session, world.transfer(1))
            await eventually(lambda: fb.waiting_on_clock == 3)
            assert s.is_executing and world.balance(RECIPIENT) == 0
            exc = await failing(s.execute_with_session(world.transfer(1)))  # all 3 reserved
            assert exc.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
            world.clock.advance(10)
        assert world.balance(RECIPIENT) == 3 and fb.applied[EXECUTE] == 3
        assert s.session_status == chain_status(world, s.session.public_key)  # type: ignore[union-attr]
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


# --------------------------------------------------------------------------- execute


async def test_execute_error_before_send_applies_nothing_and_is_retryable(world: World) -> None:
    fb = faulty(world)
    s = await active_session(world, fb)
    try:
        fb.fail_next(EXECUTE, "error_before_send")
        exc = await failing(s.execute_with_session(world.transfer(7)))
        assert exc.code is ErrorCode.BACKEND_UNAVAILABLE and exc.retryable
        assert exc.applied is not True
        assert fb.applied[EXECUTE] == 0 and world.balance(RECIPIENT) == 0
        assert chain_status(world, s.session.public_key).calls_used == 0  # type: ignore[union-attr]
        assert s.session_status.calls_used == 0  # type: ignore[union-attr]
        assert s.has_active_session and not s.in_doubt
        await s.execute_with_session(world.transfer(7))  # the retry goes through, once
        assert world.balance(RECIPIENT) == 7
        assert s.session_status == chain_status(world, s.session.public_key)  # type: ignore[union-attr]
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


@pytest.mark.parametrize("kind", APPLIED_KINDS)
async def test_execute_applied_but_response_lost_is_reported_applied(
    world: World, kind: FaultKind
) -> None:
    fb = faulty(world)
    s = await active_session(world, fb, max_calls=2)
    try:
        fb.fail_next(EXECUTE, kind)
        exc = await failing(s.execute_with_session(world.transfer(5)))
        assert exc.code is ErrorCode.UNKNOWN_OUTCOME and not exc.retryable
        assert exc.applied is True  # resolved from the chain: its nonce is used
        assert fb.count(kind, EXECUTE) == 1 and fb.count() == 1
        assert world.balance(RECIPIENT) == 5  # moved exactly once
        pub = s.session.public_key  # type: ignore[union-attr]
        assert s.session_status == chain_status(world, pub)
        assert not s.in_doubt
        await s.execute_with_session(world.transfer(1))
        # the budget counted the lost-response execute: the third is refused locally
        exc = await failing(s.execute_with_session(world.transfer(1)))
        assert exc.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert fb.calls[EXECUTE] == 2 and fb.applied[EXECUTE] == 2
        assert chain_status(world, pub).calls_used == 2
        assert s.session_state is chain_state(world, s) is SessionState.EXPIRED
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


async def test_execute_request_lost_past_its_window_is_resolved_not_executed(
    world: World,
) -> None:
    fb = faulty(world, timeout_seconds=PAST_WINDOW)  # the client gives up after the window
    s = await active_session(world, fb)
    try:
        fb.fail_next(EXECUTE, "lost_request")
        exc = await while_advancing(
            world, fb, lambda: s.execute_with_session(world.transfer(5)), PAST_WINDOW
        )
        assert isinstance(exc, ChipiSessionError)
        assert exc.code is ErrorCode.BACKEND_UNAVAILABLE
        assert exc.retryable is True and exc.applied is False
        assert fb.applied[EXECUTE] == 0 and world.balance(RECIPIENT) == 0
        assert not s.in_doubt and s.session_status.calls_used == 0  # type: ignore[union-attr]
        await s.execute_with_session(world.transfer(5))  # safe to retry: it did not run
        assert world.balance(RECIPIENT) == 5
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


@pytest.mark.parametrize("kind", [*APPLIED_KINDS, "lost_request"])
async def test_execute_in_doubt_counts_against_the_budget_until_resolved(
    world: World, kind: FaultKind
) -> None:
    """The outcome cannot be read (every nonce read fails): the execute is held in doubt,
    counted against the budget, and resolved by the engine's timer once the window closed and
    the chain can be read again."""
    nonce_down = FaultRates(error_before_send=1.0)
    fb = faulty(world)
    s = await active_session(world, fb, max_calls=2)
    pub = s.session.public_key  # type: ignore[union-attr]
    try:
        fb.fail_next(EXECUTE, kind)
        fb.per_method[NONCE] = nonce_down
        exc = await failing(s.execute_with_session(world.transfer(5)))
        assert exc.code is ErrorCode.UNKNOWN_OUTCOME and not exc.retryable
        assert exc.applied is None
        assert len(s.in_doubt) == 1
        applied = kind in APPLIED_KINDS
        assert world.balance(RECIPIENT) == (5 if applied else 0)
        await quiesce()
        # spend what the engine allows while one execute is in doubt
        more = 0
        while True:
            sent = fb.calls[EXECUTE]
            try:
                await s.execute_with_session(world.transfer(1))
            except ChipiSessionError as exc:
                assert check_error(exc).code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
                assert fb.calls[EXECUTE] == sent  # refused without a round trip
                break
            more += 1
            assert chain_status(world, pub).calls_used <= 2
        # not applied: budget 2, one held in doubt. Applied: the chain counts it as well, and
        # while its nonce cannot be read it is (safely) counted twice.
        assert more == (0 if applied else 1)
        assert len(s.in_doubt) == 1
        # the window closes, but the chain still cannot be read: it stays in doubt
        world.clock.advance(PAST_WINDOW)
        await quiesce()
        assert len(s.in_doubt) == 1
        # the chain is readable again: the timer heap's next attempt resolves it
        del fb.per_method[NONCE]
        world.clock.advance(60)
        await eventually(lambda: not s.in_doubt)
        await quiesce()
        assert s.session_status == chain_status(world, pub)
        used = chain_status(world, pub).calls_used
        assert used == int(applied) + more
        assert world.balance(RECIPIENT) == more + (5 if applied else 0)
        assert s.session_state is chain_state(world, s)
        while used < 2:  # whatever the doubt held is usable again
            await s.execute_with_session(world.transfer(1))
            used += 1
            assert chain_status(world, pub).calls_used == used
        assert s.session_state is chain_state(world, s) is SessionState.EXPIRED
        assert fb.rejected[(EXECUTE, ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


async def test_applied_in_doubt_execute_is_not_counted_twice(world: World) -> None:
    """Regression: once a status read shows the in-doubt execute and its nonce can be read,
    it is resolved at once instead of being counted twice until its window closes."""
    fb = faulty(world)
    s = await active_session(world, fb, max_calls=2)
    try:
        fb.fail_next(EXECUTE, "timeout_after_send")
        fb.fail_next(NONCE, "error_before_send")
        exc = await failing(s.execute_with_session(world.transfer(1)))
        assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is None
        await quiesce()
        assert s.session_status.calls_used == 1  # type: ignore[union-attr]  # the refetch saw it
        assert not s.in_doubt  # ... and the nonce read that followed resolved it
        # the chain has used 1 of 2: the second call of the budget must be usable now
        await s.execute_with_session(world.transfer(1))
        assert world.balance(RECIPIENT) == 2
        assert s.session_state is chain_state(world, s) is SessionState.EXPIRED
    finally:
        await s.__aexit__(None, None, None)


async def test_restart_refuses_calls_then_comes_back_with_the_chain_intact(world: World) -> None:
    fb = faulty(world, restart_down_calls=2)
    s = await active_session(world, fb)
    pub = s.session.public_key  # type: ignore[union-attr]
    try:
        await s.execute_with_session(world.transfer(1))
        before = chain_status(world, pub)
        fb.fail_next(EXECUTE, "restart")
        for _ in range(3):  # the call that met the restart, then two while it is down
            exc = await failing(s.execute_with_session(world.transfer(1)))
            assert exc.code is ErrorCode.BACKEND_UNAVAILABLE and exc.retryable
        assert fb.count("restart") == 1 and fb.count("down") == 2 and fb.down_for == 0
        assert chain_status(world, pub) == before and world.balance(RECIPIENT) == 1
        await s.execute_with_session(world.transfer(1))
        fb.restart(1)  # reads are refused while down too
        exc = await failing(s.refetch_status())
        assert exc.code is ErrorCode.BACKEND_UNAVAILABLE
        assert s.session_state is SessionState.ACTIVE  # a failed read changes nothing
        assert await s.refetch_status() == chain_status(world, pub)
        assert chain_status(world, pub).calls_used == 2 and world.balance(RECIPIENT) == 2
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


async def test_reads_fail_before_send_and_change_nothing(world: World) -> None:
    fb = faulty(world)
    s = await active_session(world, fb)
    try:
        fb.fail_next("get_session_status", "error_before_send")
        exc = await failing(s.refetch_status())
        assert exc.code is ErrorCode.BACKEND_UNAVAILABLE and exc.retryable
        assert s.has_active_session and s.error is exc
        fb.fail_next("get_spending_policy", "error_before_send")
        exc = await failing(s.get_spending_policy(world.token))
        assert exc.code is ErrorCode.BACKEND_UNAVAILABLE
        assert await s.get_spending_policy(world.token) is None
        assert fb.count() == 2 and fb.count(method="get_session_status") == 1
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


async def test_concurrent_executes_with_latency_and_faults_never_overspend(
    world: World,
) -> None:
    fb = faulty(
        world,
        seed=3,
        rates=FaultRates(
            error_before_send=0.15,
            timeout_after_send=0.15,
            drop_response=0.15,
            max_checkpoints=6,
        ),
    )
    s = await active_session(world, fb, max_calls=6)
    pub = s.session.public_key  # type: ignore[union-attr]
    outcomes: list[str] = []
    try:

        async def pay() -> None:
            try:
                await s.execute_with_session(world.transfer(1))
                outcomes.append("ok")
            except ChipiSessionError as exc:
                check_error(exc)
                outcomes.append("applied" if exc.applied else exc.code.value)

        for _ in range(4):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(pay)
        await settle()
        executed = outcomes.count("ok") + outcomes.count("applied")
        assert world.balance(RECIPIENT) == fb.applied[EXECUTE] == executed
        assert chain_status(world, pub).calls_used == executed <= 6
        assert fb.rejected[(EXECUTE, ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0
        assert fb.count() > 0 and "SESSION_MAX_CALLS_EXCEEDED" in outcomes
        fb.rates = FaultRates()
        await s.refetch_status()
        assert s.session_state is chain_state(world, s)
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


# --------------------------------------------------------------------------- register


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_register_under_each_fault(world: World, kind: FaultKind) -> None:
    fb = faulty(world, timeout_seconds=PAST_WINDOW if kind == "lost_request" else 0)
    async with world.session(backend=fb) as s:
        data = await s.create_session()
        pub = data.public_key
        fb.fail_next(REGISTER, kind)

        def action() -> Awaitable[str]:
            return s.register_session(max_calls=3)

        if kind == "lost_request":
            exc = await while_advancing(world, fb, action, PAST_WINDOW)
        else:
            exc = await failing(action())
        assert isinstance(exc, ChipiSessionError)
        if kind in APPLIED_KINDS:
            assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is True
            assert s.session_state is SessionState.ACTIVE
            assert s.session_status == chain_status(world, pub)
        else:
            assert exc.code is ErrorCode.BACKEND_UNAVAILABLE and exc.retryable
            assert exc.applied is (False if kind == "lost_request" else None)
            assert s.session_state is SessionState.CREATED
            assert not chain_status(world, pub).exists
            fb.clear()
            await s.register_session(max_calls=3)  # the retry registers, once
        assert chain_events(world, "SessionKeyAdded", pub) == 1
        assert s.session_state is chain_state(world, s) is SessionState.ACTIVE
        await s.execute_with_session(world.transfer(2))
        assert world.balance(RECIPIENT) == 2
        assert_idle(s)


async def test_register_in_doubt_converges_after_refetch(world: World) -> None:
    fb = faulty(world)
    async with world.session(backend=fb) as s:
        data = await s.create_session()
        fb.fail_next(REGISTER, "timeout_after_send")
        fb.fail_next(NONCE, "error_before_send")
        exc = await failing(s.register_session(max_calls=3))
        assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is None
        assert chain_events(world, "SessionKeyAdded", data.public_key) == 1
        await s.refetch_status()
        assert s.session_state is chain_state(world, s) is SessionState.ACTIVE
        assert s.session_status == chain_status(world, data.public_key)
        assert_idle(s)


async def test_register_in_doubt_refreshes_the_budget(world: World) -> None:
    """Regression: a register left in doubt is followed by a status read, so executes are
    checked against the budget the chain has, not the one registered before."""
    fb = faulty(world)
    s = await active_session(world, fb, max_calls=5)
    pub = s.session.public_key  # type: ignore[union-attr]
    try:
        fb.fail_next(REGISTER, "timeout_after_send")  # applied: the budget is now 1
        fb.fail_next(NONCE, "error_before_send")  # ... but the engine cannot tell
        exc = await failing(s.register_session(max_calls=1))
        assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is None
        assert chain_status(world, pub).max_calls == 1
        await quiesce()
        await s.execute_with_session(world.transfer(1))
        # the chain has no call left: this one must be refused locally, not sent
        exc = await failing(s.execute_with_session(world.transfer(1)))
        assert exc.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        assert fb.rejected[(EXECUTE, ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0
    finally:
        await s.__aexit__(None, None, None)


async def test_refetch_of_an_unregistered_expired_session_is_stable(world: World) -> None:
    """Regression: a never-registered session past valid_until reconciles to expired, with
    no expired -> created -> expired flip on a refetch."""
    changes: list[tuple[str, str]] = []
    async with world.session() as s:
        await s.create_session(100)
        world.clock.advance(101)
        await quiesce()
        assert s.session_state is SessionState.EXPIRED
        s.add_listener(
            lambda e: (
                changes.append((e.previous, e.current)) if isinstance(e, StateChanged) else None
            )
        )
        await s.refetch_status()
        await quiesce()
        assert s.session_state is SessionState.EXPIRED
        assert changes == []  # nothing changed on chain: no state change either


async def test_owner_writes_resolved_late_count_as_seen_registered(world: World) -> None:
    fb = faulty(world)
    async with world.session(backend=fb) as s:
        await s.create_session()

        def register() -> Awaitable[str]:
            return s.register_session(max_calls=2)

        for action, method in ((register, REGISTER), (s.revoke_session, REVOKE)):
            fb.fail_next(method, "drop_response")  # executed on chain...
            fb.fail_next(NONCE, "error_before_send")  # ... nobody can tell
            fb.fail_next("get_session_status", "error_before_send")  # nor read the status
            exc = await failing(action())
            assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is None
            await quiesce()
        pub = s.session.public_key  # type: ignore[union-attr]
        assert chain_events(world, "SessionKeyAdded", pub) == 1
        assert chain_events(world, "SessionKeyRevoked", pub) == 1
        world.clock.advance(PAST_WINDOW)  # the engine's timers resolve both: executed
        await quiesce()
        await s.refetch_status()
        await quiesce()
        assert s.session_state is chain_state(world, s) is SessionState.REVOKED


# --------------------------------------------------------------------------- revoke


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_revoke_under_each_fault(world: World, kind: FaultKind) -> None:
    fb = faulty(world, timeout_seconds=PAST_WINDOW if kind == "lost_request" else 0)
    s = await active_session(world, fb)
    pub = s.session.public_key  # type: ignore[union-attr]
    try:
        fb.fail_next(REVOKE, kind)
        if kind == "lost_request":
            exc = await while_advancing(world, fb, s.revoke_session, PAST_WINDOW)
        else:
            exc = await failing(s.revoke_session())
        assert isinstance(exc, ChipiSessionError)
        if kind in APPLIED_KINDS:
            assert exc.code is ErrorCode.UNKNOWN_OUTCOME and exc.applied is True
            assert s.session_state is SessionState.REVOKED
        else:
            assert exc.code is ErrorCode.BACKEND_UNAVAILABLE and exc.retryable
            assert exc.applied is (False if kind == "lost_request" else None)
            assert s.session_state is SessionState.ACTIVE
            assert chain_status(world, pub).exists
            fb.clear()
            await s.revoke_session()
        assert chain_events(world, "SessionKeyRevoked", pub) == 1
        assert not chain_status(world, pub).exists
        await s.refetch_status()
        assert s.session_state is chain_state(world, s) is SessionState.REVOKED
        exc = await failing(s.execute_with_session(world.transfer(1)))
        assert exc.code is ErrorCode.SESSION_REVOKED and fb.calls[EXECUTE] == 0
        assert_idle(s)
    finally:
        await s.__aexit__(None, None, None)


# --------------------------------------------------------------------------- soak


class Soak:
    """A random workload on one session, with the bookkeeping the invariants need."""

    def __init__(self, world: World, fb: FaultInjectingBackend, s: ChipiSession, seed: int):
        self.world, self.fb, self.s = world, fb, s
        self.rng = random.Random(seed)
        self.ok = 0
        self.applied = 0  # UNKNOWN_OUTCOME applied=True
        self.unknown = 0  # UNKNOWN_OUTCOME applied=None
        self.owner_unknown = 0  # register / revoke left in doubt
        self.doubt_nonces: set[int] = set()
        self.keys: dict[int, int] = {}  # every registered-or-tried key -> max_calls asked
        self.codes: dict[str, int] = {}

    def note(self, exc: ChipiSessionError) -> None:
        check_error(exc)
        self.codes[exc.code.value] = self.codes.get(exc.code.value, 0) + 1

    async def execute_batch(self) -> None:
        async def pay() -> None:
            try:
                await self.s.execute_with_session(self.world.transfer(1))
                self.ok += 1
            except ChipiSessionError as exc:
                self.note(exc)
                if exc.code is ErrorCode.UNKNOWN_OUTCOME:
                    if exc.applied:
                        self.applied += 1
                    else:
                        self.unknown += 1

        async with anyio.create_task_group() as tg:
            for _ in range(self.rng.randint(1, 4)):
                tg.start_soon(pay)
        # every in-doubt execute is tracked by the engine (its nonce decides it later)
        self.doubt_nonces.update(i.outside_nonce for i in self.s.in_doubt)

    async def step(self) -> None:
        s, rng = self.s, self.rng
        op = rng.choices(
            ["create", "register", "execute", "revoke", "refetch", "tick", "jump"],
            weights=[1, 3, 10, 1, 2, 2, 1],
        )[0]
        if s.session_state in (SessionState.NONE, SessionState.REVOKED) and rng.random() < 0.5:
            op = "create"
        elif s.session_state is not SessionState.ACTIVE and rng.random() < 0.3:
            op = "register"
        try:
            if op == "create" or (op == "register" and s.session is None):
                await s.create_session(rng.choice([600, 4000, 20000]))
            elif op == "register":
                assert s.session is not None
                max_calls = rng.randint(1, 6)
                self.keys[s.session.public_key] = max_calls
                await s.register_session(max_calls=max_calls)
            elif op == "execute":
                await self.execute_batch()
            elif op == "revoke":
                await s.revoke_session()
            elif op == "refetch":
                await s.refetch_status()
            elif op == "tick":
                self.world.clock.advance(rng.randint(1, 120))
            else:
                self.world.clock.advance(PAST_WINDOW)
        except ChipiSessionError as exc:
            self.note(exc)
            if op in ("register", "revoke") and exc.code is ErrorCode.UNKNOWN_OUTCOME:
                self.owner_unknown += exc.applied is None
        await quiesce()

    def executed_on_chain(self) -> int:
        wallet = self.world.wallet.address
        return sum(self.world.chain.is_outside_nonce_used(wallet, n) for n in self.doubt_nonces)

    async def check(self, *, final: bool = False) -> None:
        """Faults off, let every window pass, then compare with the chain."""
        world, fb, s = self.world, self.fb, self.s
        rates = fb.rates
        fb.rates = FaultRates()
        fb.clear()
        world.clock.advance(PAST_WINDOW)
        await settle()
        await eventually(lambda: not s.in_doubt)
        accepted = world.balance(RECIPIENT)
        # money: each executed transfer moved 1 unit exactly once, and the engine's account
        assert accepted == fb.applied[EXECUTE]
        assert accepted == self.ok + self.applied + self.executed_on_chain()
        assert self.ok + self.applied <= accepted <= self.ok + self.applied + self.unknown
        assert world.balance(world.wallet.address) == 1_000_000 - accepted
        # the budget: never over-spent, never even a request the chain refused for it
        for pub, _ in self.keys.items():
            status = chain_status(world, pub)
            assert status.calls_used <= status.max_calls
        # A register left in doubt may change the budget unseen; the engine re-reads the
        # status then, but if that read fails too, an execute may still go out against it.
        if not self.owner_unknown:
            assert fb.rejected[(EXECUTE, ErrorCode.SESSION_MAX_CALLS_EXCEEDED.value)] == 0
        if s.session is not None:
            await s.refetch_status()
            await quiesce()  # let the status re-checks and timers it triggers run
            assert s.session_state is chain_state(world, s), (s.session_state, self.codes)
            status = chain_status(world, s.session.public_key)
            if status.exists:
                assert s.session_status == status
        assert_idle(s)
        if not final:
            fb.rates = rates


@pytest.mark.parametrize("seed", [7])
async def test_soak_random_faults(world: World, seed: int) -> None:
    rates = FaultRates(
        error_before_send=0.08,
        timeout_after_send=0.06,
        drop_response=0.06,
        lost_request=0.05,
        restart=0.02,
        max_checkpoints=4,
    )
    fb = faulty(world, seed=seed, rates=rates, restart_down_calls=2)
    async with world.session(backend=fb, auto_check_status=True, status_interval=30) as s:
        soak = Soak(world, fb, s, seed)
        for i in range(300):
            await soak.step()
            if i % 75 == 74:
                await soak.check()
        await soak.check(final=True)
    assert fb.count() > 20
    for kind in FAULT_KINDS:
        assert fb.count(kind) > 0, kind
    assert soak.ok > 10
