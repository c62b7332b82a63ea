"""What an effect handler may use of its session: the one interface between the two.

``ChipiSession`` (``engine.py``) is a facade; the work its actions and timers ask for lives in
``handlers/`` (docs/architecture.md, "The engine's parts"). A handler never reads a private
attribute of the session: it is handed a :class:`SessionContext` — the facade itself, which
implements these methods as package-internal (documented here, not part of the user API) —
and calls only what is declared below. The session's state and its rules are the core's
(``context.core``, a :class:`~chipi_session.session_core.SessionCore`); a handler changes them
only through the core's inputs and the facade's effects listed here.

Handlers that need more than the shared part declare it as a Protocol extending
:class:`SessionContext` (below, so every handler interface is in one place).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import anyio
    import anyio.abc

    from ..backends.base import OnSubmit, SessionReader
    from ..clock import Clock
    from ..errors import ChipiSessionError
    from ..events import Event
    from ..journal import ActionJournal
    from ..keys import SecretKey
    from ..logs import LogContext
    from ..scheduling import TimerHeap
    from ..session_core import SessionCore
    from ..types import (
        ExpiryReason,
        SessionKeyData,
        SessionStatus,
        SpendingPolicy,
        WalletData,
    )
    from .policies import SpendingPolicies
    from .registration import OwnerWrites
    from .renewal import Renewer
    from .session_keys import SessionKeys

__all__ = [
    "ActionContext",
    "CreationContext",
    "DoubtContext",
    "ExpiryContext",
    "OwnerSend",
    "OwnerWriteContext",
    "PublisherContext",
    "PollingContext",
    "RegistrationContext",
    "SessionContext",
    "TransitionContext",
]

#: ``send(owner_key, bearer_token, on_submit)``: one owner-signed write through the backend
OwnerSend = Callable[["SecretKey", "str | None", "OnSubmit"], Awaitable[str]]


class ActionContext(Protocol):
    """What the action runner needs of its session (``handlers.actions``; implemented by
    ``ChipiSession``). Not a :class:`SessionContext`: the runner sits below every handler
    and only starts tasks, logs and publishes."""

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """The scheduler's task group while this session may start work (its scheduler
        running, the session not closed); None otherwise."""
        ...

    @property
    def started(self) -> bool:
        """The session was entered (``async with``) or started by its hub."""
        ...

    @property
    def log_context(self) -> LogContext:
        """What this session's log records carry (docs/observability.md, "Logging")."""
        ...

    def publish(self, cls: type[Event], **fields: Any) -> None:
        """Publish an event (stamped with the clock and this session's key by default)."""
        ...


class ExpiryContext(Protocol):
    """What the expiry timer needs of its session (``handlers.timers``; implemented by
    ``ChipiSession``): the timer holds the session and nothing else of it."""

    @property
    def clock(self) -> Clock: ...

    def expiry_deadline(self) -> float | None:
        """The core's bound (``SessionCore.expiry_bound``): the last instant the session
        signs, or None when nothing can expire by time."""
        ...

    def expire_by_time(self) -> None:
        """The deadline passed: expire the session (``ExpiryReason.TIME``)."""
        ...

    def reschedule(self) -> None:
        """The deadline may have moved: re-arm the expiry and renewal timers."""
        ...


class PublisherContext(Protocol):
    """What the event fan-out needs of its session (``handlers.publishing.Publisher``;
    implemented by ``ChipiSession``): the clock events are stamped with and the current
    session key."""

    @property
    def clock(self) -> Clock: ...

    @property
    def session(self) -> SessionKeyData | None: ...


class OwnerWriteContext(Protocol):
    """What owner-signed writes need of their session (``handlers.registration.OwnerWrites``;
    implemented by ``ChipiSession``): the secrets of one write (``keys``) and the journalled
    send."""

    @property
    def keys(self) -> SessionKeys:
        """The local session key (decrypted once per session), and per write the owner key
        (the caller zeroes it) and the bearer token (``handlers.session_keys``)."""
        ...

    async def write(
        self, action: str, public_key: int, send: Callable[[OnSubmit], Awaitable[str]]
    ) -> str:
        """One write through the journalled write path (``handlers.writes``)."""
        ...


