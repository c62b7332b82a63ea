"""handlers/transitions.py: a state change fired on the core, published and followed by the
timers re-armed; expiry; a status applied and reconciled.

Driven directly over a recording ``TransitionContext`` with a real ``SessionCore`` (the rules
stay the core's; these tests check the effects run for each answer), then once through a real
session.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest

from chipi_session import SessionState, StateChanged, StatusRefreshed
from chipi_session.events import Event
from chipi_session.handlers import transitions
from chipi_session.handlers.context import TransitionContext
from chipi_session.session_core import SessionCore
from chipi_session.types import ExpiryReason, SessionKeyData, SessionStatus, SubmitInfo

from .helpers import World, settle

pytestmark = pytest.mark.anyio

S = SessionState
NOW = 1_000_000
KEY = SessionKeyData(public_key=0xABC, encrypted_private_key="blob", valid_until=NOW + 3600)


@attrs.define
class FakeClock:
    value: float = NOW

    def now(self) -> float:
        return self.value


@attrs.define
class FakeRenewer:
    checks: int = 0

    def maybe_renew_by_calls(self) -> None:
        self.checks += 1


@attrs.define
class Recorder:
    """The part of ``TransitionContext`` the transitions use, recording what they do."""

    session: SessionKeyData | None = KEY
    core: SessionCore = attrs.Factory(SessionCore)
    clock: FakeClock = attrs.Factory(FakeClock)
    renewer: FakeRenewer = attrs.Factory(FakeRenewer)
    published: list[tuple[type[Event], dict[str, Any]]] = attrs.Factory(list)
    reschedules: int = 0
    persisted: int = 0
    spawned: list[Any] = attrs.Factory(list)

    def publish(self, cls: type[Event], **fields: Any) -> None:
        self.published.append((cls, fields))

    def reschedule(self) -> None:
        self.reschedules += 1

    def persist(self) -> None:
        self.persisted += 1

    def spawn(self, coro: Any, action: str | None = None) -> None:
        self.spawned.append(coro)
        coro.close()  # never run here: the recheck is handlers/doubts' (its own tests)


def ctx(recorder: Recorder) -> TransitionContext:
    return recorder  # type: ignore[return-value]  # the part the transitions use


def states(recorder: Recorder) -> list[tuple[S, S, str]]:
    return [
        (f["previous"], f["current"], f["reason"])
        for cls, f in recorder.published
        if cls is StateChanged
    ]


def active(recorder: Recorder, max_calls: int = 5, used: int = 0) -> None:
    recorder.core.transition("create")
    recorder.core.transition("register")
    recorder.core.registered(SessionStatus(KEY.valid_until, max_calls, used))


def test_a_visible_change_is_published_logged_and_rearms_the_timers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    with caplog.at_level(logging.DEBUG, logger="chipi_session.engine"):
        transitions.transition(ctx(recorder), "create")
    assert recorder.core.model.current is S.CREATED
    assert states(recorder) == [(S.NONE, S.CREATED, recorder.core.model.reason)]
    assert recorder.reschedules == 1
    assert [r.getMessage() for r in caplog.records] == ["session 0xabc: none -> created (create)"]


def test_an_invisible_change_publishes_nothing_but_still_rearms() -> None:
    recorder = Recorder()
    active(recorder)
    transitions.transition(ctx(recorder), "execute")  # active -> active
    assert recorder.published == [] and recorder.reschedules == 1


def test_expire_fires_only_where_the_table_allows_it() -> None:
    recorder = Recorder()
    transitions.expire(ctx(recorder), ExpiryReason.TIME)  # none: nothing to expire
    assert recorder.published == [] and recorder.reschedules == 0
    recorder.core.transition("create")
    transitions.expire(ctx(recorder), ExpiryReason.TIME)
    assert states(recorder) == [(S.CREATED, S.EXPIRED, "time")]
    transitions.expire(ctx(recorder), ExpiryReason.CALLS)  # already expired
    assert len(recorder.published) == 1 and recorder.reschedules == 1


def test_check_exhausted_expires_by_calls_once_the_budget_is_used() -> None:
    recorder = Recorder()
    active(recorder, max_calls=2, used=1)
    transitions.check_exhausted(ctx(recorder))
    assert recorder.core.model.current is S.ACTIVE and recorder.published == []
    recorder.core.registered(SessionStatus(KEY.valid_until, 2, 2))
    transitions.check_exhausted(ctx(recorder))
    assert states(recorder) == [(S.ACTIVE, S.EXPIRED, "calls")]


def test_apply_status_publishes_reconciles_and_checks_renewal() -> None:
    recorder = Recorder()
    recorder.core.transition("create")
    status = SessionStatus(KEY.valid_until, 5, 1)
    transitions.apply_status(ctx(recorder), status)
    assert recorder.core.status == status
    assert recorder.published[0] == (StatusRefreshed, {"status": status})
    assert states(recorder)[0][:2] == (S.CREATED, S.ACTIVE)
    assert recorder.persisted == 1  # the chain taught the core the key is registered
    assert recorder.renewer.checks == 1
    assert recorder.spawned == []  # nothing in doubt: no recheck


def test_a_status_that_changes_nothing_only_publishes_the_refresh() -> None:
    recorder = Recorder()
    active(recorder)
    status = SessionStatus(KEY.valid_until, 5, 1)
    transitions.apply_status(ctx(recorder), status)
    assert [cls for cls, _ in recorder.published] == [StatusRefreshed]
    assert recorder.persisted == 0 and recorder.renewer.checks == 0
    assert recorder.reschedules == 0


def test_a_status_with_writes_in_doubt_rechecks_them() -> None:
    recorder = Recorder()
    active(recorder)
    info = SubmitInfo(
        action="execute",
        wallet_address=0x1,
        outside_nonce=1,
        message_hash=0x2,
        execute_before=NOW + 60,
    )
    recorder.core.hold(info)
    transitions.apply_status(ctx(recorder), SessionStatus(KEY.valid_until, 5, 0))
    assert len(recorder.spawned) == 1


def test_reconcile_without_a_local_session_does_nothing() -> None:
    recorder = Recorder(session=None)
    transitions.reconcile(ctx(recorder), SessionStatus(0, 0, 0))
    assert recorder.published == [] and recorder.persisted == 0


def test_reconcile_to_revoked_does_not_check_renewal() -> None:
    recorder = Recorder()
    active(recorder)
    transitions.reconcile(ctx(recorder), SessionStatus(0, 0, 0))  # the chain dropped it
    assert states(recorder)[0][:2] == (S.ACTIVE, S.REVOKED)
    assert recorder.renewer.checks == 0


async def test_a_real_session_expires_by_calls_through_the_handler(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=1)
        await s.execute_with_session(world.transfer())
        await settle()
        assert s.session_state is S.EXPIRED and s.state_reason == "calls"
    changes = [(e.previous, e.current) for e in seen if isinstance(e, StateChanged)]
    assert changes[-1] == (S.ACTIVE, S.EXPIRED)


@attrs.define
class Reader(Recorder):
    """A recorder that can also read the chain (``refetch``)."""

    backend: Any = None
    wallet: Any = None
    supported: int = 0

    def require_supported(self) -> None:
        self.supported += 1


async def test_refetch_reads_the_chain_and_applies_it(world: World) -> None:
    data = await world.register_key(max_calls=4)
    reader = Reader(session=data, backend=world.chain, wallet=world.wallet)
    reader.clock.value = world.clock.now()
    reader.core.transition("restore")
    status = await transitions.refetch(ctx(reader))
    assert status is not None and status.max_calls == 4 and status.calls_used == 0
    assert reader.supported == 1 and reader.core.status == status
    assert reader.core.model.current is S.ACTIVE
    assert reader.published[0] == (StatusRefreshed, {"status": status})


async def test_refetch_without_a_session_reads_nothing(world: World) -> None:
    reader = Reader(session=None, backend=world.chain, wallet=world.wallet)
    assert await transitions.refetch(ctx(reader)) is None
    assert reader.supported == 0 and reader.published == []
