"""Auto-renewal that cannot loop, lose keys or half-commit (issue 9 §3), on both anyio backends
with the manual clock. Gates (tests/gated.py) and a dying backend force each observed case.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from chipi_session import (
    ActionFailed,
    ChipiSessionError,
    ErrorCode,
    RenewalPolicy,
    SessionHub,
    SessionRenewed,
    SessionState,
)
from chipi_session.events import Event
from chipi_session.felts import selector
from chipi_session.stores import MemoryStore

from .gated import GatedChain
from .helpers import PIN, RECIPIENT, World, eventually, settle

pytestmark = pytest.mark.anyio

REGISTER = "add_or_update_session_key"
REVOKE = "revoke_session_key"


def registered_keys(world: World) -> list[int]:
    """Every session key the wallet ever registered, in order."""
    sel = selector("SessionKeyAdded")
    return [
        e.keys[1]
        for e in world.chain.events
        if e.from_address == world.wallet.address and e.keys[0] == sel
    ]


def is_valid_on_chain(world: World, public_key: int) -> bool:
    return world.chain.session_status(world.wallet.address, public_key).exists


# ------------------------------------------------------------------ policies that would loop


def test_a_policy_whose_successor_is_due_at_once_is_refused() -> None:
    for kwargs in (
        {"min_remaining_seconds": 600, "duration_seconds": 600},
        {"min_remaining_seconds": 601.5, "duration_seconds": 600},
        {"min_remaining_calls": 10, "max_calls": 10},
        {"min_remaining_calls": 11, "max_calls": 10},
    ):
        with pytest.raises(ChipiSessionError) as info:
            RenewalPolicy(**kwargs)
        assert info.value.code is ErrorCode.INVALID_INPUT, kwargs
    RenewalPolicy(min_remaining_seconds=599, duration_seconds=600)
    RenewalPolicy(min_remaining_calls=9, max_calls=10)


@pytest.mark.parametrize(
    "field, value",
    [
        ("min_remaining_calls", -1),
        ("min_remaining_calls", 1.5),
        ("min_remaining_calls", True),
        ("min_remaining_calls", "3"),
        ("min_remaining_seconds", math.nan),
        ("min_remaining_seconds", math.inf),
        ("min_remaining_seconds", -1.0),
        ("min_remaining_seconds", "60"),
        ("duration_seconds", 0),
        ("duration_seconds", -100),
        ("duration_seconds", 3600.0),
        ("duration_seconds", 2**64),
        ("max_calls", 0),
        ("max_calls", 2**32),
        ("max_calls", "5"),
        ("retry_initial", math.nan),
        ("retry_initial", -1),
        ("retry_max", math.inf),
        ("max_attempts", -1),
        ("max_attempts", 2.0),
        ("max_attempts", None),
    ],
)
def test_every_field_is_validated(field: str, value: Any) -> None:
    with pytest.raises(ChipiSessionError) as info:
        RenewalPolicy(**{field: value})
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert field in info.value.message


async def test_policies_are_checked_against_the_defaults_a_session_fills_in(
    world: World,
) -> None:
    with pytest.raises(ChipiSessionError) as info:
        world.session(renewal=RenewalPolicy(min_remaining_seconds=600), default_duration_seconds=600)
    assert info.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError) as info:
        world.session(renewal=RenewalPolicy(min_remaining_calls=50), default_max_calls=50)
    assert info.value.code is ErrorCode.INVALID_INPUT
    async with SessionHub(backend=world.chain, clock=world.clock, vault=world.vault) as hub:
        with pytest.raises(ChipiSessionError) as info:
            await hub.open(
                wallet=world.wallet,
                encrypt_key=PIN,
                renewal=RenewalPolicy(min_remaining_calls=5),
                default_max_calls=5,
            )
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert len(hub) == 0


async def test_a_registration_below_the_threshold_is_not_renewed_in_a_loop(
    world: World,
) -> None:
    """The successor inherits the registered max_calls (3): with min_remaining_calls=5 it
    would be due at once. Refused once, without retries; the session keeps working."""
    gated = GatedChain(world.chain)
    seen: list[Event] = []
    async with world.session(
        backend=gated, renewal=RenewalPolicy(min_remaining_calls=5, retry_initial=1)
    ) as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=3)
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
            await settle()
            world.clock.advance(60)
            await settle()
        assert gated.calls[REGISTER] == 1  # no successor was ever registered
        failures = [e for e in seen if isinstance(e, ActionFailed) and e.action == "renew"]
        assert len(failures) == 1 and failures[0].error.code is ErrorCode.INVALID_INPUT
        assert world.balance(RECIPIENT) == 3
        assert not s.is_renewing


async def test_a_short_session_is_renewed_once_not_forever(world: World) -> None:
    gated = GatedChain(world.chain)
    renewed: list[Event] = []
    policy = RenewalPolicy(min_remaining_seconds=600, duration_seconds=3600)
    async with world.session(backend=gated, renewal=policy) as s:
        s.add_listener(lambda e: renewed.append(e) if isinstance(e, SessionRenewed) else None)
        await s.create_session(60)  # due as soon as it is registered
        await s.register_session(max_calls=10)
        await eventually(lambda: len(renewed) == 1 and not s.is_renewing)
        for _ in range(5):
            world.clock.advance(1)
            await settle()
        assert len(renewed) == 1
        assert gated.calls[REGISTER] == 2


async def test_a_nan_deadline_never_reaches_the_shared_timer(world: World) -> None:
    async with SessionHub(backend=world.chain, clock=world.clock, vault=world.vault) as hub:
        with pytest.raises(ValueError):
            hub.scheduler.timers.schedule(math.nan, lambda: None)
        fired: list[int] = []
        hub.scheduler.timers.schedule(world.clock.now() + 1, lambda: fired.append(1))
        world.clock.advance(1)
        await settle()
        assert fired == [1]  # the timer task is alive


# ------------------------------------------------------------------ no half-commit


class RejectingConfirm(GatedChain):
    """The successor's register is sent and accepted, then its confirmation fails."""

    def __init__(self, *args: Any, reject: int) -> None:
        super().__init__(*args)
        self.confirms = 0
        self.reject = reject

    async def confirm_transaction(self, tx_hash: str) -> None:
        self.confirms += 1
        if self.confirms == self.reject:
            raise ChipiSessionError(ErrorCode.TRANSACTION_REJECTED, "reverted (test)")
        await super().confirm_transaction(tx_hash)