class SessionContext(Protocol):
    """The part of a session every handler may use (implemented by ``ChipiSession``)."""

    @property
    def core(self) -> SessionCore:
        """The session's state and every rule that changes it (pure)."""
        ...

    @property
    def wallet(self) -> WalletData: ...

    @property
    def backend(self) -> SessionReader: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def session(self) -> SessionKeyData | None:
        """The local session key's public data (None: no session)."""
        ...

    @property
    def closed(self) -> bool: ...

    def require_supported(self) -> None:
        """Raise ``INVALID_WALLET_TYPE_FOR_SESSION`` unless the wallet supports sessions."""
        ...

    def require_session(self) -> SessionKeyData:
        """The local session, or ``NO_SESSION``."""
        ...

    def publish(self, cls: type[Event], **fields: Any) -> None:
        """Publish an event (stamped with the clock and this session's key by default)."""
        ...

    def transition(self, trigger: str, *, reason: str | None = None, **kwargs: Any) -> None:
        """Fire a lifecycle trigger on the core, publish the change, re-arm the timers."""
        ...

    def persist(self) -> None:
        """Save the session's record in the background (under a hub with a store)."""
        ...

    def spawn(self, coro: Awaitable[Any], action: str | None = None) -> None:
        """Run ``coro`` in the background (its log records carry ``action``)."""
        ...

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        """Keep ``error`` in ``session.error`` and publish ``ActionFailed``."""
        ...

    @property
    def owner_writes(self) -> OwnerWrites:
        """This session's owner-signed writes: ``guard()``, the lock they hold one at a time,
        and ``write(...)``: bearer token, owner key decrypted for this write only,
        journalled; raises ``AppliedHashLost`` if it executed but its hash was lost."""
        ...


class RenewalContext(SessionContext, Protocol):
    """What auto-renewal needs beyond :class:`SessionContext` (``handlers.renewal``)."""

    @property
    def journal(self) -> ActionJournal | None:
        """The write-ahead journal (a hub's); None for a standalone session."""
        ...

    @property
    def timers(self) -> TimerHeap | None:
        """The scheduler's timer heap; None once closing (or not started)."""
        ...

    @property
    def policies(self) -> SpendingPolicies:
        """The caps a successor inherits, and the write that sets them."""
        ...

    async def new_session_key(self, duration: int) -> tuple[SessionKeyData, SecretKey]:
        """A new key valid ``duration`` seconds from now, encrypted and persisted."""
        ...

    def switch_session(
        self, data: SessionKeyData, key: SecretKey | None, *, reset_windows: bool = False
    ) -> SecretKey | None:
        """Make ``data`` the local session; returns the replaced decrypted key."""
        ...

    def new_generation(self) -> None:
        """The key is being replaced: what the old one had in flight is not ours."""
        ...

    def apply_status(self, status: SessionStatus) -> None:
        """Apply a status read from the chain (publish, reconcile)."""
        ...

    def reschedule(self) -> None:
        """The deadlines may have moved: re-arm the expiry and renewal timers."""
        ...


