"""handlers/registration.py on its own: owner writes, register, revoke and create driven
directly.

The writes go to a LocalChain (the world fixture, a manual clock); the session core is a real
``SessionCore``; the facade is :class:`Ctx`, a plain recorder implementing
``RegistrationContext`` / ``CreationContext``. No ``ChipiSession`` is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
import pytest

from chipi_session import credentials
from chipi_session.backends.base import OnSubmit
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.events import Event, StateChanged, StatusRefreshed, TransactionSubmitted
from chipi_session.handlers import registration
from chipi_session.handlers.registration import OwnerWrites
from chipi_session.keys import SecretKey
from chipi_session.session_core import SessionCore
from chipi_session.session_inputs import AppliedHashLost
from chipi_session.types import SessionKeyData, SessionState, SessionStatus, SubmitInfo

from .helpers import PIN, World

pytestmark = pytest.mark.anyio

S = SessionState
DURATION = 3600


@attrs.define(eq=False)
class Keys:
    """The facade's ``keys`` (``SessionKeys``): the owner key (afresh per write: the write
    zeroes it), no bearer token, and the decrypted session key (``key``)."""

    world: World
    key: SecretKey | None = None

    async def bearer_token(self) -> str | None:
        return None

    async def owner_key(self) -> SecretKey:
        return self.world.owner

    def zero(self) -> None:
        if self.key is not None:
            self.key.zero()
            self.key = None


@attrs.define(eq=False)
class Ctx:
    """The facade's side of the handlers, as plain state and recorders."""

    world: World
    core: SessionCore = attrs.Factory(SessionCore)
    session: SessionKeyData | None = None
    closed: bool = False
    events: list[Event] = attrs.Factory(list)
    persisted: int = 0
    renewal_cancelled: int = 0
    exhausted_checks: int = 0
    #: every write sent: (action, public key)
    sent: list[tuple[str, int]] = attrs.Factory(list)
    #: runs inside each write, after it was sent (a write racing something local)
    during_write: Callable[[], None] = lambda: None
    #: makes each write's hash "lost" after it executed (AppliedHashLost)
    lose_hash: bool = False
    owner_writes: OwnerWrites = attrs.field(init=False)
    keys: Keys = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.owner_writes = OwnerWrites(self)
        self.keys = Keys(self.world)

    @property
    def key(self) -> SecretKey | None:
        return self.keys.key

    # OwnerWriteContext (and ``keys``)

    async def write(
        self, action: str, public_key: int, send: Callable[[OnSubmit], Awaitable[str]]
    ) -> str:
        submitted: list[SubmitInfo] = []
        tx = await send(submitted.append)
        self.sent.append((action, public_key))
        self.during_write()
        if self.lose_hash:
            raise AppliedHashLost(submitted[-1])
        return tx

    # SessionContext
    @property
    def wallet(self) -> Any:
        return self.world.wallet

    @property
    def backend(self) -> Any:
        return self.world.chain

    @property
    def clock(self) -> Any:
        return self.world.clock

    def require_supported(self) -> None:
        pass

    def require_session(self) -> SessionKeyData:
        if self.session is None:
            raise ChipiSessionError(ErrorCode.NO_SESSION, "no session")
        return self.session

    def publish(self, cls: type[Event], **fields: Any) -> None:
        fields.setdefault("session_public_key", None)
        self.events.append(cls(timestamp=self.world.clock.now(), **fields))

    def transition(self, trigger: str, *, reason: str | None = None, **kwargs: Any) -> None:
        change = self.core.transition(trigger, reason=reason, **kwargs)
        if change is not None:
            self.publish(
                StateChanged,
                previous=change.previous,
                current=change.current,
                reason=change.reason,
            )

    def persist(self) -> None:
        self.persisted += 1

    def spawn(self, coro: Awaitable[Any], action: str | None = None) -> None:
        raise AssertionError("registration spawns nothing")

    def record_failure(self, action: str, error: ChipiSessionError) -> None:
        raise AssertionError("registration records no failure itself")

    # RegistrationContext
    def check_exhausted(self) -> None:
        self.exhausted_checks += 1

    def cancel_renewal(self) -> None:
        self.renewal_cancelled += 1

    # CreationContext
    async def new_session_key(self, duration: int) -> tuple[SessionKeyData, SecretKey]:
        return await credentials.new_session_key(
            now=int(self.world.clock.now()),
            duration=duration,
            key_source=None,
            vault=self.world.vault,
            encrypt_key=PIN,
            on_session_created=None,
        )

    def new_generation(self) -> None:
        self.core.new_generation()
        self.keys.zero()

    def adopt_session(self, data: SessionKeyData, key: SecretKey) -> None:
        self.session, self.keys.key = data, key

    def of(self, cls: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


async def created(world: World) -> Ctx:
    """A context whose session was just created by the handler (state ``created``)."""
    ctx = Ctx(world)
    await registration.create(ctx, None, DURATION)
    return ctx


async def test_create_adopts_a_new_key_and_persists_it(world: World) -> None:
    ctx = Ctx(world)
    data = await registration.create(ctx, None, DURATION)
    assert ctx.session is data
    assert ctx.key is not None and ctx.key.public_key == data.public_key
    assert data.valid_until == int(world.clock.now()) + DURATION  # the default duration
    assert ctx.core.model.current is S.CREATED
    assert ctx.core.generation == 1
    assert ctx.persisted == 1
    assert [(e.previous, e.current) for e in ctx.of(StateChanged)] == [(S.NONE, S.CREATED)]


async def test_create_with_a_bad_duration_changes_nothing(world: World) -> None:
    ctx = Ctx(world)
    with pytest.raises(ChipiSessionError) as err:
        await registration.create(ctx, 0, DURATION)
    assert err.value.code is ErrorCode.INVALID_INPUT
    assert ctx.session is None and ctx.core.generation == 0 and ctx.persisted == 0


async def test_register_registers_the_key_on_chain_and_applies_it(world: World) -> None:
    ctx = await created(world)
    assert ctx.session is not None
    until = ctx.session.valid_until - 60
    tx = await registration.register(ctx, 7, None, until, 1000)
    on_chain = await world.chain.get_session_status(world.wallet.address, ctx.session.public_key)
    assert (on_chain.valid_until, on_chain.max_calls, on_chain.calls_used) == (until, 7, 0)
    assert ctx.core.status == SessionStatus(until, 7, 0, ())
    assert ctx.core.model.current is S.ACTIVE
    assert ctx.sent == [("register", ctx.session.public_key)]
    submitted = ctx.of(TransactionSubmitted)
    assert [(e.action, e.tx_hash) for e in submitted] == [("register", tx)]
    assert ctx.of(StatusRefreshed)[-1].status == ctx.core.status
    assert ctx.exhausted_checks == 1
    assert ctx.persisted == 2  # created, registered
    assert ctx.core.writing == {}  # no longer in flight


async def test_register_uses_the_default_budget_and_the_sessions_own_expiry(
    world: World,
) -> None:
    ctx = await created(world)
    assert ctx.session is not None
    await registration.register(ctx, None, None, None, 42)
    assert ctx.core.status == SessionStatus(ctx.session.valid_until, 42, 0, ())


async def test_register_refuses_a_later_expiry_and_a_missing_session(world: World) -> None:
    ctx = await created(world)
    assert ctx.session is not None
    with pytest.raises(ChipiSessionError) as err:
        await registration.register(ctx, 5, None, ctx.session.valid_until + 1, 1000)
    assert err.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError) as err:
        await registration.register(Ctx(world), 5, None, None, 1000)
    assert err.value.code is ErrorCode.NO_SESSION
    assert ctx.sent == [] and ctx.core.model.current is S.CREATED


