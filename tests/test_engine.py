"""ChipiSession on LocalChain, on asyncio and trio, with a manual clock."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from chipi_session import (
    ActionFailed,
    Call,
    ChipiSessionError,
    ErrorCode,
    SessionKeyData,
    SessionState,
    StateChanged,
    StatusRefreshed,
    TransactionSubmitted,
    WalletData,
)
from chipi_session.events import Event, TransactionConfirmed

from .helpers import PIN, RECIPIENT, World, make_world, secret_text_forms, settle

pytestmark = pytest.mark.anyio


def states(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.current.value, e.reason) for e in events if isinstance(e, StateChanged)]


async def test_full_lifecycle_moves_money_and_emits_ordered_events(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        assert s.session_state is SessionState.NONE
        data = await s.create_session(3600)
        assert s.session_state is SessionState.CREATED
        assert data.valid_until == world.clock.now() + 3600
        tx = await s.register_session(max_calls=5, allowed_entrypoints=["transfer"])
        assert tx.startswith("0x")
        assert s.has_active_session
        assert s.session_status is not None and s.session_status.max_calls == 5
        before = world.balance(RECIPIENT)
        tx = await s.execute_with_session([world.transfer(250)])
        assert world.balance(RECIPIENT) == before + 250
        assert s.remaining_calls == 4
        chain_status = world.chain.session_status(world.wallet.address, data.public_key)
        assert chain_status.calls_used == 1
        assert world.chain.get_receipt(tx) is not None
    # execute is active -> active: no StateChanged (TransactionSubmitted says it)
    assert states(seen) == [("created", "create"), ("active", "register")]
    submitted = [e.action for e in seen if isinstance(e, TransactionSubmitted)]
    assert submitted == ["register", "execute"]
    assert all(e.session_public_key == hex(data.public_key) for e in seen)


async def test_not_whitelisted_call_is_refused_locally(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=5, allowed_entrypoints=["approve"])
        nonce_before = world.chain.session_status(world.wallet.address, data.public_key)
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(1))
        assert info.value.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
        assert s.error == info.value
        assert world.chain.session_status(world.wallet.address, data.public_key) == nonce_before
        assert s.session_state is SessionState.ACTIVE


async def test_budget_runs_out_then_reregister(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=2)
        await s.execute_with_session(world.transfer())
        await s.execute_with_session(world.transfer())
        assert s.session_state is SessionState.EXPIRED
        assert s.state_reason == "calls"
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
        await s.register_session(max_calls=3)
        assert s.session_state is SessionState.ACTIVE
        assert s.remaining_calls == 3
        await s.execute_with_session(world.transfer())
    assert ("expired", "calls") in states(seen)


async def test_expiry_timer_fires_after_valid_until_without_polling(world: World) -> None:
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        data = await s.create_session(100)
        await s.register_session(max_calls=5)
        world.clock.set(data.valid_until)  # inclusive boundary: still valid
        await settle()
        assert s.session_state is SessionState.ACTIVE
        await s.execute_with_session(world.transfer())
        world.clock.advance(0.5)
        await settle()
        assert s.session_state is SessionState.EXPIRED
        assert s.state_reason == "time"
        expired = [e for e in seen if isinstance(e, StateChanged) and e.current == "expired"]
        assert len(expired) == 1 and expired[0].timestamp == data.valid_until + 0.5
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.SESSION_EXPIRED
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session()
        assert info.value.code is ErrorCode.SESSION_EXPIRED


async def test_created_but_unregistered_session_also_expires(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session(10)
        world.clock.set(data.valid_until + 1)
        await settle()
        assert s.session_state is SessionState.EXPIRED


async def test_revoke_blocks_execution_and_zeroes_the_key(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session()
        await s.execute_with_session(world.transfer())
        key = await s.keys.key_for(data)  # the key the execute was signed with (cached)
        await s.revoke_session()
        assert s.session_state is SessionState.REVOKED
        assert key.is_zeroed
        status = world.chain.session_status(world.wallet.address, data.public_key)
        assert status.valid_until == 0
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.SESSION_REVOKED
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session()
        assert info.value.code is ErrorCode.SESSION_REVOKED


async def test_clear_session_forgets_locally_only(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session()
        s.clear_session()
        assert s.session is None and s.session_state is SessionState.NONE
        assert world.chain.session_status(world.wallet.address, data.public_key).exists
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.NO_SESSION


async def test_restore_reconciles_from_chain(world: World) -> None:
    stored: list[SessionKeyData] = []
    async with world.session(on_session_created=stored.append) as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        await s.execute_with_session(world.transfer())
    async with world.session(stored_session=stored[0]) as s2:
        assert s2.session_state is SessionState.ACTIVE
        assert s2.remaining_calls == 2
        await s2.execute_with_session(world.transfer())
        await s2.revoke_session()
    async with world.session(stored_session=stored[0]) as s3:
        # reads 0 and this process never saw it registered: never registered, as far as it knows
        assert s3.session_state is SessionState.CREATED


async def test_restore_of_expired_session(world: World) -> None:
    stored: list[SessionKeyData] = []
    async with world.session(on_session_created=stored.append) as s:
        await s.create_session(50)
        await s.register_session(max_calls=1)
        await s.execute_with_session(world.transfer())
    async with world.session(stored_session=stored[0]) as s2:
        assert (s2.session_state, s2.state_reason) == (SessionState.EXPIRED, "calls")
    world.clock.advance(51)
    async with world.session(stored_session=stored[0]) as s3:
        assert (s3.session_state, s3.state_reason) == (SessionState.EXPIRED, "time")


async def test_hundred_concurrent_executes_spend_exactly_the_budget(world: World) -> None:
    results: list[str] = []
    errors: list[ChipiSessionError] = []
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=10)

        async def one() -> None:
            try:
                results.append(await s.execute_with_session(world.transfer(1)))
            except ChipiSessionError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
        assert len(results) == 10 and len(set(results)) == 10
        assert {e.code for e in errors} == {ErrorCode.SESSION_MAX_CALLS_EXCEEDED}
        status = world.chain.session_status(world.wallet.address, data.public_key)
        assert status.calls_used == 10
        assert world.balance(RECIPIENT) == 10
        assert s.session_state is SessionState.EXPIRED and not s.is_executing


class GatedBackend:
    """Wraps LocalChain; executes wait on a gate so a test can cancel them midway."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain
        self.gate = anyio.Event()
        self.entered = 0
        self.requires_bearer_token = False
        self.clock = chain.clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chain, name)

    async def execute_with_session(self, *args: Any, **kwargs: Any) -> str:
        self.entered += 1
        await self.gate.wait()
        return str(await self._chain.execute_with_session(*args, **kwargs))