class ExecuteContext(SessionContext, Protocol):
    """What the execute path needs beyond :class:`SessionContext` (``handlers.execute``)."""

    @property
    def policies(self) -> SpendingPolicies:
        """The caps the pre-flight checks and an accepted execute spends."""
        ...

    @property
    def renewer(self) -> Renewer:
        """Auto-renewal: started by calls, waited for, told when a retiring key's execute ends."""
        ...

    @property
    def keys(self) -> SessionKeys:
        """The local session key (decrypted once per session), and per write the owner key
        (the caller zeroes it) and the bearer token (``handlers.session_keys``)."""
        ...

    async def write(
        self, action: str, public_key: int, send: Callable[[OnSubmit], Awaitable[str]]
    ) -> str:
        """Send one write, journalled; an unknown outcome is resolved or held in doubt."""
        ...

    def expire(self, reason: ExpiryReason) -> None:
        """Expire the session (if it can) for ``reason``."""
        ...

    def check_exhausted(self) -> None:
        """Expire the session (reason ``calls``) if its budget is used up."""
        ...

    async def refetch_quietly(self) -> None:
        """Read the status once and apply it; a failure is kept in ``error``, not raised."""
        ...

    def spawn_scoped(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the background, cancelled when the session closes; False
        if the session can no longer start tasks."""
        ...

    def set_error(self, error: ChipiSessionError) -> None:
        """Keep ``error`` in ``session.error`` (nothing published)."""
        ...

    async def get_spending_policy(self, token: int | str) -> SpendingPolicy | None:
        """Re-read one cap from the chain (the public action)."""
        ...


class RegistrationContext(SessionContext, Protocol):
    """What registering and revoking need beyond :class:`SessionContext`
    (``handlers.registration``)."""

    def check_exhausted(self) -> None:
        """Expire the session (reason ``calls``) if its budget is used up."""
        ...

    @property
    def keys(self) -> SessionKeys:
        """The local session key (decrypted once per session), and per write the owner key
        (the caller zeroes it) and the bearer token (``handlers.session_keys``)."""
        ...

    def cancel_renewal(self) -> None:
        """Disarm auto-renewal's timer (a revoked session is not renewed)."""
        ...


class CreationContext(SessionContext, Protocol):
    """What creating a session key needs beyond :class:`SessionContext`
    (``handlers.registration.create``)."""

    async def new_session_key(self, duration: int) -> tuple[SessionKeyData, SecretKey]:
        """A new key valid ``duration`` seconds from now, encrypted and persisted
        (``on_session_created``)."""
        ...

    def new_generation(self) -> None:
        """The key is being replaced: what the old one had in flight is not ours."""
        ...

    def adopt_session(self, data: SessionKeyData, key: SecretKey) -> None:
        """Make ``data`` (with its decrypted ``key``) the local session, its caps unknown."""
        ...


class DoubtContext(SessionContext, Protocol):
    """What holding and settling in-doubt writes needs beyond :class:`SessionContext`
    (``handlers.doubts``)."""

    @property
    def journal(self) -> ActionJournal | None:
        """The write-ahead journal (a hub's); None for a standalone session."""
        ...

    @property
    def timers(self) -> TimerHeap | None:
        """The scheduler's timer heap; None once closing (or not started)."""
        ...

    @property
    def status_interval(self) -> float:
        """How long an undecided write waits before it is re-checked."""
        ...

    async def refetch_quietly(self) -> None:
        """Read the status once and apply it; a failure is kept in ``error``, not raised."""
        ...


class TransitionContext(DoubtContext, Protocol):
    """What a state change and a status applied need beyond :class:`DoubtContext`
    (``handlers.transitions``; re-checking in-doubt writes is ``handlers.doubts``')."""

    @property
    def renewer(self) -> Renewer:
        """Auto-renewal: its call threshold is checked when a status shows the key active."""
        ...

    def reschedule(self) -> None:
        """The deadlines may have moved: re-arm the expiry and renewal timers."""
        ...


class PollingContext(SessionContext, Protocol):
    """What the status poller's side needs beyond :class:`SessionContext`
    (``handlers.polling``)."""

    @property
    def is_loading_status(self) -> bool:
        """An explicit status read is running (the poll sits this round out)."""
        ...

    def apply_status(self, status: SessionStatus) -> None:
        """Apply a fresh status: publish ``StatusRefreshed``, reconcile the state, re-check
        in-doubt writes."""
        ...

    @property
    def log_context(self) -> LogContext:
        """What this session's log records carry: work started by a shared task (the
        poller) runs under ``logs.action(log_context, ...)``."""
        ...


if TYPE_CHECKING:
    from ..engine import ChipiSession

    def _implemented_by(
        session: ChipiSession,
    ) -> tuple[
        ActionContext,
        RenewalContext,
        ExecuteContext,
        RegistrationContext,
        CreationContext,
        DoubtContext,
        TransitionContext,
        PollingContext,
    ]:
        """Never run: mypy checks here that ``ChipiSession`` implements every context (the
        handlers receive it through ``_action``'s untyped arguments)."""
        return session, session, session, session, session, session, session, session
