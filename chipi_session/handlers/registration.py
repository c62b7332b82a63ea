"""Owner-signed writes: registering and revoking a session key, one at a time; creating one.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"; the rules: docs/engine.md,
"Actions"). Whether an action may run is the core's rule (``SessionCore.refusal``, over the
``lifecycle`` table) and what a write changes is the core's too (``registered``,
``revoked``); these coroutines run the effects in between: the owner key decrypted for one
write, the journalled send, the confirmation, the events and the record.

Owner-signed writes of a session (register, revoke, spending policies, renewal's) hold
:meth:`OwnerWrites.guard` one at a time and check the state they act on once they hold it.
A write is marked in flight (``SessionCore.writing_key``) until its local effect is applied,
so a status read overlapping it is stale. A session replaced while a write was in flight
(another generation) keeps its new state: the write's effect is not applied to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from ..backends.base import TransactionConfirmer, require_writer
from ..errors import ChipiSessionError, ErrorCode
from ..events import StatusRefreshed, TransactionSubmitted
from ..felts import U64_MAX
from ..session_inputs import AppliedHashLost, check_count, check_positive_int, hash_lost_error
from ..session_inputs import parse_entrypoints as _parse_entrypoints
from ..types import SessionKeyData, SessionState, SessionStatus

if TYPE_CHECKING:
    from .context import (
        CreationContext,
        OwnerSend,
        OwnerWriteContext,
        RegistrationContext,
        SessionContext,
    )

__all__ = ["OwnerWrites", "confirm", "create", "register", "register_key", "revoke", "revoke_key"]


class OwnerWrites:
    """One session's owner-signed writes: the lock that serializes them and the write itself
    (bearer token, owner key decrypted for this write only and zeroed after it, sent through
    the journalled write path). It holds its session (``ctx``) and the lock, nothing else
    (the facade makes it on a session's first owner-signed write)."""

    __slots__ = ("_ctx", "_lock")

    def __init__(self, ctx: OwnerWriteContext) -> None:
        self._ctx = ctx
        self._lock: anyio.Lock | None = None

    def guard(self) -> anyio.Lock:
        """The lock every owner-signed write of this session holds (made on first use, in
        the event loop)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def write(self, action: str, public_key: int, send: OwnerSend) -> str:
        """``send(owner_key, bearer_token, on_submit)`` once, journalled; raises
        :class:`~chipi_session.session_inputs.AppliedHashLost` if it executed but its hash
        was lost."""
        ctx = self._ctx
        token = await ctx.keys.bearer_token()
        owner = await ctx.keys.owner_key()
        try:
            return await ctx.write(
                action, public_key, lambda on_submit: send(owner, token, on_submit)
            )
        finally:
            owner.zero()


async def confirm(backend: object, tx_hash: str) -> None:
    """Wait for the backend to confirm a transaction, when it can (see
    :class:`~chipi_session.backends.base.TransactionConfirmer`)."""
    if isinstance(backend, TransactionConfirmer):
        await backend.confirm_transaction(tx_hash)


async def register_key(
    ctx: SessionContext, public_key: int, until: int, max_calls: int, allowed: tuple[int, ...]
) -> str:
    """Register (or update) ``public_key`` on the wallet: one owner-signed write."""
    return await ctx.owner_writes.write(
        "register",
        public_key,
        lambda owner, token, on_submit: require_writer(
            ctx.backend, "register a session key"
        ).add_or_update_session_key(
            ctx.wallet,
            owner,
            session_public_key=public_key,
            valid_until=until,
            max_calls=max_calls,
            allowed_entrypoints=allowed,
            bearer_token=token,
            on_submit=on_submit,
        ),
    )


async def revoke_key(ctx: SessionContext, public_key: int) -> str:
    """Revoke ``public_key`` on the wallet: one owner-signed write."""
    return await ctx.owner_writes.write(
        "revoke",
        public_key,
        lambda owner, token, on_submit: require_writer(
            ctx.backend, "revoke a session key"
        ).revoke_session_key(
            ctx.wallet,
            owner,
            session_public_key=public_key,
            bearer_token=token,
            on_submit=on_submit,
        ),
    )


async def register(
    ctx: RegistrationContext,
    max_calls: int | None,
    allowed_entrypoints: Iterable[int | str] | None,
    valid_until: int | None,
    default_max_calls: int,
) -> str:
    """``register_session``: register the local session (owner-signed, serialized);
    ``max_calls`` None is ``default_max_calls``."""
    async with ctx.owner_writes.guard():
        return await _register_locked(
            ctx, max_calls, allowed_entrypoints, valid_until, default_max_calls
        )


async def _register_locked(
    ctx: RegistrationContext,
    max_calls: int | None,
    allowed_entrypoints: Iterable[int | str] | None,
    valid_until: int | None,
    default_max_calls: int,
) -> str:
    calls_budget = default_max_calls if max_calls is None else max_calls
    check_count(calls_budget, "max_calls")
    allowed = _parse_entrypoints(allowed_entrypoints)
    ctx.require_supported()
    session = ctx.require_session()
    until = session.valid_until if valid_until is None else valid_until
    check_positive_int(until, "valid_until", U64_MAX)
    if until > session.valid_until:
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT,
            "valid_until may not exceed the session's own validUntil: session signatures "
            "carry that value, so a later on-chain expiry would never be usable",
        )
    core = ctx.core
    refused = core.refusal("register", now=int(ctx.clock.now()), valid_until=until)
    if refused is not None:
        raise refused
    generation = core.generation
    landed = core.landed_mark()
    lost: AppliedHashLost | None = None
    with ctx.core.writing_key(session.public_key):
        try:
            tx = await register_key(ctx, session.public_key, until, calls_budget, allowed)
            await confirm(ctx.backend, tx)
        except AppliedHashLost as exc:
            tx, lost = "", exc
        if generation != core.generation:
            return tx  # the session was replaced meanwhile; its state is not ours
        _apply_register(
            ctx, tx, lost is not None, SessionStatus(until, calls_budget, 0, allowed), landed
        )
    if lost is not None:
        raise hash_lost_error("register")
    return tx


def _apply_register(
    ctx: RegistrationContext, tx: str, lost: bool, status: SessionStatus, landed: int
) -> None:
    """The chain registered this session: calls_used is 0 again. Executes still in
    flight or in doubt stay counted (they may land after the register)."""
    core = ctx.core
    core.registered(status, landed_since=landed)
    core.renewal_reset()  # a new budget: what a successor inherits changed
    if not lost:
        ctx.publish(TransactionSubmitted, action="register", tx_hash=tx)
    # the chain registered it: only the bound it registered counts (lifecycle guard)
    ctx.transition(
        "register", now=int(ctx.clock.now()), valid_until=status.valid_until, applied=True
    )
    ctx.publish(StatusRefreshed, status=core.status)
    ctx.check_exhausted()
    ctx.persist()


async def revoke(ctx: RegistrationContext) -> str:
    """``revoke_session``: revoke the local session on chain (owner-signed, serialized);
    the local session is kept, revoked, and its key zeroed."""
    async with ctx.owner_writes.guard():
        return await _revoke_locked(ctx)


async def _revoke_locked(ctx: RegistrationContext) -> str:
    ctx.require_supported()
    session = ctx.require_session()
    core = ctx.core
    refused = core.refusal("revoke")
    if refused is not None:
        raise refused
    generation = core.generation
    lost = False
    with ctx.core.writing_key(session.public_key):
        try:
            tx = await revoke_key(ctx, session.public_key)
            await confirm(ctx.backend, tx)
        except AppliedHashLost:
            tx, lost = "", True
    if generation != core.generation:
        return tx
    core.revoked()
    ctx.keys.zero()
    ctx.cancel_renewal()
    if not lost:
        ctx.publish(TransactionSubmitted, action="revoke", tx_hash=tx)
    if core.model.current is not SessionState.REVOKED:  # may have changed while awaiting
        ctx.transition("revoke")
    ctx.persist()
    if lost:
        raise hash_lost_error("revoke")
    return tx


async def create(
    ctx: CreationContext, duration_seconds: int | None, default_duration: int
) -> SessionKeyData:
    """``create_session``: a new key, persisted (``on_session_created``) before it becomes
    the local session; if that fails the previous session stays."""
    duration = default_duration if duration_seconds is None else duration_seconds
    check_positive_int(duration, "duration_seconds", U64_MAX)
    ctx.require_supported()
    data, key = await ctx.new_session_key(duration)
    # commit: nothing below awaits
    ctx.new_generation()
    ctx.adopt_session(data, key)
    ctx.core.forget()
    ctx.core.renewal_reset()
    ctx.transition("create")
    ctx.persist()
    return data
