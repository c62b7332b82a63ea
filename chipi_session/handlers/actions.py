"""The action runner: every public action of a session runs here, and its background tasks.

Moved out of ``engine.py`` (docs/architecture.md, "The engine's parts"; the rules:
docs/engine.md, "Actions"). An action runs as a task of the scheduler's task group and the
caller waits for it: cancelling the caller cancels the effect, closing the session cancels
it and the caller gets ``CLOSED``. While it runs its kind is pending (``is_executing`` and
the like); a failure is kept in :attr:`ActionRunner.error` and published as
:class:`~chipi_session.events.ActionFailed`; a success clears the error (a status read
leaves it). Its log records, and its tasks', carry the session and the action
(docs/observability.md, "Logging").

The runner holds no session state but the pending counts, the last error and the cancel
scopes of what it started; it is handed an :class:`~.context.ActionContext` (the facade).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.abc
import attrs

from .. import logs
from ..errors import ChipiSessionError, ErrorCode
from ..events import ActionFailed
from ..logs import get_logger

if TYPE_CHECKING:
    from .context import ActionContext

__all__ = ["ActionKind", "ActionRunner"]

#: failed actions and failed background tasks keep the engine's logger, as before the move
#: (docs/observability.md, "Loggers and levels")
log = get_logger("chipi_session.engine")
T = TypeVar("T")

#: what an action is counted as while it runs (``ChipiSession.is_creating`` and the like)
ActionKind = Literal["create", "register", "revoke", "execute", "status", "policy"]
#: each kind's index in the runner's pending counts
_KIND_INDEX: dict[ActionKind, int] = {
    "create": 0,
    "register": 1,
    "revoke": 2,
    "execute": 3,
    "status": 4,
    "policy": 5,
}


@attrs.define
class _Box:
    value: Any = None
    error: ChipiSessionError | None = None
    cancelled: bool = False


class ActionRunner:
    """One session's actions and background tasks (see the module docstring)."""

    __slots__ = ("_context", "_pending", "_scopes", "error")

    def __init__(self, context: ActionContext) -> None:
        self._context = context
        #: actions running, by kind (``_KIND_INDEX``); made by the first action (a session
        #: that never acts carries no counts: memory per hub session)
        self._pending: list[int] | None = None
        self._scopes: set[anyio.CancelScope] | None = None
        #: the last action's failure (None after a success; a status read leaves it)
        self.error: ChipiSessionError | None = None

    def pending(self, kind: ActionKind) -> bool:
        """Is an action of ``kind`` running?"""
        pending = self._pending
        return pending is not None and pending[_KIND_INDEX[kind]] > 0

    def cancel(self) -> None:
        """Cancel every action and scoped background task still running (the session
        closes: their callers get ``CLOSED``)."""
        if self._scopes:
            for scope in list(self._scopes):
                scope.cancel()

    # ------------------------------------------------------------------ actions
    async def run(
        self, action: str, kind: ActionKind, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Run ``fn(*args)`` as a task of the scheduler's task group and wait for it; its
        records (and its tasks') carry this session and ``action``."""
        with logs.action(self._context.log_context, action):
            return await self._run(action, kind, fn, *args)

    async def _run(
        self, action: str, kind: ActionKind, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Cancelling the caller cancels the effect; closing the session cancels it and the
        caller gets ``CLOSED``. Failures are kept in ``error`` and published."""
        context = self._context
        task_group = context.task_group
        if task_group is None or not context.started:
            raise ChipiSessionError(
                ErrorCode.CLOSED, "use the session inside 'async with ChipiSession(...)'"
            )
        box = _Box()
        done = anyio.Event()
        if self._scopes is None:
            self._scopes = set()
        scopes = self._scopes
        if self._pending is None:
            self._pending = [0] * len(_KIND_INDEX)
        pending, index = self._pending, _KIND_INDEX[kind]

        async def runner(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                scopes.add(scope)
                task_status.started(scope)
                pending[index] += 1
                try:
                    box.value = await fn(*args)
                except anyio.get_cancelled_exc_class():
                    box.cancelled = True
                    raise
                except ChipiSessionError as exc:
                    box.error = exc
                except Exception as exc:  # a bug or an unexpected backend failure
                    log.exception("%s failed unexpectedly", action)
                    box.error = ChipiSessionError(
                        ErrorCode.BACKEND_UNAVAILABLE,
                        f"{action} failed: {type(exc).__name__}",
                        retryable=False,
                    )
                finally:
                    pending[index] -= 1
                    scopes.discard(scope)
                    done.set()
            if scope.cancelled_caught:
                box.cancelled = True

        scope: anyio.CancelScope = await task_group.start(runner)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await done.wait()
            raise
        if box.cancelled:
            err = ChipiSessionError(ErrorCode.CLOSED, f"{action} cancelled: the session closed")
            self.record_failure(action, err)
            raise err
        if box.error is not None:
            self.record_failure(action, box.error)
            raise box.error
        if action != "refetch_status":
            self.error = None
        return box.value  # type: ignore[no-any-return]

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        """Keep ``error`` in ``error`` and publish ``ActionFailed``."""
        self.error = error
        log.info("%s failed: %s", action, error.code.value)
        self._context.publish(ActionFailed, action=action, error=error)

    # --------------------------------------------------------- background tasks
    def spawn(self, coro: Awaitable[Any], action: str | None = None) -> None:
        """Run ``coro`` in the background; its records carry this session and ``action``
        (by default the action it was spawned in, else ``background``). A session that can
        no longer start tasks closes ``coro`` unstarted."""
        context = self._context
        task_group = context.task_group
        if task_group is None:
            close = getattr(coro, "close", None)
            if close is not None:
                close()
            return
        base = context.log_context

        async def run() -> None:
            if action is None:
                scope = logs.adopt(base, "background")
            else:
                scope = logs.action(base, action)
            try:
                with scope:
                    await coro
            except ChipiSessionError:
                pass
            except Exception:
                log.exception("background task failed")

        task_group.start_soon(run)

    def spawn_scoped(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the background under a cancel scope of this session, so
        closing the session cancels it (a hub's task group outlives its sessions); False if
        the session can no longer start tasks."""
        context = self._context
        task_group = context.task_group
        if task_group is None:
            return False
        if self._scopes is None:
            self._scopes = set()
        scopes = self._scopes
        base = context.log_context

        async def run() -> None:
            with anyio.CancelScope() as scope, logs.adopt(base, "background"):
                scopes.add(scope)
                try:
                    await fn(*args)
                except ChipiSessionError:
                    pass
                except Exception:
                    log.exception("background task failed")
                finally:
                    scopes.discard(scope)

        task_group.start_soon(run)
        return True