async def check_old_session_in_charge(world: World, s: Any, first: Any, seen: list[Event]) -> None:
    await eventually(lambda: not s.is_renewing)
    await settle()
    assert not [e for e in seen if isinstance(e, SessionRenewed)]
    assert [e for e in seen if isinstance(e, ActionFailed) and e.action == "renew"]
    assert s.session.public_key == first.public_key
    assert s.has_active_session
    paid = world.balance(RECIPIENT)
    await s.execute_with_session(world.transfer(1))  # the old key still signs
    assert world.balance(RECIPIENT) == paid + 1
    # an unused successor that reached the chain does not stay valid there
    for key in registered_keys(world):
        if key != first.public_key:
            assert not is_valid_on_chain(world, key)


async def test_a_successor_whose_register_is_not_confirmed_is_never_switched_to(
    world: World,
) -> None:
    backend = RejectingConfirm(world.chain, reject=2)  # 1: the first register
    seen: list[Event] = []
    policy = RenewalPolicy(min_remaining_calls=2, max_attempts=1)
    async with world.session(backend=backend, renewal=policy) as s:
        s.add_listener(seen.append)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await check_old_session_in_charge(world, s, first, seen)


class FailingPolicyCopy(GatedChain):
    async def set_spending_policy(self, *args: Any, **kwargs: Any) -> str:
        if kwargs["session_public_key"] != self.first:
            raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "down", retryable=True)
        return await super().set_spending_policy(*args, **kwargs)

    first = 0


async def test_a_successor_whose_policies_could_not_be_copied_is_never_switched_to(
    world: World,
) -> None:
    backend = FailingPolicyCopy(world.chain)
    seen: list[Event] = []
    policy = RenewalPolicy(min_remaining_calls=2, max_attempts=1)
    async with world.session(backend=backend, renewal=policy) as s:
        s.add_listener(seen.append)
        first = await s.create_session()
        backend.first = first.public_key
        await s.register_session(max_calls=5)
        await s.set_spending_policy(world.token, 100, 1000, 3600)
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await check_old_session_in_charge(world, s, first, seen)


async def test_a_store_that_cannot_save_the_successor_stops_the_renewal_before_sending(
    world: World,
) -> None:
    class FullStore(MemoryStore):
        fail = False

        def save(self, record: Any, *, fencing_token: int | None = None) -> None:
            if self.fail:
                raise ChipiSessionError(ErrorCode.BACKEND_UNAVAILABLE, "disk full")
            super().save(record, fencing_token=fencing_token)

    store = FullStore()
    gated = GatedChain(world.chain)
    seen: list[Event] = []
    policy = RenewalPolicy(min_remaining_calls=2, max_attempts=1)
    async with SessionHub(
        backend=gated, clock=world.clock, vault=world.vault, store=store, renewal=policy
    ) as hub:
        hub.add_listener(seen.append)
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        await settle()
        store.fail = True
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await eventually(lambda: not s.is_renewing)
        assert gated.calls[REGISTER] == 1  # the successor was never sent
        store.fail = False
        await check_old_session_in_charge(world, s, first, seen)


