"""handlers/actions.py: the action runner (pending counts, the last error, ``ActionFailed``,
cancellation accounting) and the session's background tasks.

``ActionRunner`` is driven directly over a recording ``ActionContext`` with a real anyio task
group (both backends), then once through a real session (the facade delegates to it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest

from chipi_session import ActionFailed, ChipiSessionError, ErrorCode
from chipi_session import logs as chipi_logs
from chipi_session.events import Event
from chipi_session.handlers.actions import ActionRunner
from chipi_session.handlers.context import ActionContext
from chipi_session.logs import LogContext

from .helpers import World

pytestmark = pytest.mark.anyio


@attrs.define
class Host:
    """The ``ActionContext`` an ``ActionRunner`` uses, recording what it publishes."""

    task_group: anyio.abc.TaskGroup | None = None
    started: bool = True
    log_context: LogContext = attrs.Factory(lambda: LogContext(slot="host"))
    published: list[tuple[type[Event], dict[str, Any]]] = attrs.Factory(list)

    def publish(self, cls: type[Event], **fields: Any) -> None:
        self.published.append((cls, fields))


@asynccontextmanager
async def running() -> AsyncIterator[tuple[Host, ActionRunner]]:
    host = Host()
    context: ActionContext = host  # mypy: the recorder is an ActionContext
    async with anyio.create_task_group() as tg:
        host.task_group = tg
        yield host, ActionRunner(context)
        tg.cancel_scope.cancel()


def failed(host: Host) -> list[tuple[str, ErrorCode]]:
    return [(f["action"], f["error"].code) for cls, f in host.published if cls is ActionFailed]


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0)
    raise AssertionError("condition never became true")


# ------------------------------------------------------------------ run
async def test_an_action_is_pending_while_it_runs_and_its_value_is_returned() -> None:
    async with running() as (host, runner):
        gate = anyio.Event()
        seen: list[bool] = []

        async def fn(a: int, b: int) -> int:
            seen.append(runner.pending("execute"))
            await gate.wait()
            return a + b

        async with anyio.create_task_group() as tg:
            result: list[int] = []

            async def call() -> None:
                result.append(await runner.run("execute", "execute", fn, 2, 3))

            tg.start_soon(call)
            await wait_until(lambda: bool(seen))
            assert runner.pending("execute") and not runner.pending("status")
            gate.set()
        assert result == [5] and seen == [True]
        assert not runner.pending("execute")
        assert host.published == [] and runner.error is None


async def test_a_failure_is_kept_published_and_raised_then_a_success_clears_it() -> None:
    async with running() as (host, runner):
        error = ChipiSessionError(ErrorCode.NO_SESSION, "no session")

        async def fail() -> None:
            raise error

        async def ok() -> str:
            return "0x1"

        with pytest.raises(ChipiSessionError) as info:
            await runner.run("register", "register", fail)
        assert info.value is error and runner.error is error
        assert failed(host) == [("register", ErrorCode.NO_SESSION)]
        assert not runner.pending("register")
        # a status read leaves the last error; any other success clears it
        assert await runner.run("refetch_status", "status", ok) == "0x1"
        assert runner.error is error
        assert await runner.run("revoke", "revoke", ok) == "0x1"
        assert runner.error is None
        assert len(failed(host)) == 1


async def test_an_unexpected_exception_is_backend_unavailable_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as (host, runner):

        async def bug() -> None:
            raise KeyError("detail")

        with caplog.at_level(logging.INFO, logger="chipi_session.engine"):
            with pytest.raises(ChipiSessionError) as info:
                await runner.run("execute", "execute", bug)
        assert info.value.code is ErrorCode.BACKEND_UNAVAILABLE and not info.value.retryable
        assert info.value.message == "execute failed: KeyError"
        assert failed(host) == [("execute", ErrorCode.BACKEND_UNAVAILABLE)]
        messages = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (logging.ERROR, "execute failed unexpectedly") in messages
        assert (logging.INFO, "execute failed: BACKEND_UNAVAILABLE") in messages
        assert caplog.records[0].exc_info is not None  # the traceback is kept


@pytest.mark.parametrize("started", [False, True])
async def test_an_action_outside_a_running_session_is_closed_and_not_recorded(
    started: bool,
) -> None:
    host = Host(task_group=None, started=started)
    runner = ActionRunner(host)
    ran: list[int] = []

    async def fn() -> None:
        ran.append(1)

    with pytest.raises(ChipiSessionError) as info:
        await runner.run("create", "create", fn)
    assert info.value.code is ErrorCode.CLOSED
    assert ran == [] and host.published == [] and runner.error is None


async def test_an_unstarted_session_with_a_running_task_group_refuses_actions() -> None:
    async with running() as (host, runner):
        host.started = False
        with pytest.raises(ChipiSessionError) as info:
            await runner.run("create", "create", anyio.sleep, 0)
        assert info.value.code is ErrorCode.CLOSED and runner.error is None


async def test_closing_cancels_a_running_action_and_its_caller_gets_closed() -> None:
    async with running() as (host, runner):
        entered = anyio.Event()
        cancelled: list[bool] = []

        async def slow() -> None:
            entered.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise

        errors: list[ChipiSessionError] = []

        async def call() -> None:
            try:
                await runner.run("execute", "execute", slow)
            except ChipiSessionError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await entered.wait()
            runner.cancel()
        assert cancelled == [True]
        assert [e.code for e in errors] == [ErrorCode.CLOSED]
        assert errors[0].message == "execute cancelled: the session closed"
        assert runner.error is errors[0]
        assert failed(host) == [("execute", ErrorCode.CLOSED)]
        assert not runner.pending("execute")


async def test_cancelling_the_caller_cancels_the_effect_and_records_nothing() -> None:
    async with running() as (host, runner):
        entered = anyio.Event()
        effect: list[str] = []

        async def slow() -> None:
            entered.set()
            try:
                await anyio.sleep_forever()
            finally:
                effect.append("ended")

        with anyio.CancelScope() as caller:

            async def cancel_soon() -> None:
                await entered.wait()
                caller.cancel()

            assert host.task_group is not None
            host.task_group.start_soon(cancel_soon)
            await runner.run("execute", "execute", slow)
        assert caller.cancelled_caught
        assert effect == ["ended"]  # the caller waited for the effect to end
        assert not runner.pending("execute")
        assert host.published == [] and runner.error is None


async def test_an_action_runs_under_its_own_log_context() -> None:
    async with running() as (host, runner):

        async def where() -> tuple[str | None, str | None]:
            context = chipi_logs.current()
            assert context is not None
            return context.action, context.slot

        assert await runner.run("get_spending_policy", "policy", where) == (
            "get_spending_policy",
            "host",
        )


async def test_record_failure_keeps_and_publishes(caplog: pytest.LogCaptureFixture) -> None:
    host = Host()
    runner = ActionRunner(host)
    error = ChipiSessionError(ErrorCode.UNAUTHORIZED, "no token")
    with caplog.at_level(logging.INFO, logger="chipi_session.engine"):
        runner.record_failure("renew", error)
    assert runner.error is error
    assert host.published == [(ActionFailed, {"action": "renew", "error": error})]
    assert [r.getMessage() for r in caplog.records] == ["renew failed: UNAUTHORIZED"]


# ----------------------------------------------------------- background tasks
async def test_spawn_runs_in_the_background_under_the_named_or_adopted_action() -> None:
    async with running() as (host, runner):
        seen: list[str | None] = []

        async def note() -> None:
            context = chipi_logs.current()
            seen.append(None if context is None else context.action)

        runner.spawn(note(), "settle_doubt")
        runner.spawn(note())  # spawned outside any action: ``background``
        with chipi_logs.action(host.log_context, "execute"):
            runner.spawn(note())  # keeps the action it was spawned in
        await wait_until(lambda: len(seen) == 3)
        assert sorted(map(str, seen)) == ["background", "execute", "settle_doubt"]


async def test_spawn_swallows_a_session_error_and_logs_anything_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as (_, runner):
        done: list[str] = []

        async def raising(exc: Exception) -> None:
            done.append(type(exc).__name__)
            raise exc

        with caplog.at_level(logging.ERROR, logger="chipi_session.engine"):
            runner.spawn(raising(ChipiSessionError(ErrorCode.CLOSED, "closed")))
            runner.spawn(raising(ValueError("x")))
            await wait_until(lambda: len(done) == 2)
            await anyio.sleep(0)
        assert [r.getMessage() for r in caplog.records] == ["background task failed"]


async def test_spawn_without_a_task_group_closes_the_coroutine_unstarted() -> None:
    runner = ActionRunner(Host(task_group=None))
    ran: list[int] = []

    async def fn() -> None:
        ran.append(1)

    coro = fn()
    runner.spawn(coro)
    assert coro.cr_frame is None  # closed: never runs, no "never awaited" warning
    assert ran == []
    assert runner.spawn_scoped(fn) is False


async def test_closing_cancels_scoped_background_tasks_but_not_plain_ones() -> None:
    async with running() as (_, runner):
        started: list[str] = []
        ended: list[str] = []

        async def forever(name: str) -> None:
            started.append(name)
            try:
                await anyio.sleep_forever()
            finally:
                ended.append(name)

        async def short(gate: anyio.Event) -> None:
            started.append("plain")
            await gate.wait()
            ended.append("plain")

        gate = anyio.Event()
        assert runner.spawn_scoped(forever, "scoped")
        runner.spawn(short(gate))
        await wait_until(lambda: len(started) == 2)
        runner.cancel()
        await wait_until(lambda: ended == ["scoped"])
        gate.set()
        await wait_until(lambda: ended == ["scoped", "plain"])


async def test_a_real_session_delegates_its_actions_to_the_runner(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session()
        assert info.value.code is ErrorCode.NO_SESSION and s.error is info.value
        await s.create_session()
        assert s.error is None and not s.is_creating
    assert [(e.action, e.error.code) for e in seen if isinstance(e, ActionFailed)] == [
        ("register", ErrorCode.NO_SESSION)
    ]
    with pytest.raises(ChipiSessionError) as closed:
        await s.refetch_status()
    assert closed.value.code is ErrorCode.CLOSED
