"""``BlockingChipiSession``: the engine from synchronous code (game loops, scripts).

The event loop runs on a background thread (an anyio blocking portal); actions block the
calling thread, or :meth:`submit` returns a ``concurrent.futures.Future`` so a frame never waits
on the network. :meth:`poll_events` hands over everything published since the last poll.
"""

from __future__ import annotations

import collections
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .engine import ChipiSession
from .errors import ChipiSessionError, ErrorCode
from .events import Event
from .types import (
    Call,
    ExecutionResult,
    SessionKeyData,
    SessionState,
    SessionStatus,
    SpendingPolicy,
)
from .validate import describe

__all__ = ["BlockingChipiSession"]

T = TypeVar("T")

_ACTIONS = frozenset(
    {
        "create_session",
        "register_session",
        "execute_with_session",
        "revoke_session",
        "refetch_status",
        "set_spending_policy",
        "get_spending_policy",
        "remove_spending_policy",
    }
)


#: The event loops anyio can run the engine on.
_LOOPS = ("asyncio", "trio")
_UNSET: Any = object()


def _new_session(kwargs: dict[str, Any]) -> ChipiSession:
    try:
        return ChipiSession(**kwargs)
    except TypeError as exc:  # an unknown or missing keyword argument
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"BlockingChipiSession: {exc}") from None


