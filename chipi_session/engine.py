"""``ChipiSession``: the headless ``useChipiSession`` (engine.md §3).

The lifecycle and the policy are pure (``lifecycle``, ``policy``); this module adds the effects:
key generation and encryption, backend calls, the expiry timer on the injected clock, status
polling, and event publishing. Every effect runs as a task in the session's task group, so
leaving ``async with`` cancels them all; an action in flight is then reported as failed and the
local state is left as it was before that action.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import attrs

from . import lifecycle, policy
from .clock import Clock, SystemClock
from .errors import ChipiSessionError, ErrorCode
from .events import ActionFailed, Event, StateChanged, StatusRefreshed, TransactionSubmitted
from .felts import U32_MAX, U64_MAX, parse_felt, parse_selector, to_hex
from .keys import KeySource, SecretKey
from .pubsub import Broadcaster, Subscription
from .types import (
    Call,
    ExpiryReason,
    SessionKeyData,
    SessionState,
    SessionStatus,
    SpendingPolicy,
    WalletData,
    coerce_calls,
)

if TYPE_CHECKING:
    from .backends.base import SessionBackend
    from .vault import HighEntropyKey, Vault

__all__ = ["ChipiSession"]

log = logging.getLogger(__name__)
T = TypeVar("T")

S = SessionState
BearerTokenSource = Callable[[], Awaitable[str | None]]
SessionCreatedCallback = Callable[[SessionKeyData], Any]

_ACTIONS = ("create", "register", "revoke", "execute", "status", "policy")


@attrs.define
class _Box:
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False


class ChipiSession:
    """One wallet's session key, driven like Chipi's ``useChipiSession`` hook.

    Use as ``async with ChipiSession(...) as session:``. Properties are plain reads of local
    state; actions are coroutines that raise :class:`ChipiSessionError`, keep it in
    :attr:`error` and publish :class:`ActionFailed`.
    """

    def __init__(
        self,
        *,
        wallet: WalletData,
        encrypt_key: str | HighEntropyKey,
        backend: SessionBackend | None = None,
        get_bearer_token: BearerTokenSource | None = None,
        stored_session: SessionKeyData | None = None,
        on_session_created: SessionCreatedCallback | None = None,
        default_duration_seconds: int = 21600,
        default_max_calls: int = 1000,
        auto_check_status: bool = True,
        status_interval: float = 30.0,
        clock: Clock | None = None,
        vault: Vault | None = None,
        key_source: KeySource | None = None,
        event_buffer_size: int = 256,
    ) -> None:
        if not isinstance(wallet, WalletData):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "wallet must be a WalletData")
        if stored_session is not None and not isinstance(stored_session, SessionKeyData):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "stored_session must be a SessionKeyData"
            )
        _check_positive_int(default_duration_seconds, "default_duration_seconds", U64_MAX)
        _check_count(default_max_calls, "default_max_calls")
        if not (isinstance(status_interval, (int, float)) and status_interval > 0):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "status_interval must be > 0")
        if backend is None:
            from .localchain import default_chain

            backend = default_chain()
        if clock is None:
            clock = getattr(backend, "clock", None) or SystemClock()
        if vault is None:
            from .vault import Vault

            vault = Vault()
        self._wallet = wallet
        self._encrypt_key = encrypt_key
        self._backend: SessionBackend = backend
        self._get_bearer_token = get_bearer_token
        self._stored_session = stored_session
        self._on_session_created = on_session_created
        self._default_duration = default_duration_seconds
        self._default_max_calls = default_max_calls
        self._auto_check_status = auto_check_status
        self._status_interval = float(status_interval)
        self._clock = clock
        self._vault = vault
        self._key_source = key_source
        self._event_buffer_size = event_buffer_size

        self._model = lifecycle.SessionModel()
        self._session: SessionKeyData | None = None
        self._status: SessionStatus | None = None
        self._session_key: SecretKey | None = None
        self._key_lock: anyio.Lock | None = None
        self._generation = 0
        self._seen_registered = False
        self._reserved = 0
        self._policies: dict[int, SpendingPolicy] = {}
        self._pending: dict[str, int] = dict.fromkeys(_ACTIONS, 0)
        self._error: ChipiSessionError | None = None
        self._events: Broadcaster[Event] = Broadcaster()
        self._tg: anyio.abc.TaskGroup | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._closed = False

    # ------------------------------------------------------------------ context
    async def __aenter__(self) -> ChipiSession:
        if self._tg is not None or self._closed:
            raise ChipiSessionError(ErrorCode.CLOSED, "a ChipiSession can be entered once")
        self._key_lock = anyio.Lock()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._expiry_timer)
        if self._auto_check_status:
            tg.start_soon(self._status_poller)
        if self._stored_session is not None:
            self._restore(self._stored_session)
            if self._supports_session_quietly():
                try:
                    await self.refetch_status()
                except ChipiSessionError:
                    pass  # kept in .error and published; the session stays usable locally
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._closed = True
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._zero_session_key()
            self._events.close()

    # --------------------------------------------------------------- properties
    @property
    def wallet(self) -> WalletData:
        return self._wallet

    @property
    def session(self) -> SessionKeyData | None:
        return self._session

    @property
    def session_status(self) -> SessionStatus | None:
        return self._status

    @property
    def session_state(self) -> SessionState:
        return self._model.current

    @property
    def state_reason(self) -> str:
        """Why the session is in its state, e.g. ``time`` or ``calls`` when expired."""
        return self._model.reason

    @property
    def has_active_session(self) -> bool:
        return self._model.current is S.ACTIVE

    @property
    def is_session_expired(self) -> bool:
        return self._model.current is S.EXPIRED

    @property
    def remaining_calls(self) -> int | None:
        """Calls left on chain as last known (None until a status is known)."""
        return None if self._status is None else self._status.remaining_calls

    @property
    def supports_session(self) -> bool:
        return self._wallet.supports_session

    @property
    def is_creating(self) -> bool:
        return self._pending["create"] > 0

    @property
    def is_registering(self) -> bool:
        return self._pending["register"] > 0

    @property
    def is_revoking(self) -> bool:
        return self._pending["revoke"] > 0

    @property
    def is_executing(self) -> bool:
        return self._pending["execute"] > 0

    @property
    def is_loading_status(self) -> bool:
        return self._pending["status"] > 0

    @property
    def error(self) -> ChipiSessionError | None:
        return self._error

    @property
    def clock(self) -> Clock:
        return self._clock

    def __repr__(self) -> str:
        pub = None if self._session is None else to_hex(self._session.public_key)
        return (
            f"ChipiSession(wallet={to_hex(self._wallet.address)}, state={self._model.state}, "
            f"session={pub})"
        )

    # ------------------------------------------------------------------- events
    def subscribe(self, buffer_size: int | None = None) -> AbstractAsyncContextManager[
        Subscription[Event]
    ]:
        """``async with session.subscribe() as events: async for ev in events: ...``

        Each subscriber has its own buffer (default 256 events). When it is full the oldest
        buffered event is dropped (``events.dropped`` counts them): the engine never waits for
        a slow subscriber.
        """
        return self._events.subscribe(buffer_size or self._event_buffer_size)

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
        return await self._action("create", "create", self._do_create, duration_seconds)

    async def register_session(
        self,
        max_calls: int | None = None,
        allowed_entrypoints: Iterable[int | str] | None = None,
        valid_until: int | None = None,
    ) -> str:
        """Register the local session on the wallet (owner-signed); returns the tx hash."""
        return await self._action(
            "register", "register", self._do_register, max_calls, allowed_entrypoints, valid_until
        )

    async def execute_with_session(
        self, calls: Call | Mapping[str, Any] | Iterable[Call | Mapping[str, Any]]
    ) -> str:
        """Sign ``calls`` with the session key and submit them; returns the tx hash.

        Checked locally first against everything the contract checks.
        """
        return await self._action("execute", "execute", self._do_execute, calls)

    async def revoke_session(self) -> str:
        """Revoke the session on chain (owner-signed); the local session is kept, revoked."""
        return await self._action("revoke", "revoke", self._do_revoke)

    def clear_session(self) -> None:
        """Forget the local session (does not revoke it on chain) and zero its key."""
        if self._model.current is S.NONE:
            self._error = None
            return
        self._new_generation()
        self._session = None
        self._status = None
        self._policies.clear()
        self._error = None
        self._seen_registered = False
        self._transition("clear")

    async def refetch_status(self) -> SessionStatus | None:
        """Read the session's on-chain status and reconcile the local state with it."""
        return await self._action("refetch_status", "status", self._do_refetch)

    async def set_spending_policy(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        return await self._action(
            "set_spending_policy",
            "policy",
            self._do_set_policy,
            token,
            max_per_call,
            max_per_window,
            window_seconds,
        )

    async def get_spending_policy(self, token: int | str) -> SpendingPolicy | None:
        return await self._action("get_spending_policy", "policy", self._do_get_policy, token)

    async def remove_spending_policy(self, token: int | str) -> str:
        return await self._action(
            "remove_spending_policy", "policy", self._do_remove_policy, token
        )

    # ------------------------------------------------------------ action runner
    async def _action(
        self, action: str, flag: str, fn: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """Run ``fn`` as a task of the session's task group and wait for it.

        Cancelling the caller cancels the effect; closing the session cancels it and the
        caller gets ``CLOSED``. Failures are kept in ``error`` and published.
        """
        tg = self._tg
        if tg is None or self._closed:
            raise ChipiSessionError(
                ErrorCode.CLOSED, "use the session inside 'async with ChipiSession(...)'"
            )
        box = _Box()
        done = anyio.Event()

        async def runner(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                self._pending[flag] += 1
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
                    self._pending[flag] -= 1
                    done.set()
            if scope.cancelled_caught:
                box.cancelled = True

        scope: anyio.CancelScope = await tg.start(runner)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await done.wait()
            raise
        if box.cancelled:
            err = ChipiSessionError(ErrorCode.CLOSED, f"{action} cancelled: the session closed")
            self._record_failure(action, err)
            raise err
        if box.error is not None:
            assert isinstance(box.error, ChipiSessionError)
            self._record_failure(action, box.error)
            raise box.error
        if action != "refetch_status":
            self._error = None
        return box.value  # type: ignore[no-any-return]

    def _record_failure(self, action: str, error: ChipiSessionError) -> None:
        self._error = error
        log.info("%s failed: %s", action, error.code.value)
        self._publish(ActionFailed, action=action, error=error)

    # ------------------------------------------------------------------ effects
    async def _do_create(self, duration_seconds: int | None) -> SessionKeyData:
        duration = self._default_duration if duration_seconds is None else duration_seconds
        _check_positive_int(duration, "duration_seconds", U64_MAX)
        self._require_supported()
        now = int(self._clock.now())
        valid_until = now + duration
        if valid_until > U64_MAX:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "duration_seconds too large")
        try:
            key = SecretKey.generate(self._key_source)
        except ChipiSessionError as exc:
            raise ChipiSessionError(
                ErrorCode.SESSION_CREATION_FAILED, f"key generation failed: {exc.message}"
            ) from None
        try:
            blob = await anyio.to_thread.run_sync(self._encrypt, key)
            data = SessionKeyData(
                public_key=key.public_key, encrypted_private_key=blob, valid_until=valid_until
            )
            if self._on_session_created is not None:
                try:
                    result = self._on_session_created(data)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    raise ChipiSessionError(
                        ErrorCode.SESSION_CREATION_FAILED,
                        f"on_session_created failed ({type(exc).__name__}); "
                        "the new session was discarded",
                    ) from None
        except BaseException:
            key.zero()
            raise
        # commit: nothing below awaits
        self._new_generation()
        self._session = data
        self._session_key = key
        self._status = None
        self._policies.clear()
        self._seen_registered = False
        self._transition("create")
        return data

    def _encrypt(self, key: SecretKey) -> str:
        return self._vault.encrypt(key.reveal(), self._encrypt_key)

    async def _do_register(
        self,
        max_calls: int | None,
        allowed_entrypoints: Iterable[int | str] | None,
        valid_until: int | None,
    ) -> str:
        calls_budget = self._default_max_calls if max_calls is None else max_calls
        _check_count(calls_budget, "max_calls")
        allowed = _parse_entrypoints(allowed_entrypoints)
        self._require_supported()
        session = self._require_session()
        until = session.valid_until if valid_until is None else valid_until
        _check_positive_int(until, "valid_until", U64_MAX)
        if until > session.valid_until:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                "valid_until may not exceed the session's own validUntil: session signatures "
                "carry that value, so a later on-chain expiry would never be usable",
            )
        state = self._model.current
        if state is S.REVOKED:
            raise ChipiSessionError(
                ErrorCode.SESSION_REVOKED, "the session was revoked; create a new one"
            )
        now = int(self._clock.now())
        if now > until or (state is S.EXPIRED and self._model.reason == ExpiryReason.TIME):
            raise ChipiSessionError(ErrorCode.SESSION_EXPIRED, "the session has expired")
        generation = self._generation
        token = await self._bearer_token()
        owner = await self._owner_key()
        try:
            tx = await self._backend.add_or_update_session_key(
                self._wallet,
                owner,
                session_public_key=session.public_key,
                valid_until=until,
                max_calls=calls_budget,
                allowed_entrypoints=allowed,
                bearer_token=token,
            )
        finally:
            owner.zero()
        if generation != self._generation:
            return tx  # the session was replaced meanwhile; its state is not ours to change
        self._seen_registered = True
        self._status = SessionStatus(until, calls_budget, 0, allowed)
        self._reserved = 0
        self._publish(TransactionSubmitted, action="register", tx_hash=tx)
        self._transition("register", now=int(self._clock.now()), valid_until=until)
        self._publish(StatusRefreshed, status=self._status)
        self._check_exhausted()
        self._reschedule()
        return tx

    async def _do_execute(
        self, calls: Call | Mapping[str, Any] | Iterable[Call | Mapping[str, Any]]
    ) -> str:
        parsed = coerce_calls(calls)
        self._require_supported()
        session = self._require_session()
        status = self._require_active()
        now = int(self._clock.now())
        # Pre-flight: the contract's own rules, with in-flight executes counted as used.
        projected = attrs.evolve(
            status,
            valid_until=min(status.valid_until, session.valid_until),
            calls_used=status.calls_used + self._reserved,
        )
        denial = policy.check_session_allowed(projected, self._wallet.address, parsed, now)
        if denial is not None:
            if denial is policy.Denial.EXPIRED:
                self._expire(ExpiryReason.TIME)
            elif denial is policy.Denial.EXHAUSTED and self._reserved == 0:
                self._expire(ExpiryReason.CALLS)
            raise policy.denial_error(denial)
        try:
            policy.apply_spending(self._policies, parsed, now)
        except policy.SpendingViolation as violation:
            raise violation.to_error() from None
        generation = self._generation
        self._reserved += 1
        try:
            key = await self._session_key_for(session)
            token = await self._bearer_token()
            tx = await self._backend.execute_with_session(
                self._wallet,
                key,
                valid_until=session.valid_until,
                calls=parsed,
                bearer_token=token,
            )
        except ChipiSessionError as exc:
            if generation == self._generation and exc.code in _CHAIN_STATE_CODES:
                self._spawn_refetch()
            raise
        finally:
            if generation == self._generation:
                self._reserved -= 1
        if generation != self._generation or self._status is None:
            return tx
        self._status = attrs.evolve(self._status, calls_used=self._status.calls_used + 1)
        try:
            self._policies.update(
                policy.apply_spending(self._policies, parsed, int(self._clock.now()))
            )
        except policy.SpendingViolation:
            self._policies.clear()  # our view is stale; the chain accepted it
        self._publish(TransactionSubmitted, action="execute", tx_hash=tx)
        if self._model.current is S.ACTIVE:
            self._transition("execute")
            self._check_exhausted()
        return tx

    async def _do_revoke(self) -> str:
        self._require_supported()
        session = self._require_session()
        if self._model.current is S.REVOKED:
            raise ChipiSessionError(ErrorCode.SESSION_REVOKED, "the session is already revoked")
        generation = self._generation
        token = await self._bearer_token()
        owner = await self._owner_key()
        try:
            tx = await self._backend.revoke_session_key(
                self._wallet, owner, session_public_key=session.public_key, bearer_token=token
            )
        finally:
            owner.zero()
        if generation != self._generation:
            return tx
        self._seen_registered = True
        self._status = SessionStatus(0, 0, 0, ())
        self._zero_session_key()
        self._publish(TransactionSubmitted, action="revoke", tx_hash=tx)
        if self.session_state is not S.REVOKED:  # may have changed while awaiting
            self._transition("revoke")
        return tx

    async def _do_refetch(self) -> SessionStatus | None:
        session = self._session
        if session is None:
            return None
        self._require_supported()
        generation = self._generation
        status = await self._backend.get_session_status(self._wallet.address, session.public_key)
        if generation != self._generation:
            return status
        self._status = status
        self._publish(StatusRefreshed, status=status)
        self._reconcile(status)
        return status

    async def _do_set_policy(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        token_addr = _parse_token(token)
        _check_policy(max_per_call, max_per_window, window_seconds)
        self._require_supported()
        session = self._require_session()
        generation = self._generation
        bearer = await self._bearer_token()
        owner = await self._owner_key()
        try:
            tx = await self._backend.set_spending_policy(
                self._wallet,
                owner,
                session_public_key=session.public_key,
                token=token_addr,
                max_per_call=max_per_call,
                max_per_window=max_per_window,
                window_seconds=window_seconds,
                bearer_token=bearer,
            )
        finally:
            owner.zero()
        if generation == self._generation:
            self._policies[token_addr] = SpendingPolicy(
                max_per_call, max_per_window, window_seconds, 0, int(self._clock.now())
            )
            self._publish(TransactionSubmitted, action="set_spending_policy", tx_hash=tx)
        return tx

    async def _do_get_policy(self, token: int | str) -> SpendingPolicy | None:
        token_addr = _parse_token(token)
        self._require_supported()
        session = self._require_session()
        generation = self._generation
        found = await self._backend.get_spending_policy(
            self._wallet.address, session.public_key, token_addr
        )
        if generation == self._generation:
            if found.exists:
                self._policies[token_addr] = found
            else:
                self._policies.pop(token_addr, None)
        return found if found.exists else None

    async def _do_remove_policy(self, token: int | str) -> str:
        token_addr = _parse_token(token)
        self._require_supported()
        session = self._require_session()
        generation = self._generation
        bearer = await self._bearer_token()
        owner = await self._owner_key()
        try:
            tx = await self._backend.remove_spending_policy(
                self._wallet,
                owner,
                session_public_key=session.public_key,
                token=token_addr,
                bearer_token=bearer,
            )
        finally:
            owner.zero()
        if generation == self._generation:
            self._policies.pop(token_addr, None)
            self._publish(TransactionSubmitted, action="remove_spending_policy", tx_hash=tx)
        return tx

    # ---------------------------------------------------------------- helpers
    def _restore(self, data: SessionKeyData) -> None:
        self._new_generation()
        self._session = data
        self._transition("restore")

    def _supports_session_quietly(self) -> bool:
        return self._wallet.supports_session

    def _require_supported(self) -> None:
        if not self._wallet.supports_session:
            raise ChipiSessionError(
                ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
                f"wallet type {self._wallet.wallet_type.value} does not support session keys; "
                "only CHIPI wallets do",
            )

    def _require_session(self) -> SessionKeyData:
        if self._session is None:
            raise ChipiSessionError(ErrorCode.NO_SESSION, "no session: call create_session()")
        return self._session

    def _require_active(self) -> SessionStatus:
        state = self._model.current
        if state is S.ACTIVE and self._status is not None:
            return self._status
        if state is S.EXPIRED:
            if self._model.reason == ExpiryReason.CALLS:
                raise ChipiSessionError(
                    ErrorCode.SESSION_MAX_CALLS_EXCEEDED, "the session has used all of its calls"
                )
            raise ChipiSessionError(ErrorCode.SESSION_EXPIRED, "the session has expired")
        if state is S.REVOKED:
            raise ChipiSessionError(ErrorCode.SESSION_REVOKED, "the session was revoked")
        raise ChipiSessionError(
            ErrorCode.SESSION_NOT_REGISTERED, "the session is not registered: call register_session()"
        )

    async def _bearer_token(self) -> str | None:
        if self._get_bearer_token is None:
            if getattr(self._backend, "requires_bearer_token", False):
                raise ChipiSessionError(
                    ErrorCode.UNAUTHORIZED, "this backend needs get_bearer_token"
                )
            return None
        try:
            token = await self._get_bearer_token()
        except ChipiSessionError:
            raise
        except Exception as exc:
            raise ChipiSessionError(
                ErrorCode.UNAUTHORIZED, f"get_bearer_token failed: {type(exc).__name__}"
            ) from None
        if token is None and getattr(self._backend, "requires_bearer_token", False):
            raise ChipiSessionError(ErrorCode.UNAUTHORIZED, "bearer token is required")
        return token

    async def _owner_key(self) -> SecretKey:
        """Decrypt the owner key for one owner-signed action (the caller zeroes it)."""
        blob = self._wallet.encrypted_private_key
        expected = self._wallet.owner_public_key
        return await anyio.to_thread.run_sync(
            lambda: self._vault.decrypt(blob, self._encrypt_key, expected_public_key=expected)
        )

    async def _session_key_for(self, session: SessionKeyData) -> SecretKey:
        """The decrypted session key: derived once per session, kept in memory only."""
        assert self._key_lock is not None
        async with self._key_lock:
            key = self._session_key
            if key is not None and not key.is_zeroed and key.public_key == session.public_key:
                return key
            key = await anyio.to_thread.run_sync(
                lambda: self._vault.decrypt(
                    session.encrypted_private_key,
                    self._encrypt_key,
                    expected_public_key=session.public_key,
                )
            )
            if self._session is not session:
                key.zero()
                raise ChipiSessionError(ErrorCode.NO_SESSION, "the session changed meanwhile")
            self._session_key = key
            return key

    def _zero_session_key(self) -> None:
        if self._session_key is not None:
            self._session_key.zero()
            self._session_key = None

    def _new_generation(self) -> None:
        self._generation += 1
        self._reserved = 0
        self._zero_session_key()
        self._reschedule()

    def _transition(self, trigger: str, *, reason: str | None = None, **kwargs: Any) -> None:
        previous, current = lifecycle.fire(self._model, trigger, reason=reason, **kwargs)
        if previous is not current or trigger in ("create", "register"):
            log.debug("session %s: %s -> %s (%s)", self._pub_hex(), previous, current, trigger)
            self._publish(
                StateChanged, previous=previous, current=current, reason=self._model.reason
            )
        self._reschedule()

    def _expire(self, reason: ExpiryReason) -> None:
        if lifecycle.can_fire(self._model, "expire"):
            self._transition("expire", reason=reason.value)

    def _check_exhausted(self) -> None:
        status = self._status
        if (
            status is not None
            and self._model.current is S.ACTIVE
            and status.calls_used >= status.max_calls
        ):
            self._expire(ExpiryReason.CALLS)

    def _reconcile(self, status: SessionStatus) -> None:
        session = self._session
        if session is None:
            return
        if self._model.current is S.REVOKED and not status.exists:
            return
        target, reason = lifecycle.derive_state(
            status,
            int(self._clock.now()),
            local_valid_until=session.valid_until,
            seen_registered=self._seen_registered,
        )
        if status.exists:
            self._seen_registered = True
        if target is self._model.current and reason == self._model.reason:
            return
        self._transition("reconcile", target=target, reason=reason)

    def _spawn_refetch(self) -> None:
        if self._tg is not None and not self._closed:
            self._tg.start_soon(self._quiet_refetch)

    async def _quiet_refetch(self) -> None:
        try:
            await self.refetch_status()
        except ChipiSessionError:
            pass

    def _publish(self, cls: type[Event], **fields: Any) -> None:
        event = cls(timestamp=self._clock.now(), session_public_key=self._pub_hex(), **fields)
        self._events.publish(event)

    def _pub_hex(self) -> str | None:
        return None if self._session is None else to_hex(self._session.public_key)

    # ------------------------------------------------------- background tasks
    def _reschedule(self) -> None:
        """The expiry deadline may have moved: restart the timer's wait."""
        if self._timer_scope is not None:
            self._timer_scope.cancel()

    def _expiry_deadline(self) -> float | None:
        session = self._session
        if session is None or self._model.current not in (S.CREATED, S.ACTIVE):
            return None
        bound = session.valid_until
        if self._status is not None and self._status.exists:
            bound = min(bound, self._status.valid_until)
        return float(bound)

    async def _expiry_timer(self) -> None:
        """Emits ``expired`` (reason ``time``) as soon as clock time passes valid_until.

        The boundary is inclusive: at ``now == valid_until`` the session is still valid. One
        task per session, woken by the clock or by a state change (never by polling).
        """
        while True:
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                deadline = self._expiry_deadline()
                if deadline is not None:
                    target = deadline
                    while self._clock.now() <= deadline:
                        await self._clock.sleep_until(target)
                        target = math.nextafter(deadline, math.inf)
                    self._expire(ExpiryReason.TIME)
                await anyio.sleep_forever()

    async def _status_poller(self) -> None:
        while True:
            await self._clock.sleep_until(self._clock.now() + self._status_interval)
            if self._session is None or self._model.current is S.NONE:
                continue
            if not self._wallet.supports_session:
                continue
            try:
                await self.refetch_status()
            except ChipiSessionError:
                pass  # kept in .error and published as ActionFailed


_CHAIN_STATE_CODES = frozenset(
    {
        ErrorCode.SESSION_NOT_REGISTERED,
        ErrorCode.SESSION_REVOKED,
        ErrorCode.SESSION_EXPIRED,
        ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
        ErrorCode.UNKNOWN_OUTCOME,
    }
)


def _check_positive_int(value: object, what: str, upper: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= upper:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{what} must be a positive integer, got {value!r}"
        )


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"{what} must be an integer in [0, 2**32), got {value!r}"
        )


def _parse_entrypoints(values: Iterable[int | str] | None) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes)):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, "allowed_entrypoints must be a list of names or selectors"
        )
    try:
        return tuple(parse_selector(v, "allowed_entrypoints") for v in values)
    except ChipiSessionError as exc:
        raise ChipiSessionError(ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED, exc.message) from None


def _parse_token(token: object) -> int:
    if isinstance(token, str) and not token.strip():
        raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, "token must not be blank")
    value = parse_felt(token, "token")
    if value == 0:
        raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, "token must not be zero")
    return value


def _check_policy(max_per_call: object, max_per_window: object, window_seconds: object) -> None:
    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not (is_int(window_seconds) and 0 < window_seconds <= U64_MAX):  # type: ignore[operator]
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "window_seconds must be a positive u64"
        )
    for name, v in (("max_per_call", max_per_call), ("max_per_window", max_per_window)):
        if not (is_int(v) and 0 <= v < 2**256):  # type: ignore[operator]
            raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, f"{name} must be a u256")
    if max_per_window > 0 and max_per_call > max_per_window:  # type: ignore[operator]
        raise ChipiSessionError(
            ErrorCode.INVALID_SPENDING_POLICY, "max_per_call may not exceed max_per_window"
        )


def _unused(_: Sequence[object] | AsyncIterator[object]) -> None:  # pragma: no cover
    pass