async def test_register_refused_by_the_lifecycle_sends_nothing(world: World) -> None:
    ctx = await created(world)
    await registration.register(ctx, 5, None, None, 1000)
    await registration.revoke(ctx)
    sent = list(ctx.sent)
    with pytest.raises(ChipiSessionError) as err:
        await registration.register(ctx, 5, None, None, 1000)
    assert err.value.code is ErrorCode.SESSION_REVOKED
    assert ctx.sent == sent


async def test_a_register_of_a_replaced_session_is_not_applied(world: World) -> None:
    ctx = await created(world)
    ctx.during_write = ctx.core.new_generation  # the key was replaced while it was sent
    tx = await registration.register(ctx, 5, None, None, 1000)
    assert tx.startswith("0x")
    assert ctx.core.status is None and ctx.core.model.current is S.CREATED
    assert ctx.of(TransactionSubmitted) == []


async def test_a_register_whose_hash_was_lost_is_applied_then_reported(world: World) -> None:
    ctx = await created(world)
    ctx.lose_hash = True
    with pytest.raises(ChipiSessionError) as err:
        await registration.register(ctx, 5, None, None, 1000)
    assert err.value.code is ErrorCode.UNKNOWN_OUTCOME and err.value.applied
    assert ctx.core.model.current is S.ACTIVE  # it executed: applied all the same
    assert ctx.of(TransactionSubmitted) == []  # no hash to report


