"""Auto-renewal: replacing a session key before it runs out (docs/engine.md, "Auto-renewal";
``renewal.RenewalPolicy`` says when, ``session_core.RenewalState`` holds the sub-state).

A successor is created, persisted, registered (with its spending policies) and switched to in
one synchronous step; the old key is revoked once the executes it signed have finished.

Moved out of ``engine.py`` / ``renewing.py`` (it was a mixin of ``ChipiSession``): a
:class:`Renewer` the session holds, handed the session as a :class:`RenewalContext`. It owns
renewal's effects' own state — the armed timer, the event executes wait on while a successor
is prepared, the keys being retired — and reads and changes the session's state only through
the core's inputs and the context's methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio
import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..events import SessionRenewed, TransactionSubmitted
from ..felts import to_hex
from ..session_inputs import AppliedHashLost
from ..types import SessionKeyData, SessionState, SessionStatus, SubmitInfo
from . import registration, renewal_resume

if TYPE_CHECKING:
    from ..keys import SecretKey
    from ..renewal import RenewalPolicy
    from ..scheduling import TimerHandle
    from .context import RenewalContext

__all__ = ["Renewer"]

S = SessionState


@attrs.define(eq=False)
class _Retiring:
    """A replaced (or unused) key being retired: revoked once the executes it signed
    (``generation``, ``in_flight`` of them) have finished."""

    generation: int
    in_flight: int
    drained: anyio.Event


class Renewer:
    """Renewal's effects for one session (``ctx``), under ``policy`` (None: no auto-renewal;
    keys left to retire by a previous run are still revoked). ``default_duration`` and
    ``default_max_calls`` are the session's defaults a successor falls back on."""

    __slots__ = (
        "_ctx",
        "_default_duration",
        "_default_max_calls",
        "_done",
        "_policy",
        "_retire_pending",
        "_retiring",
        "_timer",
    )

    def __init__(
        self,
        ctx: RenewalContext,
        policy: RenewalPolicy | None,
        *,
        default_duration: int,
        default_max_calls: int,
    ) -> None:
        self._ctx = ctx
        self._policy = policy
        self._default_duration = default_duration
        self._default_max_calls = default_max_calls
        self._timer: TimerHandle | None = None
        #: set once a renewal in progress ends (executes wait on it for the successor)
        self._done: anyio.Event | None = None
        self._retiring: list[_Retiring] | None = None
        #: public keys of replaced sessions not yet revoked (persisted: resumed on open;
        #: None when there are none, so an idle session carries no list)
        self._retire_pending: list[int] | None = None

    # ------------------------------------------------------------------ reads
    @property
    def busy(self) -> bool:
        """A successor is being prepared, or a replaced key is still being revoked."""
        return self._ctx.core.renewing or self._retiring is not None

    @property
    def retiring_keys(self) -> tuple[int, ...]:
        """Public keys of replaced sessions still to be revoked on chain."""
        return tuple(self._retire_pending or ())

    def in_progress(self) -> anyio.Event | None:
        """The event a renewal in progress sets when it ends (None: none in progress)."""
        return self._done if self._ctx.core.renewing else None

    # --------------------------------------------------------------- triggers
    def maybe_renew_by_calls(self) -> None:
        """Start a renewal if the calls left (minus executes in flight) make it due."""
        core = self._ctx.core
        policy, status = self._policy, core.status
        if policy is None or status is None or core.model.current is not S.ACTIVE:
            return
        if policy.due_by_calls(status.remaining_calls - core.reserved):
            self.start()

    def arm(self) -> None:
        """(Re-)arm the timer at the time the policy makes renewal due (active sessions)."""
        self.cancel()
        ctx = self._ctx
        policy, session, core = self._policy, ctx.session, ctx.core
        if policy is None or session is None or core.model.current is not S.ACTIVE:
            return
        bound = session.valid_until
        if core.status is not None and core.status.exists:
            bound = min(bound, core.status.valid_until)
        due = policy.due_at(bound)
        timers = ctx.timers
        if due is not None and timers is not None:
            self._timer = timers.schedule(due, self.start)

    def cancel(self) -> None:
        """Disarm the renewal timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start(self) -> None:
        """Start a renewal in the background, unless one may not start now."""
        ctx, policy = self._ctx, self._policy
        if policy is None or ctx.closed:
            return
        # not while renewing, backing off (the retry timer starts it), given up (the last
        # failure stays in .error) or deciding a previous run's successor
        if not ctx.core.may_start_renewal(ctx.clock.now(), policy.max_attempts):
            return
        ctx.core.renewal_started()
        self._done = anyio.Event()
        ctx.spawn(self._renew(), "renew")

    def executes_finished(self, generation: int) -> None:
        """An execute signed by a replaced key (``generation``) finished: a key is retired
        once all of its executes have."""
        for record in self._retiring or ():
            if record.generation == generation:
                record.in_flight -= 1
                if record.in_flight <= 0:
                    record.drained.set()

    # ---------------------------------------------------------------- renewal
    async def _renew(self) -> None:
        """Create a successor, persist it, register it (and its spending policies), then
        switch to it in one step and revoke the old key in the background.

        Nothing is committed before the successor is registered, confirmed and on record:
        any failure leaves the old session in charge (an unused successor that may have been
        registered is revoked). The successor's encrypted key is persisted *before* it is
        registered, so a crash cannot lose a registered key (the next open finishes the
        renewal, see :meth:`resume`). Executes keep using the old key until the switch; it
        is revoked only after the executes it signed have finished.
        """
        ctx, core = self._ctx, self._ctx.core
        assert self._policy is not None
        policy = self._policy
        old, old_status, generation = ctx.session, core.status, core.generation
        new_key: SecretKey | None = None
        data: SessionKeyData | None = None
        sent = committed = False
        try:
            if old is None or old_status is None:
                return
            duration = policy.duration_seconds or self._default_duration
            max_calls = policy.max_calls or old_status.max_calls or self._default_max_calls
            try:
                policy.check_successor(duration, max_calls)
            except ChipiSessionError:
                core.renewal_failed(give_up=True, max_attempts=policy.max_attempts)
                raise  # no retry can fix this
            data, new_key = await ctx.new_session_key(duration)
            async with ctx.owner_writes.guard():
                if generation != core.generation or not core.can("register"):
                    return  # replaced or revoked meanwhile (spent is fine: that is why)
                core.successor_on_record(data)
                await self._save_record()  # on record (encrypted) before it is sent
                sent = True
                allowed = old_status.allowed_entrypoints
                try:
                    tx = await registration.register_key(
                        ctx, data.public_key, data.valid_until, max_calls, allowed
                    )
                    await registration.confirm(ctx.backend, tx)
                except AppliedHashLost:
                    pass  # registered: the nonce is used
                for token_addr, pol in list(ctx.policies.known.items()):
                    try:
                        await ctx.policies.send_set(
                            data.public_key, token_addr, pol.max_per_call, pol.max_per_window,
                            pol.window_seconds,
                        )  # fmt: skip
                    except AppliedHashLost:
                        pass
                if ctx.closed or generation != core.generation or not core.can("register"):
                    return  # a closed session never switches: its record is final (on
                    # record: the successor, decided by the next open from the chain)
                if int(ctx.clock.now()) > data.valid_until:
                    raise ChipiSessionError(
                        ErrorCode.SESSION_EXPIRED, "the successor expired before the switch"
                    )
                self._commit(old, data, new_key, max_calls, allowed)
                new_key, committed = None, True
        except ChipiSessionError as exc:
            attempts = core.renewal_failed(
                give_up=core.renewal_attempts >= policy.max_attempts,
                max_attempts=policy.max_attempts,
            )
            ctx.record_failure("renew", exc)
            timers = ctx.timers
            if (
                attempts < policy.max_attempts
                and generation == core.generation
                and timers is not None
            ):
                retry_at = ctx.clock.now() + policy.backoff(attempts)
                core.renewal_retry(retry_at)
                timers.schedule(retry_at, self.start)
        finally:
            if new_key is not None:
                new_key.zero()
            if not committed and data is not None and core.successor is data:
                core.successor_on_record(None)
                if sent:  # it may be registered: an unused key must not stay valid
                    self.retire_later(data.public_key, None)
                ctx.persist()
            core.renewal_ended()
            if self._done is not None:
                self._done.set()
                self._done = None

    async def _save_record(self) -> None:
        """Save the session's record now (a store failure fails the caller)."""
        journal = self._ctx.journal
        if journal is not None:
            journal.mark_dirty()
            await journal.flush()

    def _commit(
        self,
        old: SessionKeyData,
        data: SessionKeyData,
        key: SecretKey | None,
        max_calls: int,
        allowed: tuple[int, ...],
    ) -> None:
        """Switch to a registered successor: synchronous, so it happens all at once."""
        ctx = self._ctx
        old_generation, in_flight = ctx.core.switch_to_successor(
            SessionStatus(data.valid_until, max_calls, 0, allowed)
        )
        old_key = ctx.switch_session(data, key, reset_windows=True)
        ctx.publish(
            SessionRenewed,
            previous_public_key=to_hex(old.public_key),
            new_public_key=to_hex(data.public_key),
        )
        ctx.transition(
            "register",
            reason="renewed",
            now=int(ctx.clock.now()),
            valid_until=data.valid_until,
            applied=True,
        )
        # the successor is usable now; retire the old key once its executes have finished
        self.retire_later(old.public_key, old_key, old_generation, in_flight)
        ctx.persist()

    # ------------------------------------------------------------- retirement
    def retire_later(
        self,
        public_key: int,
        key: SecretKey | None,
        generation: int = -1,
        in_flight: int = 0,
    ) -> None:
        """Revoke a replaced (or unused) key in the background, after the ``in_flight``
        executes it signed (``generation``) have finished. On record until done."""
        record = _Retiring(generation, in_flight, anyio.Event())
        if in_flight <= 0:
            record.drained.set()
        if self._retiring is None:
            self._retiring = []
        self._retiring.append(record)
        if self._retire_pending is None:
            self._retire_pending = []
        if public_key not in self._retire_pending:
            self._retire_pending.append(public_key)
        self._ctx.spawn(self._retire_key(public_key, key, record), "revoke_previous")

    async def _retire_key(self, public_key: int, key: SecretKey | None, record: _Retiring) -> None:
        """Revoke a replaced key once the executes it signed have finished: nothing is ever
        signed by a revoked key, and the old key is zeroed before it is revoked.

        If the session closes first, the key stays in :attr:`retiring_keys` (and so in the
        store's record): the next ``hub.open`` revokes it.
        """
        ctx = self._ctx
        try:
            await record.drained.wait()
            if key is not None:
                key.zero()
            done = False
            async with ctx.owner_writes.guard():
                try:
                    tx = await registration.revoke_key(ctx, public_key)
                    ctx.publish(TransactionSubmitted, action="revoke_previous", tx_hash=tx)
                    done = True
                except AppliedHashLost:
                    done = True
                except ChipiSessionError as exc:
                    ctx.record_failure("revoke_previous", exc)
            pending = self._retire_pending
            if done and pending is not None and public_key in pending:
                pending.remove(public_key)
                if not pending:
                    self._retire_pending = None
                ctx.persist()
        finally:
            if key is not None:
                key.zero()
            if self._retiring is not None and record in self._retiring:
                self._retiring.remove(record)
                if not self._retiring:
                    self._retiring = None

    async def resume(
        self,
        successor: SessionKeyData | None,
        retiring: Iterable[int],
        in_doubt: SubmitInfo | None = None,
    ) -> None:
        """Finish what a previous run left of a renewal (``hub.open``): see
        :func:`~chipi_session.handlers.renewal_resume.resume`."""
        await renewal_resume.resume(self._ctx, self, successor, retiring, in_doubt)