async def test_cancelled_execute_releases_its_reservation(world: World) -> None:
    backend = GatedBackend(world.chain)
    async with world.session(backend=backend) as s:
        data = await s.create_session()
        await s.register_session(max_calls=1)
        async with anyio.create_task_group() as tg:
            cancel = anyio.CancelScope()

            async def run() -> None:
                with cancel:
                    await s.execute_with_session(world.transfer())

            tg.start_soon(run)
            while backend.entered == 0:
                await anyio.sleep(0)
            assert s.is_executing and s._core.reserved == 1
            cancel.cancel()
        assert not s.is_executing and s._core.reserved == 0
        assert s.session_state is SessionState.ACTIVE
        assert world.chain.session_status(world.wallet.address, data.public_key).calls_used == 0
        backend.gate.set()
        await s.execute_with_session(world.transfer())  # the budget is still there
        assert s.session_state is SessionState.EXPIRED


async def test_exit_cancels_inflight_action_and_zeroes_key(world: World) -> None:
    backend = GatedBackend(world.chain)
    failures: list[ChipiSessionError] = []
    session = world.session(backend=backend)

    async def run() -> None:
        try:
            await session.execute_with_session(world.transfer())
        except ChipiSessionError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as outer:
        async with session as s:
            data = await s.create_session()
            await s.register_session()
            key = await s.keys.key_for(data)
            outer.start_soon(run)
            while backend.entered == 0:
                await anyio.sleep(0)
    assert [f.code for f in failures] == [ErrorCode.CLOSED]
    assert key.is_zeroed
    assert not session.is_executing
    status = world.chain.session_status(world.wallet.address, data.public_key)
    assert status.calls_used == 0


@pytest.mark.parametrize("duration", [0, -5, 1.5, True, "60"])
async def test_bad_duration_is_refused_state_unchanged(world: World, duration: Any) -> None:
    failed: list[Event] = []
    async with world.session() as s:
        s.add_listener(failed.append)
        with pytest.raises(ChipiSessionError) as info:
            await s.create_session(duration)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert s.session_state is SessionState.NONE and s.session is None
        assert s.error == info.value
        assert [type(e) for e in failed] == [ActionFailed]