class BlockingChipiSession:
    """Same constructor and actions as :class:`ChipiSession`, blocking.

    ``async_backend`` picks the event loop the engine runs on (``"asyncio"`` or ``"trio"``);
    ``backend=``, as everywhere, is the session backend (the chain). ``backend_name`` is the
    deprecated spelling of ``async_backend``. Use as a context manager
    (``with BlockingChipiSession(...) as session:``).
    """

    def __init__(
        self, *, async_backend: str = "asyncio", backend_name: object = _UNSET, **kwargs: Any
    ) -> None:
        what = "async_backend"
        if backend_name is not _UNSET:
            warnings.warn(
                "BlockingChipiSession(backend_name=...) is deprecated; use async_backend=",
                DeprecationWarning,
                stacklevel=2,
            )
            async_backend, what = backend_name, "backend_name"  # type: ignore[assignment]
        if async_backend not in _LOOPS:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"{what} must be one of {', '.join(_LOOPS)}, got {describe(async_backend)}",
            )
        # built now so that bad arguments fail here, not when the block is entered
        self._fresh: ChipiSession | None = _new_session(kwargs)
        self._kwargs = kwargs
        self._async_backend = async_backend
        self._stack: ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._session: ChipiSession | None = None
        self._events: collections.deque[Event] = collections.deque()
        self._events_lock = threading.Lock()

    # ----------------------------------------------------------------- context
    def __enter__(self) -> BlockingChipiSession:
        stack = ExitStack()
        try:
            portal = stack.enter_context(start_blocking_portal(self._async_backend))
            session, self._fresh = self._fresh or _new_session(self._kwargs), None
            session.add_listener(self._on_event)
            cm: AbstractContextManager[ChipiSession] = portal.wrap_async_context_manager(session)
            stack.enter_context(cm)
        except BaseException:
            stack.close()
            raise
        self._stack, self._portal, self._session = stack, portal, session
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._portal = None
        self._session = None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        self.__exit__(None, None, None)

    def _on_event(self, event: Event) -> None:
        with self._events_lock:
            self._events.append(event)

    @property
    def portal(self) -> BlockingPortal:
        """The loop thread's portal, e.g. ``session.portal.call(clock.advance, 5)``."""
        if self._portal is None:
            raise ChipiSessionError(ErrorCode.CLOSED, "use BlockingChipiSession as 'with' block")
        return self._portal

    @property
    def async_session(self) -> ChipiSession:
        if self._session is None:
            raise ChipiSessionError(ErrorCode.CLOSED, "use BlockingChipiSession as 'with' block")
        return self._session

    # ------------------------------------------------------------------ events
    def poll_events(self) -> list[Event]:
        """Every event since the last poll, oldest first; never blocks (call once a frame)."""
        with self._events_lock:
            out = list(self._events)
            self._events.clear()
        return out

    def add_listener(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Called on the loop thread; keep it short and thread-safe."""
        return self.async_session.add_listener(callback)

    # ----------------------------------------------------------------- actions
    def _call(self, name: str, *args: Any) -> Any:
        return self.portal.call(getattr(self.async_session, name), *args)

    def submit(self, action_name: str, *args: Any) -> Future[Any]:
        """Start an action without waiting; the Future holds its result or error."""
        if action_name not in _ACTIONS:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"unknown action {action_name!r}")
        return self.portal.start_task_soon(getattr(self.async_session, action_name), *args)

    def create_session(self, duration_seconds: int | None = None) -> SessionKeyData:
        return self._call("create_session", duration_seconds)  # type: ignore[no-any-return]

    def register_session(
        self,
        max_calls: int | None = None,
        allowed_entrypoints: Iterable[int | str] | None = None,
        valid_until: int | None = None,
    ) -> str:
        return self._call(  # type: ignore[no-any-return]
            "register_session", max_calls, allowed_entrypoints, valid_until
        )

    def execute_with_session(
        self, calls: Call | Mapping[str, Any] | Iterable[Call | Mapping[str, Any]]
    ) -> str:
        return self._call("execute_with_session", calls)  # type: ignore[no-any-return]

    def execute_and_wait(
        self, calls: Call | Mapping[str, Any] | Iterable[Call | Mapping[str, Any]]
    ) -> ExecutionResult:
        """``execute_with_session(calls, wait=True)``: the result read from the chain, or
        ``CALL_FAILED`` (docs/execution-results.md)."""
        session = self.async_session

        async def run() -> ExecutionResult:
            return await session.execute_with_session(calls, wait=True)

        return self.portal.call(run)

    def revoke_session(self) -> str:
        return self._call("revoke_session")  # type: ignore[no-any-return]

    def clear_session(self) -> None:
        self.portal.call(self.async_session.clear_session)

    def refetch_status(self) -> SessionStatus | None:
        return self._call("refetch_status")  # type: ignore[no-any-return]

    def set_spending_policy(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        return self._call(  # type: ignore[no-any-return]
            "set_spending_policy", token, max_per_call, max_per_window, window_seconds
        )

    def get_spending_policy(self, token: int | str) -> SpendingPolicy | None:
        return self._call("get_spending_policy", token)  # type: ignore[no-any-return]

    def remove_spending_policy(self, token: int | str) -> str:
        return self._call("remove_spending_policy", token)  # type: ignore[no-any-return]

    # -------------------------------------------------------------- properties
    def _read(self, name: str) -> Any:
        return self.portal.call(getattr, self.async_session, name)

    @property
    def session(self) -> SessionKeyData | None:
        return self._read("session")  # type: ignore[no-any-return]

    @property
    def session_status(self) -> SessionStatus | None:
        return self._read("session_status")  # type: ignore[no-any-return]

    @property
    def session_state(self) -> SessionState:
        return self._read("session_state")  # type: ignore[no-any-return]

    @property
    def state_reason(self) -> str:
        return self._read("state_reason")  # type: ignore[no-any-return]

    @property
    def has_active_session(self) -> bool:
        return self._read("has_active_session")  # type: ignore[no-any-return]

    @property
    def is_session_expired(self) -> bool:
        return self._read("is_session_expired")  # type: ignore[no-any-return]

    @property
    def remaining_calls(self) -> int | None:
        return self._read("remaining_calls")  # type: ignore[no-any-return]

    @property
    def supports_session(self) -> bool:
        return self.async_session.supports_session

    @property
    def is_creating(self) -> bool:
        return self.async_session.is_creating

    @property
    def is_registering(self) -> bool:
        return self.async_session.is_registering

    @property
    def is_revoking(self) -> bool:
        return self.async_session.is_revoking

    @property
    def is_executing(self) -> bool:
        return self.async_session.is_executing

    @property
    def is_loading_status(self) -> bool:
        return self.async_session.is_loading_status

    @property
    def error(self) -> ChipiSessionError | None:
        return self.async_session.error

    def __repr__(self) -> str:
        return f"BlockingChipiSession({self._session!r})"
