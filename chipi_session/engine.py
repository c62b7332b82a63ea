"""``ChipiSession``: the headless ``useChipiSession`` (docs/engine.md, docs/architecture.md).

The session's state and every rule that changes it are pure (``session_core``, over the
``lifecycle`` table and ``policy``); the effects the core asks for are the handlers'
(``handlers/``: actions, state changes, events, keys, writes, in-doubt writes, policies,
renewal, timers, polling). This module is the facade: the public properties and actions, and
the package-internal members through which the handlers use the session
(``handlers/context.py``). Background work runs in a :class:`~chipi_session.scheduling.Scheduler`
(one timer heap, one poller, one task group): a standalone session owns a private one, a
``SessionHub`` shares one among thousands. Leaving ``async with`` (or closing the session)
cancels the session's actions; an action in flight is then reported as failed and the local
state is left as it was before it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

import anyio
import anyio.abc

from . import credentials, logs
from .backends.base import OnSubmit
from .clock import Clock
from .errors import ChipiSessionError, ErrorCode
from .events import Event
from .felts import to_hex
from .handlers import doubts, execute, registration, transitions, writes
from .handlers.actions import ActionRunner
from .handlers.policies import SpendingPolicies
from .handlers.polling import StatusPolling
from .handlers.publishing import Publisher
from .handlers.registration import OwnerWrites
from .handlers.renewal import Renewer
from .handlers.session_keys import SessionKeys
from .handlers.timers import ExpiryTimer
from .keys import SecretKey
from .logs import get_logger
from .pubsub import Subscription
from .renewal import RenewalPolicy
from .scheduling import Scheduler, TimerHeap, backend_status_reader
from .session_core import SessionCore
from .session_options import BearerTokenSource, SessionOptions, SessionParams, SessionRuntime
from .types import (
    Call,
    ExecutionResult,
    ExpiryReason,
    SessionKeyData,
    SessionState,
    SessionStatus,
    SpendingPolicy,
    SubmitInfo,
    WalletData,
)

if TYPE_CHECKING:
    from .attachment import HubAttachment
    from .backends.base import SessionReader
    from .journal import ActionJournal
    from .vault import Vault

__all__ = ["ChipiSession", "RenewalPolicy"]

log = get_logger(__name__)

S = SessionState
CallsInput = Call | Mapping[str, Any] | Iterable[Call | Mapping[str, Any]]


class ChipiSession:
    """One wallet's session key, driven like Chipi's ``useChipiSession`` hook.

    Use as ``async with ChipiSession(...) as session:``. Properties are plain reads of local
    state; actions are coroutines that raise :class:`ChipiSessionError`, keep it in
    :attr:`error` and publish :class:`ActionFailed`.
    """

    __slots__ = (
        "_wallet",
        "_encrypt_key",
        "_backend",
        "_stored_session",
        "_on_session_created",
        "_default_duration",
        "_default_max_calls",
        "_auto_check_status",
        "_status_interval",
        "_clock",
        "_vault",
        "_key_source",
        "_core",
        "_policies",
        "_renewer",
        "_keys",
        "_owner_writes",
        "_polling",
        "_runner",
        "_events",
        "_scheduler",
        "_owns_scheduler",
        "_journal",
        "_expiry_timer",
        "_entered",
        "_closed",
        "_log_context",
        "__weakref__",
    )

    def __init__(
        self,
        *,
        backend: SessionReader | None = None,
        get_bearer_token: BearerTokenSource | None = None,
        status_interval: float = 30.0,
        clock: Clock | None = None,
        vault: Vault | None = None,
        event_buffer_size: int = 256,
        **options: Unpack[SessionParams],
    ) -> None:
        """``wallet`` and ``encrypt_key`` are required; the per-session keywords (``wallet``,
        ``encrypt_key``, ``stored_session``, ``on_session_created``,
        ``default_duration_seconds``, ``default_max_calls``, ``auto_check_status``,
        ``renewal``, ``key_source``) are those of
        :class:`~chipi_session.session_options.SessionOptions`, shared with
        ``SessionHub.open``; the others say what the session runs on
        (:class:`~chipi_session.session_options.SessionRuntime`)."""
        self._setup(
            SessionOptions(**options),
            SessionRuntime.resolve(
                backend=backend,
                clock=clock,
                vault=vault,
                get_bearer_token=get_bearer_token,
                status_interval=status_interval,
                event_buffer_size=event_buffer_size,
            ),
        )

    @classmethod
    def from_options(cls, options: SessionOptions, runtime: SessionRuntime) -> ChipiSession:
        """A session from options and a runtime already checked (``SessionHub.open``: the
        hub's runtime is resolved once, each open's options once)."""
        session = cls.__new__(cls)
        session._setup(options, runtime)
        return session

    def _setup(self, options: SessionOptions, runtime: SessionRuntime) -> None:
        self._wallet = options.wallet
        self._encrypt_key = options.encrypt_key
        self._backend: SessionReader = runtime.backend
        self._stored_session = options.stored_session
        self._on_session_created = options.on_session_created
        self._default_duration = options.default_duration_seconds
        self._default_max_calls = options.default_max_calls
        self._auto_check_status = options.auto_check_status
        self._status_interval = runtime.status_interval
        self._clock: Clock = runtime.clock
        self._vault: Vault = runtime.vault
        self._key_source = options.key_source
        #: what this session's log records carry (docs/observability.md, "Logging")
        self._log_context = logs.session_context(self)

        #: the session's state and its rules (pure: session_core.py)
        self._core = SessionCore()
        #: the local session key and the secrets a write needs (handlers/session_keys.py)
        self._keys = SessionKeys(
            wallet=self._wallet,
            vault=self._vault,
            encrypt_key=self._encrypt_key,
            backend=self._backend,
            get_bearer_token=runtime.get_bearer_token,
        )
        #: owner-signed writes of this session (register, revoke, policies, renewal's) run
        #: one at a time, each checking the state it acts on once it holds the lock (made by
        #: the first one: most hub sessions never write as the owner)
        self._owner_writes: OwnerWrites | None = None
        #: the status poller's side of this session while it is polled (handlers/polling.py)
        self._polling: StatusPolling | None = None
        #: the spending caps as last known and their actions (handlers/policies.py; made on
        #: first use: ``policies``)
        self._policies: SpendingPolicies | None = None
        #: the actions and background tasks: pending counts, the last error, their cancel
        #: scopes (handlers/actions.py)
        self._runner = ActionRunner(self)
        #: the session's subscribers and listeners, and a hub's stream (handlers/publishing.py)
        self._events = Publisher(self, buffer_size=runtime.event_buffer_size)
        self._scheduler: Scheduler | None = None
        self._owns_scheduler = False
        self._journal: ActionJournal | None = None
        self._expiry_timer = ExpiryTimer(self)
        #: auto-renewal's effects and the keys being retired (handlers/renewal.py): made at
        #: once with a renewal policy, else on first use (``renewer``: a resume, an execute)
        self._renewer: Renewer | None = None
        if options.renewal is not None:
            self._renewer = self._make_renewer(options.renewal)
        self._entered = False
        self._closed = False

    # ------------------------------------------------------------------ context
    async def __aenter__(self) -> ChipiSession:
        if self._entered or self._closed:
            raise ChipiSessionError(ErrorCode.CLOSED, "a ChipiSession can be entered once")
        if self._scheduler is None:
            scheduler = Scheduler(
                self._clock,
                backend_status_reader(self._backend),
                status_interval=self._status_interval,
            )
            await scheduler.__aenter__()
            self._scheduler, self._owns_scheduler = scheduler, True
        await self.start_attached()
        return self

    async def start_attached(self) -> None:
        """Join the scheduler: restore the stored session and reconcile it with the chain."""
        self._entered = True
        if self._auto_check_status and self._wallet.supports_session:
            assert self._scheduler is not None
            self._polling = StatusPolling(self)
            self._scheduler.poller.add(self._polling)
        if self._stored_session is not None:
            self._restore(self._stored_session)
            if self._wallet.supports_session:
                try:
                    await self.refetch_status()
                except ChipiSessionError:
                    pass  # kept in .error and published; the session stays usable locally

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.shutdown()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and self._owns_scheduler:
            return await scheduler.__aexit__(exc_type, exc, tb)
        return None

    async def aclose(self) -> None:
        """Close a session owned by a ``SessionHub`` (cancel its actions, zero its key)."""
        self.shutdown()
        await anyio.lowlevel.checkpoint()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._runner.cancel()
        self._expiry_timer.cancel()
        self.cancel_renewal()
        if self._scheduler is not None and self._polling is not None:
            self._scheduler.poller.remove(self._polling)
        self._keys.zero()
        self._events.close()

    # --------------------------------------------------------------- properties
    @property
    def wallet(self) -> WalletData:
        return self._wallet

    @property
    def session(self) -> SessionKeyData | None:
        return self._keys.session

    @property
    def session_status(self) -> SessionStatus | None:
        return self._core.status

    @property
    def session_state(self) -> SessionState:
        return self._core.model.current

    @property
    def state_reason(self) -> str:
        """Why the session is in its state, e.g. ``time`` or ``calls`` when expired."""
        return self._core.model.reason

    @property
    def has_active_session(self) -> bool:
        return self._core.model.current is S.ACTIVE

    @property
    def is_session_expired(self) -> bool:
        return self._core.model.current is S.EXPIRED

    @property
    def remaining_calls(self) -> int | None:
        """Calls left on chain as last known (None until a status is known)."""
        return None if self._core.status is None else self._core.status.remaining_calls

    @property
    def supports_session(self) -> bool:
        return self._wallet.supports_session

    @property
    def is_creating(self) -> bool:
        return self._runner.pending("create")

    @property
    def is_registering(self) -> bool:
        return self._runner.pending("register")

    @property
    def is_revoking(self) -> bool:
        return self._runner.pending("revoke")

    @property
    def is_executing(self) -> bool:
        return self._runner.pending("execute")

    @property
    def is_loading_status(self) -> bool:
        return self._runner.pending("status")

    @property
    def is_renewing(self) -> bool:
        """A successor is being prepared, or a replaced key is still being revoked."""
        return self._renewer is not None and self._renewer.busy

    @property
    def renewal_successor(self) -> SessionKeyData | None:
        """A renewal's successor that is on record but not switched to yet (a store keeps
        it, encrypted, so a crash mid-renewal cannot lose a registered key)."""
        return self._core.successor

    @property
    def retiring_keys(self) -> tuple[int, ...]:
        """Public keys of replaced sessions still to be revoked on chain (a store keeps
        them, so a close or crash mid-retirement is finished on the next open)."""
        return () if self._renewer is None else self._renewer.retiring_keys

    @property
    def in_doubt(self) -> tuple[SubmitInfo, ...]:
        """Writes whose outcome is not known yet (each is counted against the budget)."""
        return tuple(self._core.in_doubt)

    @property
    def error(self) -> ChipiSessionError | None:
        return self._runner.error

    @property
    def clock(self) -> Clock:
        return self._clock

    def __repr__(self) -> str:
        pub = None if self._keys.session is None else to_hex(self._keys.session.public_key)
        return (
            f"ChipiSession(wallet={to_hex(self._wallet.address)}, state={self._core.model.state}, "
            f"session={pub})"
        )

    # ------------------------------------------------------------------- events
    def subscribe(
        self, buffer_size: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[Event]]:
        """``async with session.subscribe() as events: async for ev in events: ...``

        Each subscriber has its own buffer (default 256 events). When it is full the oldest
        buffered event is dropped (``events.dropped`` counts them): the engine never waits for
        a slow subscriber.
        """
        return self._events.subscribe(buffer_size)

    def add_listener(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for every event; returns a remover."""
        return self._events.add_listener(callback)

    # ------------------------------------------------------------------ actions
    async def create_session(self, duration_seconds: int | None = None) -> SessionKeyData:
        """Generate a session keypair locally, encrypt it, persist it via
        ``on_session_created``, and make it the local session (state ``created``).

        If ``on_session_created`` raises, the new session is discarded and the previous one
        (if any) stays: a session that was not persisted is never used.
        """
        return await self._runner.run(
            "create", "create", registration.create, self, duration_seconds, self._default_duration
        )

    async def register_session(
        self,
        max_calls: int | None = None,
        allowed_entrypoints: Iterable[int | str] | None = None,
        valid_until: int | None = None,
    ) -> str:
        """Register the local session on the wallet (owner-signed); returns the tx hash."""
        return await self._runner.run(
            "register",
            "register",
            registration.register,
            self,
            max_calls,
            allowed_entrypoints,
            valid_until,
            self._default_max_calls,
        )

    @overload
    async def execute_with_session(
        self, calls: CallsInput, *, wait: Literal[False] = False
    ) -> str: ...

    @overload
    async def execute_with_session(
        self, calls: CallsInput, *, wait: Literal[True]
    ) -> ExecutionResult: ...

    @overload
    async def execute_with_session(
        self, calls: CallsInput, *, wait: bool
    ) -> str | ExecutionResult: ...

    async def execute_with_session(
        self, calls: CallsInput, *, wait: bool = False
    ) -> str | ExecutionResult:
        """Sign ``calls`` with the session key and submit them (checked locally first against
        everything the contract checks).

        ``wait=False``: returns the tx hash once the backend accepted it; where the backend
        can read results the engine confirms it in the background (``TransactionConfirmed``
        / ``TransactionFailed``, a failure also in :attr:`error`). ``wait=True``: returns the
        :class:`~chipi_session.types.ExecutionResult` read from the chain, and raises
        ``CALL_FAILED`` (``applied=True``, ``error.result``) if a call failed or the
        transaction reverted. See docs/execution-results.md.
        """
        if not isinstance(wait, bool):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "wait must be a bool")
        return await self._runner.run("execute", "execute", execute.execute, self, calls, wait)

    async def revoke_session(self) -> str:
        """Revoke the session on chain (owner-signed); the local session is kept, revoked.

        Revoke rather than rely on expiry when a key must stop working: this engine's executes
        (SNIP-9) see the exact time, but a direct INVOKE signed with the session key passes the
        contract's expiry check until the end of the hour containing ``valid_until``
        (docs/contract.md §9.1).
        """
        return await self._runner.run("revoke", "revoke", registration.revoke, self)

    def clear_session(self) -> None:
        """Forget the local session (does not revoke it on chain) and zero its key."""
        if self._core.model.current is S.NONE:
            self._runner.error = None
            return
        self.new_generation()
        self._keys.session = None
        self._core.forget()
        if self._policies is not None:
            self._policies.forget()
        self._runner.error = None
        self.transition("clear")
        self.persist()

    async def refetch_status(self) -> SessionStatus | None:
        """Read the session's on-chain status and reconcile the local state with it."""
        return await self._runner.run("refetch_status", "status", transitions.refetch, self)

    async def set_spending_policy(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        return await self._runner.run(
            "set_spending_policy",
            "policy",
            self.policies.set,
            token,
            max_per_call,
            max_per_window,
            window_seconds,
        )

    async def get_spending_policy(self, token: int | str) -> SpendingPolicy | None:
        return await self._runner.run("get_spending_policy", "policy", self.policies.get, token)

    async def remove_spending_policy(self, token: int | str) -> str:
        return await self._runner.run(
            "remove_spending_policy", "policy", self.policies.remove, token
        )

    # ------------------------------------------------------------------ effects
    async def new_session_key(self, duration: int) -> tuple[SessionKeyData, SecretKey]:
        return await credentials.new_session_key(
            now=int(self._clock.now()),
            duration=duration,
            key_source=self._key_source,
            vault=self._vault,
            encrypt_key=self._encrypt_key,
            on_session_created=self._on_session_created,
        )

    # ---------------------------------------------------------------- helpers
    def _restore(self, data: SessionKeyData) -> None:
        self._core.restored()
        self._keys.session = data
        self.transition("restore")

    def require_supported(self) -> None:
        if not self._wallet.supports_session:
            raise ChipiSessionError(
                ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
                f"wallet type {self._wallet.wallet_type.value} does not support session keys; "
                "only CHIPI wallets do",
            )

    def require_session(self) -> SessionKeyData:
        if self._keys.session is None:
            raise ChipiSessionError(ErrorCode.NO_SESSION, "no session: call create_session()")
        return self._keys.session

    def switch_session(
        self, data: SessionKeyData, key: SecretKey | None, *, reset_windows: bool = False
    ) -> SecretKey | None:
        """Make ``data`` (with its decrypted ``key``, if known) the local session; a renewal's
        successor starts its spending windows afresh (``reset_windows``). Returns the
        replaced session's decrypted key (the caller zeroes it)."""
        old_key = self._keys.switch(data, key)
        if reset_windows and self._policies is not None:
            self._policies.reset_windows(int(self._clock.now()))
        return old_key

    def new_generation(self) -> None:
        self._core.new_generation()
        self._keys.zero()
        self.cancel_renewal()
        self.reschedule()

    def persist(self) -> None:
        journal = self._journal
        if journal is not None:
            journal.mark_dirty()
            self.spawn(journal.flush())

    # ------------------------------------- hub attachment (attachment.py; internal)
    def attach(self, attachment: HubAttachment) -> None:
        """Join a hub: its scheduler, event sink, journal and stored flag (once, before the
        session starts; see :mod:`chipi_session.attachment`)."""
        if self._entered or self._scheduler is not None:
            raise ChipiSessionError(ErrorCode.CLOSED, "a session can be attached once, unstarted")
        self._scheduler = attachment.scheduler
        self._events.hub = attachment.events
        if attachment.journal is not None:
            self._journal = attachment.journal(self)
        if attachment.seen_registered:
            self._core.learn_registered()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def seen_registered(self) -> bool:
        return self._core.seen_registered

    @property
    def journal(self) -> ActionJournal | None:
        return self._journal

    def learn_registered(self) -> bool:
        return self._core.learn_registered()

    def hold_in_doubt(self, info: SubmitInfo, *, count: bool, token: object, mine: bool) -> None:
        doubts.hold_in_doubt(self, info, count=count, token=token, mine=mine)

    async def resolve_outcome(self, info: SubmitInfo | None) -> bool | None:
        return await doubts.resolve_outcome(self, info)

    async def resume_renewal(
        self,
        successor: SessionKeyData | None,
        retiring: Iterable[int],
        in_doubt: SubmitInfo | None = None,
    ) -> None:
        retiring = tuple(retiring)
        if successor is None and not retiring:
            return  # nothing left to finish (no renewer made for it)
        await self.renewer.resume(successor, retiring, in_doubt)

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        self._runner.record_failure(action, error)

    def spawn(self, coro: Awaitable[Any], action: str | None = None) -> None:
        self._runner.spawn(coro, action)

    # ----------------- the handlers' view of this session (handlers/context.py; internal)
    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        scheduler = self._scheduler
        if scheduler is None or not scheduler.running or self._closed:
            return None
        return scheduler.task_group

    @property
    def started(self) -> bool:
        return self._entered

    @property
    def log_context(self) -> logs.LogContext:
        return self._log_context

    @property
    def core(self) -> SessionCore:
        return self._core

    @property
    def keys(self) -> SessionKeys:
        """The local session key and the secrets of one write (handlers/session_keys.py)."""
        return self._keys

    @property
    def backend(self) -> SessionReader:
        return self._backend

    def publish(self, cls: type[Event], **fields: Any) -> None:
        self._events.publish(cls, **fields)

    def transition(self, trigger: str, *, reason: str | None = None, **kwargs: Any) -> None:
        transitions.transition(self, trigger, reason=reason, **kwargs)

    # registration (handlers/registration.py)
    @property
    def owner_writes(self) -> OwnerWrites:
        writes = self._owner_writes
        if writes is None:
            writes = self._owner_writes = OwnerWrites(self)
        return writes

    def check_exhausted(self) -> None:
        transitions.check_exhausted(self)

    def cancel_renewal(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()

    # execute (handlers/execute.py)
    @property
    def renewer(self) -> Renewer:
        if self._renewer is None:  # no renewal policy: keys to retire, an execute's checks
            self._renewer = self._make_renewer(None)
        return self._renewer

    def _make_renewer(self, policy: RenewalPolicy | None) -> Renewer:
        return Renewer(
            self,
            policy,
            default_duration=self._default_duration,
            default_max_calls=self._default_max_calls,
        )

    async def write(
        self, action: str, public_key: int, send: Callable[[OnSubmit], Awaitable[str]]
    ) -> str:
        return await writes.journalled_write(self, action, public_key, send)

    def spawn_scoped(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        return self._runner.spawn_scoped(fn, *args)

    def expire(self, reason: ExpiryReason) -> None:
        transitions.expire(self, reason)

    def set_error(self, error: ChipiSessionError) -> None:
        self._runner.error = error

    # renewal (handlers/renewal.py)
    @property
    def policies(self) -> SpendingPolicies:
        if self._policies is None:
            self._policies = SpendingPolicies(self)
        return self._policies

    def apply_status(self, status: SessionStatus) -> None:
        transitions.apply_status(self, status)

    def adopt_session(self, data: SessionKeyData, key: SecretKey) -> None:
        self._keys.switch(data, key)
        if self._policies is not None:
            self._policies.forget()

    # in-doubt writes (handlers/doubts.py)
    @property
    def timers(self) -> TimerHeap | None:
        scheduler = self._scheduler
        return scheduler.timers if scheduler is not None and not self._closed else None

    @property
    def status_interval(self) -> float:
        return self._status_interval

    async def refetch_quietly(self) -> None:
        try:
            await self._runner.run("refetch_status", "status", transitions.refetch, self, 1)
        except ChipiSessionError:
            pass

    # ----------------------- the status poller's view (handlers/polling.py; internal)

    # ------------------------------------------------------------- expiry timer
    def reschedule(self) -> None:
        """The expiry deadline may have moved: re-arm it (``handlers.timers.ExpiryTimer``)
        and the renewal timer."""
        self._expiry_timer.arm(self.timers)
        if self._renewer is not None:
            self._renewer.arm()

    def expiry_deadline(self) -> float | None:
        session = self._keys.session
        return self._core.expiry_bound(None if session is None else session.valid_until)

    def expire_by_time(self) -> None:
        with logs.action(self._log_context, "expire"):  # the shared timer's task
            self.expire(ExpiryReason.TIME)