@pytest.mark.parametrize(
    "calls",
    [
        [],
        "transfer",
        [{"contractAddress": "0x1"}],
        [{"contractAddress": "0xzz", "entrypoint": "transfer", "calldata": []}],
        [{"contractAddress": "0x1", "entrypoint": "transfer", "calldata": ["-1"]}],
        [{"contractAddress": "0x1", "entrypoint": "transfer", "calldata": [2**252]}],
        42,
    ],
)
async def test_malformed_calls_are_refused(world: World, calls: Any) -> None:
    async with world.session() as s:
        await s.create_session()
        await s.register_session(max_calls=3)
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(calls)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert s.session_state is SessionState.ACTIVE and s.remaining_calls == 3


async def test_dict_calls_in_both_sdk_shapes_are_accepted(world: World) -> None:
    async with world.session() as s:
        await s.create_session()
        await s.register_session(max_calls=3, allowed_entrypoints=["transfer"])
        await s.execute_with_session(
            [
                {
                    "contractAddress": hex(world.token),
                    "entrypoint": "transfer",
                    "calldata": [hex(RECIPIENT), "5", "0x0"],
                },
                {
                    "contract_address": str(world.token),
                    "entrypoint": "transfer",
                    "calldata": [RECIPIENT, 6, 0],
                },
            ]
        )
        assert world.balance(RECIPIENT) == 11
        assert s.remaining_calls == 2  # a multicall is one transaction


async def test_wrong_pin_is_a_decryption_error_state_unchanged(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
    async with world.session(encrypt_key="9999", stored_session=data) as s2:
        with pytest.raises(ChipiSessionError) as info:
            await s2.register_session()
        assert info.value.code is ErrorCode.SESSION_DECRYPTION_FAILED
        assert s2.session_state is SessionState.CREATED


async def test_actions_without_a_session(world: World) -> None:
    async with world.session() as s:
        for action in (s.register_session(), s.revoke_session(), s.get_spending_policy(1)):
            with pytest.raises(ChipiSessionError) as info:
                await action
            assert info.value.code is ErrorCode.NO_SESSION
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.NO_SESSION
        assert await s.refetch_status() is None


async def test_register_before_create_and_execute_before_register(world: World) -> None:
    async with world.session() as s:
        await s.create_session()
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code is ErrorCode.SESSION_NOT_REGISTERED
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session(max_calls=-1)
        assert info.value.code is ErrorCode.INVALID_INPUT
        with pytest.raises(ChipiSessionError) as info:
            await s.register_session(allowed_entrypoints=["not a name!"])
        assert info.value.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
        assert s.session_state is SessionState.CREATED


async def test_non_chipi_wallet_is_refused(world: World) -> None:
    ready = WalletData(
        address=world.wallet.address,
        encrypted_private_key=world.wallet.encrypted_private_key,
        wallet_type="READY",
    )
    async with world.session(wallet=ready) as s:
        assert not s.supports_session
        with pytest.raises(ChipiSessionError) as info:
            await s.create_session()
        assert info.value.code is ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION


async def test_on_session_created_sync_async_and_failing(world: World) -> None:
    got: list[SessionKeyData] = []

    async def persist(data: SessionKeyData) -> None:
        await anyio.sleep(0)
        got.append(data)

    async with world.session(on_session_created=persist) as s:
        first = await s.create_session()
        assert got == [first]

    def explode(data: SessionKeyData) -> None:
        raise OSError("disk full")

    async with world.session(on_session_created=explode, stored_session=first) as s2:
        with pytest.raises(ChipiSessionError) as info:
            await s2.create_session()
        assert info.value.code is ErrorCode.SESSION_CREATION_FAILED
        assert s2.session == first  # the unpersisted session was discarded


async def test_status_polling_detects_an_external_revoke(world: World) -> None:
    seen: list[Event] = []
    async with world.session(auto_check_status=True, status_interval=30) as s:
        s.add_listener(seen.append)
        data = await s.create_session()
        await s.register_session()
        owner = world.vault.decrypt(world.wallet.encrypted_private_key, PIN)
        await world.chain.revoke_session_key(
            world.wallet, owner, session_public_key=data.public_key
        )
        assert s.session_state is SessionState.ACTIVE
        world.clock.advance(30)
        await settle()
        assert s.session_state is SessionState.REVOKED
        assert any(isinstance(e, StatusRefreshed) for e in seen)


async def test_spending_policy_is_checked_locally(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=10)
        await s.set_spending_policy(world.token, 100, 150, 3600)
        policy = await s.get_spending_policy(world.token)
        assert policy is not None and policy.max_per_window == 150
        await s.execute_with_session(world.transfer(100))
        used = world.chain.session_status(world.wallet.address, data.public_key).calls_used
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(60))
        assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
        assert world.chain.session_status(world.wallet.address, data.public_key).calls_used == used
        world.clock.advance(3600)
        await s.execute_with_session(world.transfer(60))  # a new window
        await s.remove_spending_policy(world.token)
        assert await s.get_spending_policy(world.token) is None
        with pytest.raises(ChipiSessionError) as info:
            await s.set_spending_policy(world.token, 10, 5, 60)
        assert info.value.code is ErrorCode.INVALID_SPENDING_POLICY


