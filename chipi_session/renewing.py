"""Auto-renewal, the part of ``ChipiSession`` that replaces a session key before it runs out
(docs/engine.md, "Auto-renewal"; ``renewal.RenewalPolicy`` says when, ``session_core.RenewalState``
holds the sub-state).

A successor is created, persisted, registered (with its spending policies) and switched to in
one synchronous step; the old key is revoked once the executes it signed have finished. A
mixin of :class:`~chipi_session.engine.ChipiSession` (its ``self``), kept apart so the engine
module stays readable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from .errors import ChipiSessionError, ErrorCode
from .events import Event, SessionRenewed, TransactionSubmitted
from .felts import to_hex
from .logs import get_logger
from .session_inputs import AppliedHashLost as _AppliedHashLost
from .types import SessionKeyData, SessionState, SessionStatus, SubmitInfo

if TYPE_CHECKING:
    from .backends.base import SessionReader
    from .clock import Clock
    from .handlers.policies import SpendingPolicies
    from .journal import ActionJournal
    from .keys import SecretKey
    from .renewal import RenewalPolicy
    from .scheduling import Scheduler, TimerHandle
    from .session_core import SessionCore
    from .types import WalletData

__all__ = ["RenewalMixin"]

log = get_logger("chipi_session.engine")
S = SessionState


class RenewalMixin:
    """Renewal's effects on a ``ChipiSession`` (the attributes below are the session's)."""

    #: renewal's own state (its sub-state proper is in ``SessionCore``)
    __slots__ = ("_renewal_timer", "_renewal_done", "_retiring", "_retire_pending")
    _renewal_timer: TimerHandle | None
    _renewal_done: anyio.Event | None
    #: keys being retired: [generation, executes still in flight with that key, drained event]
    _retiring: list[list[Any]] | None
    #: public keys of replaced sessions not yet revoked (persisted: resumed on open)
    _retire_pending: list[int]

    if TYPE_CHECKING:
        _core: SessionCore
        _policies: SpendingPolicies
        _session: SessionKeyData | None
        _scheduler: Scheduler | None
        _renewal: RenewalPolicy | None
        _clock: Clock
        _session_key: SecretKey | None
        _wallet: WalletData
        _journal: ActionJournal | None
        _default_max_calls: int
        _default_duration: int
        _closed: bool
        _backend: SessionReader

        def _persist(self) -> None: ...
        def _spawn(self, coro: Awaitable[Any], action: str | None = None) -> None: ...
        def _publish(self, cls: type[Event], **fields: Any) -> None: ...
        def _owner_guard(self) -> anyio.Lock: ...
        def _record_failure(self, action: str, error: ChipiSessionError) -> None: ...
        def _transition(
            self, trigger: str, *, reason: str | None = None, **kwargs: Any
        ) -> None: ...
        async def _revoke_key(self, public_key: int) -> str: ...
        async def _register_key(
            self, public_key: int, until: int, max_calls: int, allowed: tuple[int, ...]
        ) -> str: ...
        async def _new_session_key(self, duration: int) -> tuple[SessionKeyData, SecretKey]: ...
        def _new_generation(self) -> None: ...
        async def _confirm(self, tx_hash: str) -> None: ...
        def _apply_status(self, status: SessionStatus) -> None: ...
        def _reschedule(self) -> None: ...
        def _switch_session(
            self, data: SessionKeyData, key: SecretKey | None, *, reset_windows: bool = False
        ) -> None: ...

    # ---------------------------------------------------------------- renewal
    def _maybe_renew_by_calls(self) -> None:
        renewal, status = self._renewal, self._core.status
        if renewal is None or status is None or self._core.model.current is not S.ACTIVE:
            return
        if renewal.due_by_calls(status.remaining_calls - self._core.reserved):
            self._start_renewal()

    def _arm_renewal_timer(self) -> None:
        if self._renewal_timer is not None:
            self._renewal_timer.cancel()
            self._renewal_timer = None
        renewal, session = self._renewal, self._session
        if renewal is None or session is None or self._core.model.current is not S.ACTIVE:
            return
        bound = session.valid_until
        if self._core.status is not None and self._core.status.exists:
            bound = min(bound, self._core.status.valid_until)
        due = renewal.due_at(bound)
        if due is not None and self._scheduler is not None:
            self._renewal_timer = self._scheduler.timers.schedule(due, self._start_renewal)

    def _start_renewal(self) -> None:
        renewal = self._renewal
        if renewal is None or self._closed:
            return
        # not while renewing, backing off (the retry timer starts it), given up (the last
        # failure stays in .error) or deciding a previous run's successor
        if not self._core.may_start_renewal(self._clock.now(), renewal.max_attempts):
            return
        self._core.renewal_started()
        self._renewal_done = anyio.Event()
        self._spawn(self._renew(), "renew")

    def _cancel_renewal(self) -> None:
        if self._renewal_timer is not None:
            self._renewal_timer.cancel()
            self._renewal_timer = None

    async def _renew(self) -> None:
        """Create a successor, persist it, register it (and its spending policies), then
        switch to it in one step and revoke the old key in the background.

        Nothing is committed before the successor is registered, confirmed and on record:
        any failure leaves the old session in charge (an unused successor that may have been
        registered is revoked). The successor's encrypted key is persisted *before* it is
        registered, so a crash cannot lose a registered key (the next open finishes the
        renewal, see ``_resume_renewal``). Executes keep using the old key until the switch;
        it is revoked only after the executes it signed have finished.
        """
        assert self._renewal is not None
        renewal = self._renewal
        old, old_status, generation = self._session, self._core.status, self._core.generation
        new_key: SecretKey | None = None
        data: SessionKeyData | None = None
        sent = committed = False
        try:
            if old is None or old_status is None:
                return
            duration = renewal.duration_seconds or self._default_duration
            max_calls = renewal.max_calls or old_status.max_calls or self._default_max_calls
            try:
                renewal.check_successor(duration, max_calls)
            except ChipiSessionError:
                # no retry can fix this
                self._core.renewal_failed(give_up=True, max_attempts=renewal.max_attempts)
                raise
            data, new_key = await self._new_session_key(duration)
            async with self._owner_guard():
                if generation != self._core.generation or not self._core.can("register"):
                    return  # replaced or revoked meanwhile (spent is fine: that is why)
                self._core.successor_on_record(data)
                await self._save_record()  # on record (encrypted) before it is sent
                sent = True
                allowed = old_status.allowed_entrypoints
                try:
                    tx = await self._register_key(
                        data.public_key, data.valid_until, max_calls, allowed
                    )
                    await self._confirm(tx)
                except _AppliedHashLost:
                    pass  # registered: the nonce is used
                for token_addr, pol in list(self._policies.known.items()):
                    try:
                        await self._policies.send_set(
                            data.public_key,
                            token_addr,
                            pol.max_per_call,
                            pol.max_per_window,
                            pol.window_seconds,
                        )
                    except _AppliedHashLost:
                        pass
                if generation != self._core.generation or not self._core.can("register"):
                    return
                if int(self._clock.now()) > data.valid_until:
                    raise ChipiSessionError(
                        ErrorCode.SESSION_EXPIRED, "the successor expired before the switch"
                    )
                self._commit_renewal(old, data, new_key, max_calls, allowed)
                new_key, committed = None, True
        except ChipiSessionError as exc:
            attempts = self._core.renewal_failed(
                give_up=self._core.renewal_attempts >= renewal.max_attempts,
                max_attempts=renewal.max_attempts,
            )
            self._record_failure("renew", exc)
            if (
                attempts < renewal.max_attempts
                and generation == self._core.generation
                and self._scheduler is not None
            ):
                retry_at = self._clock.now() + renewal.backoff(attempts)
                self._core.renewal_retry(retry_at)
                self._scheduler.timers.schedule(retry_at, self._start_renewal)
        finally:
            if new_key is not None:
                new_key.zero()
            if not committed and data is not None and self._core.successor is data:
                self._core.successor_on_record(None)
                if sent:  # it may be registered: an unused key must not stay valid
                    self._retire_later(data.public_key, None)
                self._persist()
            self._core.renewal_ended()
            if self._renewal_done is not None:
                self._renewal_done.set()
                self._renewal_done = None

    async def _save_record(self) -> None:
        """Save the session's record now (a store failure fails the caller)."""
        journal = self._journal
        if journal is not None:
            journal.mark_dirty()
            await journal.flush()

    def _commit_renewal(
        self,
        old: SessionKeyData,
        data: SessionKeyData,
        key: SecretKey | None,
        max_calls: int,
        allowed: tuple[int, ...],
    ) -> None:
        """Switch to a registered successor: synchronous, so it happens all at once."""
        old_key = self._session_key
        old_generation, in_flight = self._core.switch_to_successor(
            SessionStatus(data.valid_until, max_calls, 0, allowed)
        )
        self._switch_session(data, key, reset_windows=True)
        self._publish(
            SessionRenewed,
            previous_public_key=to_hex(old.public_key),
            new_public_key=to_hex(data.public_key),
        )
        self._transition(
            "register",
            reason="renewed",
            now=int(self._clock.now()),
            valid_until=data.valid_until,
            applied=True,
        )
        # the successor is usable now; retire the old key once its executes have finished
        self._retire_later(old.public_key, old_key, old_generation, in_flight)
        self._persist()

    def _retire_later(
        self,
        public_key: int,
        key: SecretKey | None,
        generation: int = -1,
        in_flight: int = 0,
    ) -> None:
        """Revoke a replaced (or unused) key in the background, after the ``in_flight``
        executes it signed (``generation``) have finished. On record until done."""
        drained = anyio.Event()
        record: list[Any] = [generation, in_flight, drained]
        if in_flight <= 0:
            drained.set()
        if self._retiring is None:
            self._retiring = []
        self._retiring.append(record)
        if public_key not in self._retire_pending:
            self._retire_pending.append(public_key)
        self._spawn(self._retire_key(public_key, key, record), "revoke_previous")

    async def _retire_key(
        self, public_key: int, key: SecretKey | None, record: list[Any]
    ) -> None:
        """Revoke a replaced key once the executes it signed have finished: nothing is ever
        signed by a revoked key, and the old key is zeroed before it is revoked.

        If the session closes first, the key stays in :attr:`retiring_keys` (and so in the
        store's record): the next ``hub.open`` revokes it.
        """
        try:
            await record[2].wait()
            if key is not None:
                key.zero()
            done = False
            async with self._owner_guard():
                try:
                    tx = await self._revoke_key(public_key)
                    self._publish(TransactionSubmitted, action="revoke_previous", tx_hash=tx)
                    done = True
                except _AppliedHashLost:
                    done = True
                except ChipiSessionError as exc:
                    self._record_failure("revoke_previous", exc)
            if done and public_key in self._retire_pending:
                self._retire_pending.remove(public_key)
                self._persist()
        finally:
            if key is not None:
                key.zero()
            if self._retiring is not None and record in self._retiring:
                self._retiring.remove(record)
                if not self._retiring:
                    self._retiring = None

    async def _resume_renewal(
        self,
        successor: SessionKeyData | None,
        retiring: Iterable[int],
        in_doubt: SubmitInfo | None = None,
    ) -> None:
        """Finish what a previous run left of a renewal (``hub.open``): revoke replaced keys
        whose retirement was interrupted; adopt a persisted successor if the chain has it
        registered, else drop it (kept on record while its register is still in doubt)."""
        for public_key in retiring:
            self._retire_later(public_key, None)
        current = self._session
        if successor is None:
            return
        if current is not None and current.public_key == successor.public_key:
            self._persist()  # the switch was saved; only the record's flag was not
            return
        if current is None:  # the slot was cleared meanwhile: an orphan, never adopted
            self._retire_later(successor.public_key, None)
            self._persist()
            return
        self._core.successor_on_record(successor)
        if in_doubt is not None:  # decided once its register's window closes; on record
            if self._scheduler is not None:
                self._scheduler.timers.schedule(
                    float(in_doubt.execute_before),
                    lambda: self._spawn(self._resume_renewal(successor, ()), "renew"),
                )
            return
        try:
            status = await self._backend.get_session_status(
                self._wallet.address, successor.public_key
            )
        except ChipiSessionError as exc:
            log.warning("renewal left by a previous run stays pending: %s", exc.code.value)
            return  # still on record: the next open tries again
        async with self._owner_guard():
            if self._core.successor is not successor:
                return
            self._core.successor_on_record(None)
            if not status.exists:
                self._persist()  # never registered: nothing to adopt
                self._arm_renewal_timer()
                self._maybe_renew_by_calls()
                return
            old = self._session
            self._new_generation()
            self._switch_session(successor, None)
            self._core.forget()
            self._core.learn_registered()
            self._apply_status(status)
            self._reschedule()
            if old is not None:
                self._publish(
                    SessionRenewed,
                    previous_public_key=to_hex(old.public_key),
                    new_public_key=to_hex(successor.public_key),
                )
                self._retire_later(old.public_key, None)
            self._persist()