# ------------------------------------------------------------------ crashes and closes


class ProcessDeath(BaseException):
    """The process died: no handler runs (only ``finally`` blocks)."""


class KillableStore(MemoryStore):
    """A store whose process can be killed -9: after that, nothing more reaches it."""

    killed = False

    def save(self, record: Any, *, fencing_token: int | None = None) -> None:
        if not self.killed:
            super().save(record, fencing_token=fencing_token)

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        if not self.killed:
            super().journal_remove(entry_id, fencing_token=fencing_token)


class DyingChain(GatedChain):
    """Kills the process (kill -9: nothing more is saved) when the successor's register is
    about to be sent ("before") or once the chain ran it ("after")."""

    def __init__(self, chain: Any, die: str, store: KillableStore) -> None:
        super().__init__(chain)
        self.die = die
        self.store = store
        self.registers = 0

    def kill(self) -> None:
        self.store.killed = True
        raise ProcessDeath

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        self.registers += 1
        if self.registers == 2 and self.die == "before":
            self.kill()
        tx = await super().add_or_update_session_key(*args, **kwargs)
        if self.registers == 2 and self.die == "after":
            self.kill()
        return tx


def hub_on(world: World, backend: Any, store: MemoryStore, **kwargs: Any) -> SessionHub:
    return SessionHub(backend=backend, clock=world.clock, vault=world.vault, store=store, **kwargs)


@pytest.mark.parametrize("die", ["before", "after"])
async def test_a_crash_mid_renewal_loses_no_key(world: World, die: str) -> None:
    store = KillableStore()
    policy = RenewalPolicy(min_remaining_calls=2)
    backend = DyingChain(world.chain, die, store)
    died = False
    try:
        async with hub_on(world, backend, store, renewal=policy) as hub:
            s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
            first = await s.create_session()
            await s.register_session(max_calls=5)
            for _ in range(3):
                await s.execute_with_session(world.transfer(1))
            await anyio.sleep_forever()  # the renewal kills the process
    except BaseException as exc:  # noqa: BLE001 - ProcessDeath in an exception group
        assert isinstance(exc, ProcessDeath) or (
            isinstance(exc, BaseExceptionGroup) and exc.subgroup(ProcessDeath) is not None
        ), exc
        died = True
    assert died
    keys = registered_keys(world)
    saved = store.load("u")
    assert saved is not None and saved.successor is not None  # on record before it was sent
    store.killed = False  # the next process
    async with hub_on(world, GatedChain(world.chain), store) as hub:  # no new renewal
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        await eventually(lambda: not s.is_renewing)
        await settle()
        assert s.session is not None
        if die == "after":  # registered before the crash: adopted, the old key retired
            assert len(keys) == 2
            assert s.session.public_key == keys[1] == saved.successor.public_key
            assert not is_valid_on_chain(world, first.public_key)
            assert s.remaining_calls == 5
        else:  # never sent: dropped, the old session carries on
            assert keys == [first.public_key]
            assert s.session.public_key == first.public_key
        # no registered key is lost: each is the session in use or revoked on chain
        for key in keys:
            assert key == s.session.public_key or not is_valid_on_chain(world, key)
        assert s.session_state is SessionState.ACTIVE
        assert s.renewal_successor is None and s.retiring_keys == ()
        await s.execute_with_session(world.transfer(1))
    record = store.load("u")
    assert record is not None and record.successor is None and record.retiring == ()


async def test_a_retirement_cut_short_by_close_is_finished_on_next_open(world: World) -> None:
    store = MemoryStore()
    gated = GatedChain(world.chain)
    policy = RenewalPolicy(min_remaining_calls=2)
    async with hub_on(world, gated, store, renewal=policy) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REVOKE, "before")  # the old key's revoke never gets out
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await gate.reached.wait()
        assert s.session.public_key != first.public_key  # type: ignore[union-attr]
        assert s.retiring_keys == (first.public_key,)
        await hub.close(s)
    assert is_valid_on_chain(world, first.public_key)  # still valid: the revoke never left
    record = store.load("u")
    assert record is not None and record.retiring == (first.public_key,)
    async with hub_on(world, GatedChain(world.chain), store, renewal=policy) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        await eventually(lambda: not s.is_renewing)
        await settle()
        assert not is_valid_on_chain(world, first.public_key)
        assert s.retiring_keys == ()
    record = store.load("u")
    assert record is not None and record.retiring == ()