async def test_subscribers_get_ordered_events_and_slow_ones_drop_oldest(world: World) -> None:
    async with world.session() as s:
        async with s.subscribe() as fast, s.subscribe(buffer_size=2) as slow:
            await s.create_session()
            await s.register_session(max_calls=2)
            await s.execute_with_session(world.transfer())
            fast_events = fast.drain()
            assert states(fast_events) == [("created", "create"), ("active", "register")]
            # the execute's submission, then its confirmation (LocalChain's result is final
            # at submit: confirmed in the execute itself, handlers/execute.py)
            assert [type(ev) for ev in fast_events[-2:]] == [
                TransactionSubmitted,
                TransactionConfirmed,
            ]
            kept = slow.drain()
            assert len(kept) == 2 and kept == fast_events[-2:]
            assert slow.dropped == len(fast_events) - 2


async def test_async_iteration_of_a_subscription(world: World) -> None:
    async with world.session() as s:
        got: list[Event] = []
        async with anyio.create_task_group() as tg:
            async with s.subscribe() as events:

                async def reader() -> None:
                    async for ev in events:
                        got.append(ev)
                        if isinstance(ev, StateChanged) and ev.current == "active":
                            return

                tg.start_soon(reader)
                await s.create_session()
                await s.register_session()
        assert states(got) == [("created", "create"), ("active", "register")]


async def test_no_key_material_in_logs_reprs_or_events(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[Event] = []
    async with world.session() as s:
        s.add_listener(seen.append)
        await s.create_session()
        await s.register_session(max_calls=1)
        await s.execute_with_session(world.transfer())
        with pytest.raises(ChipiSessionError):
            await s.execute_with_session(world.transfer())
        assert s.session is not None
        key = await s.keys.key_for(s.session)  # the key the execute was signed with
        secret = key.reveal()
        owner = world.vault.decrypt(world.wallet.encrypted_private_key, PIN).reveal()
        texts = [caplog.text, repr(s), repr(s.session), repr(world.wallet), repr(key)]
        texts += [repr(e) for e in seen] + [str(s.error)]
    for secret_value in (secret, owner):
        for form in secret_text_forms(secret_value):
            assert all(form not in t for t in texts), form
    assert world.wallet.encrypted_private_key not in repr(world.wallet)


async def test_session_must_be_entered() -> None:
    world = make_world()
    s = world.session()
    with pytest.raises(ChipiSessionError) as info:
        await s.create_session()
    assert info.value.code is ErrorCode.CLOSED


async def test_execute_reports_chain_rejection_and_reconciles(world: World) -> None:
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session()
        owner = world.vault.decrypt(world.wallet.encrypted_private_key, PIN)
        await world.chain.revoke_session_key(
            world.wallet, owner, session_public_key=data.public_key
        )
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer())
        assert info.value.code in (ErrorCode.SESSION_NOT_REGISTERED, ErrorCode.SESSION_REVOKED)
        await settle()
        assert s.session_state is SessionState.REVOKED


async def test_call_object_with_name_selector(world: World) -> None:
    call = Call(to=world.token, selector="transfer", calldata=["0xbeef", "7", 0])
    assert call.selector == 0x83AFD3F4CAEDC6EEBF44246FE54E38C95E3179A5EC9EA81740ECA5B482D12E
    async with world.session() as s:
        await s.create_session()
        await s.register_session(allowed_entrypoints=[call.selector])
        await s.execute_with_session(call)
    assert world.balance(RECIPIENT) == 7