async def test_revoke_revokes_on_chain_drops_the_key_and_stops_renewal(world: World) -> None:
    ctx = await created(world)
    assert ctx.session is not None
    await registration.register(ctx, 5, None, None, 1000)
    key = ctx.key
    tx = await registration.revoke(ctx)
    on_chain = await world.chain.get_session_status(world.wallet.address, ctx.session.public_key)
    assert not on_chain.exists
    assert ctx.core.status == SessionStatus(0, 0, 0, ())
    assert ctx.core.seen_registered
    assert ctx.core.model.current is S.REVOKED
    assert ctx.key is None and key is not None and key.is_zeroed
    assert ctx.renewal_cancelled == 1
    assert [(e.action, e.tx_hash) for e in ctx.of(TransactionSubmitted)][-1] == ("revoke", tx)


async def test_revoke_of_a_replaced_session_changes_nothing_local(world: World) -> None:
    ctx = await created(world)
    await registration.register(ctx, 5, None, None, 1000)
    ctx.during_write = ctx.core.new_generation
    await registration.revoke(ctx)
    assert ctx.core.model.current is S.ACTIVE and ctx.renewal_cancelled == 0


async def test_owner_writes_zero_the_owner_key_even_when_the_send_fails(world: World) -> None:
    keys: list[SecretKey] = []

    class Keys:  # the session's ``keys``
        async def owner_key(self) -> SecretKey:
            keys.append(world.owner)
            return keys[-1]

        async def bearer_token(self) -> str | None:
            return "bearer"

    class Session:  # the OwnerWriteContext
        keys = Keys()

        async def write(self, action: str, public_key: int, send: Any) -> str:
            return str(await send(None))

    seen: list[tuple[str, int, str | None]] = []
    writes = OwnerWrites(Session())

    async def ok(key: SecretKey, bearer: str | None, on_submit: OnSubmit) -> str:
        assert not key.is_zeroed
        seen.append(("ok", key.public_key, bearer))
        return "0x1"

    async def boom(key: SecretKey, bearer: str | None, on_submit: OnSubmit) -> str:
        raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "down")

    assert await writes.write("register", 1, ok) == "0x1"
    with pytest.raises(ChipiSessionError):
        await writes.write("revoke", 1, boom)
    assert seen == [("ok", world.wallet.owner_public_key, "bearer")]
    assert len(keys) == 2 and all(k.is_zeroed for k in keys)


async def test_owner_writes_run_one_at_a_time(world: World) -> None:
    ctx = await created(world)
    guard = ctx.owner_writes.guard()
    assert ctx.owner_writes.guard() is guard  # one lock per session
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        async with guard:
            tg.start_soon(_register_then_note, ctx, order)
            await anyio.wait_all_tasks_blocked()
            order.append("holder done")  # the register waited for the lock
            assert ctx.sent == []
    assert order == ["holder done", "registered"]
    assert ctx.core.model.current is S.ACTIVE


async def _register_then_note(ctx: Ctx, order: list[str]) -> None:
    await registration.register(ctx, 5, None, None, 1000)
    order.append("registered")