async def test_a_successor_left_on_record_of_a_cleared_slot_is_revoked_not_adopted(
    world: World,
) -> None:
    store = MemoryStore()
    gated = GatedChain(world.chain)
    policy = RenewalPolicy(min_remaining_calls=2)
    async with hub_on(world, gated, store, renewal=policy) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        first = await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REGISTER, "after")  # the successor is registered; no answer yet
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await gate.reached.wait()
        s.clear_session()
        await hub.close(s)
    successor = [k for k in registered_keys(world) if k != first.public_key]
    assert len(successor) == 1 and is_valid_on_chain(world, successor[0])
    async with hub_on(world, GatedChain(world.chain), store) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        await eventually(lambda: not s.is_renewing)
        await settle()
        assert s.session is None and s.session_state is SessionState.NONE
        assert not is_valid_on_chain(world, successor[0])
    record = store.load("u")
    assert record is not None and record.successor is None and record.retiring == ()


class DiesAfterSubmit(GatedChain):
    """The successor's register reports its nonce, then the process dies before sending."""

    registers = 0

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        self.registers += 1
        if self.registers == 2:
            hook = kwargs.pop("on_submit")

            async def report_then_die(info: Any) -> None:
                await hook(info)
                raise ProcessDeath

            kwargs["on_submit"] = report_then_die
        return await super().add_or_update_session_key(*args, **kwargs)


async def test_a_successor_whose_register_is_in_doubt_is_decided_when_its_window_closes(
    world: World,
) -> None:
    store = MemoryStore()
    policy = RenewalPolicy(min_remaining_calls=2)
    try:
        async with hub_on(world, DiesAfterSubmit(world.chain), store, renewal=policy) as hub:
            s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
            first = await s.create_session()
            await s.register_session(max_calls=5)
            for _ in range(3):
                await s.execute_with_session(world.transfer(1))
            await anyio.sleep_forever()
    except BaseException as exc:  # noqa: BLE001 - ProcessDeath in an exception group
        assert isinstance(exc, BaseExceptionGroup) and exc.subgroup(ProcessDeath) is not None
    record = store.load("u")
    assert record is not None
    # on record either as the successor (the save on the way down did not run) or, when the
    # dying renewal's cleanup was saved, as a key to revoke
    if record.successor is not None:
        pending = record.successor.public_key
    else:
        assert len(record.retiring) == 1
        pending = record.retiring[0]
    async with hub_on(world, GatedChain(world.chain), store) as hub:
        s = await hub.open(key="u", wallet=world.wallet, encrypt_key=PIN)
        await settle()
        assert s.session.public_key == first.public_key  # type: ignore[union-attr]
        if record.successor is not None:
            assert s.renewal_successor == record.successor  # its window is still open
        world.clock.advance(3601)
        await eventually(lambda: s.renewal_successor is None and not s.is_renewing)
        await settle()
        assert s.session.public_key == first.public_key  # type: ignore[union-attr]
        assert not is_valid_on_chain(world, pending)
    record = store.load("u")
    assert record is not None and record.successor is None and record.retiring == ()


async def test_a_revoke_during_renewal_waits_and_revokes_the_session_in_charge(
    world: World,
) -> None:
    """Owner-signed writes run one at a time: a user's revoke that arrives while the
    successor is being registered runs after the switch, so it revokes the successor; the
    replaced key is retired as well. Nothing registered stays valid; the app says revoked."""
    gated = GatedChain(world.chain)
    policy = RenewalPolicy(min_remaining_calls=2)
    async with world.session(backend=gated, renewal=policy) as s:
        first = await s.create_session()
        await s.register_session(max_calls=5)
        gate = gated.hold(REGISTER, "before")  # the successor's register
        for _ in range(3):
            await s.execute_with_session(world.transfer(1))
        await gate.reached.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.revoke_session)
            await settle()
            assert gated.calls[REVOKE] == 0  # waits for the renewal's writes
            gate.release()
        await eventually(lambda: not s.is_renewing)
        await settle()
        assert s.session_state is SessionState.REVOKED
        assert s.session.public_key != first.public_key  # type: ignore[union-attr]
        for key in registered_keys(world):
            assert not is_valid_on_chain(world, key)


async def test_a_register_with_a_bigger_budget_re_enables_a_refused_renewal(
    world: World,
) -> None:
    renewed: list[Event] = []
    refused: list[Event] = []
    async with world.session(renewal=RenewalPolicy(min_remaining_calls=5)) as s:
        s.add_listener(lambda e: renewed.append(e) if isinstance(e, SessionRenewed) else None)
        s.add_listener(lambda e: refused.append(e) if isinstance(e, ActionFailed) else None)
        await s.create_session()
        await s.register_session(max_calls=3)  # the successor would be due at once: refused
        await s.execute_with_session(world.transfer(1))
        await eventually(lambda: not s.is_renewing and len(refused) == 1)
        await s.register_session(max_calls=10)
        for _ in range(6):
            await s.execute_with_session(world.transfer(1))
        await eventually(lambda: len(renewed) == 1 and not s.is_renewing)
        assert s.remaining_calls == 10
