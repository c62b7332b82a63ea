"""handlers/polling.py: the session's side of the scheduler's batched status poller.

``StatusPolling`` is driven directly over a recording context with a real ``SessionCore``
(what to read, when a result is fresh, what a failure does), then through a real hub's poller
on a manual clock (registered on start only with ``auto_check_status``, removed on close).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import attrs
import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionHub, StatusRefreshed
from chipi_session import logs as chipi_logs
from chipi_session.events import Event
from chipi_session.handlers.context import PollingContext
from chipi_session.handlers.polling import POLL_ACTION, StatusPolling
from chipi_session.logs import LogContext
from chipi_session.session_core import SessionCore
from chipi_session.types import SessionKeyData, SessionStatus, WalletData

from .helpers import PIN, World, settle

pytestmark = pytest.mark.anyio


@attrs.define
class Recorder:
    """The part of ``PollingContext`` that ``StatusPolling`` uses, recording what it does."""

    wallet: WalletData
    session: SessionKeyData | None
    core: SessionCore = attrs.Factory(SessionCore)
    closed: bool = False
    is_loading_status: bool = False
    applied: list[SessionStatus] = attrs.Factory(list)
    failures: list[tuple[str, ChipiSessionError]] = attrs.Factory(list)
    #: the log action current at each apply / failure recorded (the poll's own context)
    actions: list[str | None] = attrs.Factory(list)
    log_context: LogContext = attrs.Factory(lambda: LogContext(slot="polled"))

    def apply_status(self, status: SessionStatus) -> None:
        self._note_action()
        self.applied.append(status)

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        self._note_action()
        self.failures.append((action, error))

    def _note_action(self) -> None:
        current = chipi_logs.current()
        assert current is not None and current.slot == "polled"  # this session's context
        self.actions.append(current.action)


async def setup(world: World) -> tuple[Recorder, StatusPolling, SessionStatus]:
    key = await world.register_key(max_calls=5)
    status = await world.chain.get_session_status(world.wallet.address, key.public_key)
    recorder = Recorder(world.wallet, key)
    return recorder, StatusPolling(cast(PollingContext, recorder)), status


# ------------------------------------------------------------------ what to read
async def test_the_target_is_the_wallet_and_the_current_key(world: World) -> None:
    recorder, polling, _ = await setup(world)
    assert recorder.session is not None
    assert polling.poll_target() == (world.wallet.address, recorder.session.public_key)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"session": None}, id="no session"),
        pytest.param({"closed": True}, id="closed"),
        pytest.param({"is_loading_status": True}, id="an explicit read is running"),
    ],
)
async def test_no_target_this_round(world: World, change: dict[str, Any]) -> None:
    recorder, polling, _ = await setup(world)
    recorder = attrs.evolve(recorder, **change)
    assert StatusPolling(cast(PollingContext, recorder)).poll_target() is None
    assert polling.poll_target() is not None  # the unchanged one still reads


# ------------------------------------------------------------ applying a result
async def test_a_fresh_result_is_applied_in_the_polls_log_context(world: World) -> None:
    recorder, polling, status = await setup(world)
    polling.poll_target()
    polling.poll_result(status)
    assert recorder.applied == [status]
    assert recorder.actions == [POLL_ACTION]


async def test_a_result_overlapping_a_local_write_is_dropped(world: World) -> None:
    recorder, polling, status = await setup(world)
    assert recorder.session is not None
    polling.poll_target()
    recorder.core.begin_write(recorder.session.public_key)  # a write went out meanwhile
    polling.poll_result(status)
    recorder.core.end_write(recorder.session.public_key)
    polling.poll_result(status)  # still older than the write: dropped too
    assert recorder.applied == []
    polling.poll_target()  # the next round reads again, after the write
    polling.poll_result(status)
    assert recorder.applied == [status]


async def test_a_result_for_a_replaced_key_is_dropped(world: World) -> None:
    recorder, polling, status = await setup(world)
    polling.poll_target()
    recorder.core.new_generation()
    recorder.session = await world.register_key()
    polling.poll_result(status)
    assert recorder.applied == []


async def test_a_result_is_dropped_once_closed_or_without_a_session(world: World) -> None:
    recorder, polling, status = await setup(world)
    polling.poll_target()
    recorder.closed = True
    polling.poll_result(status)
    recorder.closed, recorder.session = False, None
    polling.poll_result(status)
    assert recorder.applied == []


async def test_a_result_that_is_not_a_status_is_dropped(world: World) -> None:
    recorder, polling, _ = await setup(world)
    polling.poll_target()
    polling.poll_result(None)
    polling.poll_result({"max_calls": 5})
    assert recorder.applied == []


async def test_a_result_without_a_target_is_dropped(world: World) -> None:
    recorder, polling, status = await setup(world)
    polling.poll_result(status)  # no target taken yet: version -1 is never fresh
    assert recorder.applied == []


# --------------------------------------------------------------------- failures
async def test_a_failed_read_is_the_sessions_refetch_error(world: World) -> None:
    recorder, polling, _ = await setup(world)
    error = ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "connection reset", retryable=True)
    polling.poll_target()
    polling.poll_failed(error)
    assert recorder.failures == [("refetch_status", error)]
    assert recorder.actions == [POLL_ACTION]


async def test_another_exception_is_logged_not_recorded(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    recorder, polling, _ = await setup(world)
    with caplog.at_level(logging.WARNING, logger="chipi_session.engine"):
        polling.poll_failed(KeyError("secret-ish detail"))
    assert recorder.failures == []
    assert [r.getMessage() for r in caplog.records] == ["status poll failed: KeyError"]


# --------------------------------------------- wired to a real poller (a hub's)
async def test_a_hub_polls_a_session_until_it_is_closed(world: World) -> None:
    seen: list[Event] = []
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, status_interval=10
    ) as hub:
        poller = hub.scheduler.poller
        session = await hub.open(wallet=world.wallet, encrypt_key=PIN)
        quiet = await hub.open(wallet=world.wallet, encrypt_key=PIN, auto_check_status=False)
        for s in (session, quiet):
            await s.create_session(3600)
            await s.register_session(max_calls=5)
        await settle()
        session.add_listener(seen.append)
        world.clock.advance(10)
        await settle()
        assert poller.reads == 1  # the quiet one is not polled
        assert [type(e) for e in seen] == [StatusRefreshed]
        await hub.close(session)
        world.clock.advance(10)
        await settle()
        assert poller.reads == 1
        await hub.close(quiet)


async def test_a_standalone_session_polls_on_its_own_scheduler(world: World) -> None:
    seen: list[Event] = []
    async with world.session(auto_check_status=True, status_interval=5) as session:
        await session.create_session(3600)
        await session.register_session(max_calls=5)
        await settle()
        session.add_listener(seen.append)
        world.clock.advance(4.9)
        await settle()
        assert seen == []  # not due yet
        world.clock.advance(0.1)
        await settle()
        refreshed = [e for e in seen if isinstance(e, StatusRefreshed)]
        assert len(refreshed) == 1
        assert refreshed[0].status.max_calls == 5  # type: ignore[attr-defined]
