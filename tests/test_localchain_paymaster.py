"""The paymaster (Chipi's backend, played by LocalChain), the async SessionBackend methods on
asyncio and trio, and hypothesis invariants of the session rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipi_session.backends import SessionBackend
from chipi_session.clock import ManualClock
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import selector
from chipi_session.hashing import ANY_CALLER, SN_MAIN, typed_data_message_hash
from chipi_session.keys import SecretKey, session_signature
from chipi_session.localchain import ContractPanic, LocalChain
from chipi_session.localchain.account import VALID
from chipi_session.localchain.testing import outside_execute, owner_invoke, session_invoke
from chipi_session.selfcalls import (
    add_or_update_session_key_call,
    revoke_session_key_call,
    set_spending_policy_call,
)
from chipi_session.types import Call, SessionStatus, SpendingPolicy, WalletType

from .helpers import RECIPIENT, World

START = 1_000_000
PIN = "1234"
ALICE = RECIPIENT  # what World.transfer pays by default
SESSION = SecretKey(0x5E55_1011_0000_0000_0000_0001)


def register_session(
    world: World,
    *,
    valid_until: int | None = None,
    max_calls: int = 100,
    allowed: tuple[int, ...] = (),
) -> int:
    """Register ``SESSION`` by an owner-signed INVOKE; returns its ``valid_until``."""
    vu = world.chain.now() + 3600 if valid_until is None else valid_until
    call = add_or_update_session_key_call(
        world.wallet.address, SESSION.public_key, vu, max_calls, allowed
    )
    owner_invoke(world.chain, world.wallet.address, world.owner, [call])
    return vu


def sponsored_session(
    world: World, calls: list[Call], valid_until: int, key: SecretKey = SESSION
) -> str:
    """``calls`` through the paymaster, signed by ``SESSION``."""
    td = world.chain.prepare_typed_data(world.wallet.address, calls)
    h = typed_data_message_hash(td, world.wallet.address)
    return world.chain.execute_sponsored(
        world.wallet.address, td, session_signature(SESSION, h, valid_until)
    )


def session_status(world: World) -> SessionStatus:
    return world.chain.session_status(world.wallet.address, SESSION.public_key)


# -- setup -------------------------------------------------------------------------------------


def test_create_wallet(world: World) -> None:
    w = world.wallet
    assert w.wallet_type is WalletType.CHIPI and w.owner_public_key == world.owner.public_key
    assert world.chain.call(w.address, "get_public_key") == [w.owner_public_key]
    assert world.chain.call(w.address, "getPublicKey") == [w.owner_public_key]
    assert world.chain.get_nonce(w.address) == 0
    given_key = world.chain.create_wallet(PIN, private_key=0x777, wallet_type=WalletType.READY)
    assert given_key.wallet_type is WalletType.READY
    assert world.vault.decrypt(given_key.encrypted_private_key, PIN).reveal() == 0x777
    assert given_key.address != w.address
    assert isinstance(world.chain, SessionBackend)
    assert world.chain.requires_bearer_token is False


# -- paymaster ---------------------------------------------------------------------------------


def test_prepare_typed_data_shape(world: World) -> None:
    td = world.chain.prepare_typed_data(world.wallet.address, [world.transfer(5)])
    msg = td["message"]
    assert td["primaryType"] == "OutsideExecution"
    assert td["domain"] == {
        "name": "Account.execute_from_outside",
        "version": "2",
        "chainId": hex(SN_MAIN),
        "revision": "1",
    }
    assert {f["name"]: f["type"] for f in td["types"]["OutsideExecution"]}["Execute After"] == (
        "u128"
    )
    assert int(msg["Caller"], 16) == ANY_CALLER
    assert int(msg["Execute After"], 16) == START - 60
    assert int(msg["Execute Before"], 16) == START + 3600
    assert msg["Calls"] == [
        {
            "To": hex(world.token),
            "Selector": hex(selector("transfer")),
            "Calldata": [hex(ALICE), "0x5", "0x0"],
        }
    ]
    other = world.chain.prepare_typed_data(world.wallet.address, [world.transfer(5)])
    assert other["message"]["Nonce"] != msg["Nonce"]
    with pytest.raises(ChipiSessionError) as info:
        world.chain.prepare_typed_data(0x1234, [world.transfer()])
    assert info.value.code is ErrorCode.INVALID_INPUT


def test_execute_sponsored_session(world: World) -> None:
    vu = register_session(world)
    tx_hash = sponsored_session(world, [world.transfer(7)], vu)
    receipt = world.chain.get_receipt(tx_hash)
    assert receipt is not None and receipt.status == "SUCCEEDED" and receipt.results == ((1,),)
    assert world.chain.balance_of(world.token, ALICE) == 7
    assert session_status(world).calls_used == 1
    assert world.chain.get_transaction_status(tx_hash) == "ACCEPTED_ON_L2"
    assert world.chain.get_transaction_status("0x1") is None


def test_paymaster_refuses_altered_typed_data(world: World) -> None:
    vu = register_session(world)
    td = world.chain.prepare_typed_data(world.wallet.address, [world.transfer(7)])
    h = typed_data_message_hash(td, world.wallet.address)
    sig = session_signature(SESSION, h, vu)
    for path, value in [
        (("message", "Calls", 0, "Calldata", 1), "0x3e8"),
        (("message", "Execute Before"), hex(START + 10**6)),
        (("message", "Caller"), "0x0"),
        (("domain", "chainId"), "0x1"),
    ]:
        altered = copy.deepcopy(td)
        node: Any = altered
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        with pytest.raises(ChipiSessionError, match="altered") as info:
            world.chain.execute_sponsored(world.wallet.address, altered, sig)
        assert info.value.code is ErrorCode.INVALID_INPUT
    forged = copy.deepcopy(td)
    forged["message"]["Nonce"] = hex(12345)
    with pytest.raises(ChipiSessionError, match="not issued") as info:
        world.chain.execute_sponsored(world.wallet.address, forged, sig)
    assert info.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError, match="not issued"):
        world.chain.execute_sponsored(world.wallet.address + 1, td, sig)
    with pytest.raises(ChipiSessionError, match="no message.Nonce"):
        world.chain.execute_sponsored(world.wallet.address, {"message": {}}, sig)
    assert session_status(world).calls_used == 0
    # the untouched typed data, even after a JSON round trip, still executes
    echoed = json.loads(json.dumps(td))
    assert world.chain.execute_sponsored(world.wallet.address, echoed, sig).startswith("0x")


def test_paymaster_refuses_replays(world: World) -> None:
    vu = register_session(world)
    td = world.chain.prepare_typed_data(world.wallet.address, [world.transfer(7)])
    sig = session_signature(SESSION, typed_data_message_hash(td, world.wallet.address), vu)
    world.chain.execute_sponsored(world.wallet.address, td, sig)
    with pytest.raises(ChipiSessionError, match="duplicated nonce") as info:
        world.chain.execute_sponsored(world.wallet.address, td, sig)
    assert info.value.code is ErrorCode.TRANSACTION_REJECTED
    assert world.chain.balance_of(world.token, ALICE) == 7 and session_status(world).calls_used == 1


def test_an_issued_request_handed_back_as_is(world: World) -> None:
    """The in-process path (``issue_request`` / ``execute_issued``): once, only while it is
    pending, and only the very request: a look-alike with other calls is refused."""
    vu = register_session(world)
    chain, wallet = world.chain, world.wallet.address
    request = chain.issue_request(wallet, [world.transfer(7)])
    sig = session_signature(SESSION, chain._request_hash(request), vu)
    forged = attrs.evolve(request, calls=(world.transfer(700),))
    with pytest.raises(ChipiSessionError, match="altered") as info:
        chain.execute_issued(forged, sig)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert chain.execute_issued(request, sig).startswith("0x")
    with pytest.raises(ChipiSessionError, match="duplicated nonce") as info:
        chain.execute_issued(request, sig)
    assert info.value.code is ErrorCode.TRANSACTION_REJECTED
    never = attrs.evolve(request, nonce=request.nonce + 1)
    with pytest.raises(ChipiSessionError, match="not issued"):
        chain.execute_issued(never, sig)
    assert chain.balance_of(world.token, ALICE) == 7 and session_status(world).calls_used == 1
    # its typed data is what prepare_typed_data hands out for such a request
    td = chain.prepare_typed_data(wallet, [world.transfer(7)])
    again = chain.issue_request(wallet, [world.transfer(7)])
    assert set(td) == set(again.typed_data(chain.chain_id))
    assert td["message"]["Calls"] == again.typed_data(chain.chain_id)["message"]["Calls"]


def test_paymaster_expired_window(world: World) -> None:
    vu = register_session(world, valid_until=START + 86400)
    td = world.chain.prepare_typed_data(world.wallet.address, [world.transfer(7)])
    sig = session_signature(SESSION, typed_data_message_hash(td, world.wallet.address), vu)
    world.clock.advance(3600)
    with pytest.raises(ChipiSessionError, match="^.*SRC9: now >= execute_before$") as info:
        world.chain.execute_sponsored(world.wallet.address, td, sig)
    assert info.value.code is ErrorCode.TRANSACTION_REJECTED


def _sponsored_error(world: World, calls: list[Call], vu: int) -> Any:
    with pytest.raises(ChipiSessionError) as info:
        sponsored_session(world, calls, vu)
    return info.value


def test_paymaster_error_codes(world: World) -> None:
    w = world.wallet.address
    # never registered
    err = _sponsored_error(world, [world.transfer()], 0)
    assert (err.code, err.message) == (
        ErrorCode.SESSION_NOT_REGISTERED,
        "Session: unauthorized selector",
    )
    err = _sponsored_error(world, [world.transfer()], START + 10)
    assert (err.code, err.message) == (
        ErrorCode.SESSION_NOT_REGISTERED,
        "Session: valid_until exceeded",
    )
    # entrypoint rules: whitelist, self-call, admin selector
    vu = register_session(world, allowed=(selector("transfer"),))
    err = _sponsored_error(
        world, [Call(to=world.token, selector="approve", calldata=[1, 1, 0])], vu
    )
    assert err.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
    vu = register_session(world, allowed=())
    err = _sponsored_error(world, [Call(to=w, selector="get_public_key")], vu)
    assert err.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
    err = _sponsored_error(world, [revoke_session_key_call(w, SESSION.public_key)], vu)
    assert err.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
    # bad signature
    td = world.chain.prepare_typed_data(w, [world.transfer()])
    r, s = SecretKey(0x4242).sign(typed_data_message_hash(td, w))  # right key id, wrong key
    with pytest.raises(ChipiSessionError) as info:
        world.chain.execute_sponsored(w, td, [SESSION.public_key, r, s, vu])
    assert (info.value.code, info.value.message) == (
        ErrorCode.INVALID_SIGNATURE,
        "SRC9: invalid signature",
    )
    # spending
    owner_invoke(
        world.chain,
        w,
        world.owner,
        [set_spending_policy_call(w, SESSION.public_key, world.token, 10, 15, 3600)],
    )
    err = _sponsored_error(world, [world.transfer(11)], vu)
    assert (err.code, err.message) == (
        ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED,
        "Spending: exceeds per-call",
    )
    sponsored_session(world, [world.transfer(10)], vu)
    err = _sponsored_error(world, [world.transfer(10)], vu)
    assert err.message == "Spending: exceeds window limit"
    err = _sponsored_error(world, [Call(to=world.token, selector="transfer", calldata=[1])], vu)
    assert (err.code, err.message) == (ErrorCode.INVALID_INPUT, "Spending: calldata too short")
    # exhausted
    vu = register_session(world, max_calls=1)
    sponsored_session(world, [world.transfer(1)], vu)
    err = _sponsored_error(world, [world.transfer(1)], vu)
    assert err.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED
    # expired
    vu = register_session(world, valid_until=START + 5)
    world.clock.set(START + 6)
    err = _sponsored_error(world, [world.transfer(1)], vu)
    assert err.code is ErrorCode.SESSION_EXPIRED
    # revoked
    owner_invoke(world.chain, w, world.owner, [revoke_session_key_call(w, SESSION.public_key)])
    err = _sponsored_error(world, [world.transfer(1)], vu)
    assert err.code is ErrorCode.SESSION_NOT_REGISTERED


def test_paymaster_inner_failure_is_not_an_error(world: World) -> None:
    vu = register_session(world)
    tx_hash = sponsored_session(world, [world.transfer(10**12), world.transfer(3)], vu)
    receipt = world.chain.get_receipt(tx_hash)
    assert receipt is not None and receipt.status == "SUCCEEDED"
    assert receipt.results == ((), (1,))
    assert world.chain.balance_of(world.token, ALICE) == 3


def test_paymaster_owner_path_wrong_owner(world: World) -> None:
    call = add_or_update_session_key_call(world.wallet.address, SESSION.public_key, START + 9, 1)
    td = world.chain.prepare_typed_data(world.wallet.address, [call])
    r, s = SecretKey(0x99).sign(typed_data_message_hash(td, world.wallet.address))
    with pytest.raises(ChipiSessionError) as info:
        world.chain.execute_sponsored(world.wallet.address, td, [r, s])
    assert (info.value.code, info.value.message) == (
        ErrorCode.INVALID_SIGNATURE,
        "SRC9: invalid signature",
    )


# -- the async SessionBackend ------------------------------------------------------------------


@pytest.mark.anyio
async def test_backend_end_to_end(world: World) -> None:
    chain, wallet, owner = world.chain, world.wallet, world.owner
    session = SecretKey.generate()
    pk, vu = session.public_key, START + 600
    tx = await chain.add_or_update_session_key(
        wallet,
        owner,
        session_public_key=pk,
        valid_until=vu,
        max_calls=5,
        allowed_entrypoints=[selector("transfer"), selector("approve")],
    )
    assert chain.get_receipt(tx) is not None
    status = await chain.get_session_status(wallet.address, pk)
    assert status == SessionStatus(vu, 5, 0, (selector("transfer"), selector("approve")))

    await chain.set_spending_policy(
        wallet,
        owner,
        session_public_key=pk,
        token=world.token,
        max_per_call=100,
        max_per_window=150,
        window_seconds=60,
    )
    policy = await chain.get_spending_policy(wallet.address, pk, world.token)
    assert policy == SpendingPolicy(100, 150, 60, 0, START)

    tx = await chain.execute_with_session(
        wallet, session, valid_until=vu, calls=[world.transfer(100)]
    )
    assert chain.balance_of(world.token, ALICE) == 100
    with pytest.raises(ChipiSessionError) as info:
        await chain.execute_with_session(
            wallet, session, valid_until=vu, calls=[world.transfer(100)]
        )
    assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
    world.clock.advance(60)  # the window resets exactly at window_start + window_seconds
    await chain.execute_with_session(wallet, session, valid_until=vu, calls=[world.transfer(100)])
    assert (await chain.get_session_status(wallet.address, pk)).calls_used == 2

    await chain.remove_spending_policy(wallet, owner, session_public_key=pk, token=world.token)
    assert not (await chain.get_spending_policy(wallet.address, pk, world.token)).exists

    # concurrent executes on one session: all land, none over-counts
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(
                lambda: chain.execute_with_session(
                    wallet, session, valid_until=vu, calls=[world.transfer(1)]
                )
            )
    assert (await chain.get_session_status(wallet.address, pk)).calls_used == 5
    with pytest.raises(ChipiSessionError) as info:
        await chain.execute_with_session(wallet, session, valid_until=vu, calls=[world.transfer()])
    assert info.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED

    await chain.add_or_update_session_key(
        wallet, owner, session_public_key=pk, valid_until=vu, max_calls=5, allowed_entrypoints=[]
    )
    world.clock.set(vu + 1)
    with pytest.raises(ChipiSessionError) as info:
        await chain.execute_with_session(wallet, session, valid_until=vu, calls=[world.transfer()])
    assert info.value.code is ErrorCode.SESSION_EXPIRED

    await chain.revoke_session_key(wallet, owner, session_public_key=pk)
    status = await chain.get_session_status(wallet.address, pk)
    assert not status.exists
    with pytest.raises(ChipiSessionError) as info:
        await chain.execute_with_session(wallet, session, valid_until=vu, calls=[world.transfer()])
    assert info.value.code is ErrorCode.SESSION_NOT_REGISTERED


@pytest.mark.anyio
async def test_backend_refuses_bad_input_and_wallets(world: World) -> None:
    chain, wallet, owner = world.chain, world.wallet, world.owner
    before = chain.block_number
    with pytest.raises(ChipiSessionError) as info:
        await chain.add_or_update_session_key(
            wallet,
            owner,
            session_public_key=SESSION.public_key,
            valid_until=2**64,
            max_calls=1,
            allowed_entrypoints=[],
        )
    assert info.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError) as info:
        await chain.set_spending_policy(
            wallet,
            owner,
            session_public_key=SESSION.public_key,
            token=world.token,
            max_per_call=-1,
            max_per_window=1,
            window_seconds=1,
        )
    assert info.value.code is ErrorCode.INVALID_INPUT
    ready = attrs.evolve(wallet, wallet_type=WalletType.READY)
    with pytest.raises(ChipiSessionError) as info:
        await chain.execute_with_session(
            ready, SESSION, valid_until=START + 5, calls=[world.transfer()]
        )
    assert info.value.code is ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION
    with pytest.raises(ChipiSessionError) as info:
        await chain.get_session_status(0x1234, SESSION.public_key)
    assert info.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError) as info:
        await chain.revoke_session_key(wallet, SecretKey(0x99), session_public_key=1)
    assert info.value.code is ErrorCode.INVALID_SIGNATURE
    assert chain.block_number == before


# -- hypothesis invariants ---------------------------------------------------------------------

OWNER_H = SecretKey(0x0123_4567)


def _fresh(max_calls: int) -> tuple[ManualClock, LocalChain, int, int, int]:
    clock = ManualClock(START)
    chain = LocalChain(clock=clock)
    account = chain.deploy_account(OWNER_H.public_key, address=0xACC0)
    token = chain.deploy_token("TKN", address=0x70C)
    chain.mint(token, account, 10**9)
    vu = START + 500
    chain.call(
        account,
        "add_or_update_session_key",
        [SESSION.public_key, vu, max_calls, 0],
        caller=account,
    )
    return clock, chain, account, token, vu


def _attempt(
    chain: LocalChain, account: int, calls: list[Call], vu: int, via: str, nonce: int
) -> bool:
    try:
        if via == "invoke":
            session_invoke(chain, account, SESSION, calls, valid_until=vu)
        else:
            outside_execute(chain, account, SESSION, calls, nonce=nonce, valid_until=vu)
    except (ChipiSessionError, ContractPanic):
        return False
    return True


_steps = st.lists(
    st.tuples(st.sampled_from(["invoke", "outside", "wait"]), st.integers(0, 200)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None)
@given(max_calls=st.integers(0, 4), steps=_steps)
def test_calls_used_never_exceeds_max_calls(max_calls: int, steps: list[tuple[str, int]]) -> None:
    clock, chain, account, token, vu = _fresh(max_calls)
    successes = 0
    for i, (op, arg) in enumerate(steps):
        if op == "wait":
            clock.advance(arg)
        else:
            calls = [Call(to=token, selector="transfer", calldata=[ALICE, arg, 0])]
            successes += _attempt(chain, account, calls, vu, op, nonce=i)
        _, mc, used, _ = chain.call(account, "get_session_data", [SESSION.public_key])
        assert used <= mc == max_calls
    assert used == successes


@settings(max_examples=20, deadline=None)
@given(revoke_at=st.integers(0, 3), steps=_steps)
def test_revoked_key_never_validates(revoke_at: int, steps: list[tuple[str, int]]) -> None:
    clock, chain, account, token, vu = _fresh(100)
    revoke = revoke_session_key_call(account, SESSION.public_key)
    for i, (op, arg) in enumerate(steps):
        if i == revoke_at:
            owner_invoke(chain, account, OWNER_H, [revoke])
        calls = [Call(to=token, selector="transfer", calldata=[ALICE, arg, 0])]
        ok = op == "wait" or _attempt(chain, account, calls, vu, op, nonce=i)
        if i >= revoke_at:
            assert op == "wait" or not ok
            r, s = SESSION.sign(0xABC)
            sig = [0xABC, 4, SESSION.public_key, r, s, vu]
            assert chain.call(account, "is_valid_signature", sig) == [0]
        else:
            assert ok or clock.now() > vu
        if op == "wait":
            clock.advance(arg)
    assert chain.call(account, "is_valid_signature", [0xABC, 4, SESSION.public_key, 1, 1, vu]) == [
        0
    ]
    assert VALID != 0


@settings(max_examples=30, deadline=None)
@given(
    max_per_call=st.integers(0, 60),
    max_per_window=st.integers(1, 100),
    window=st.integers(0, 100),
    spends=st.lists(
        st.tuples(st.integers(0, 80), st.integers(0, 60), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_spent_never_exceeds_max_per_window(
    max_per_call: int,
    max_per_window: int,
    window: int,
    spends: list[tuple[int, int, bool]],
) -> None:
    clock, chain, account, token, vu = _fresh(100)
    chain.call(
        account,
        "set_spending_policy",
        [SESSION.public_key, token, max_per_call, 0, max_per_window, 0, window],
        caller=account,
    )
    for i, (amount, wait, multicall) in enumerate(spends):
        clock.advance(wait)
        call = Call(
            to=token, selector="approve" if i % 2 else "transfer", calldata=[ALICE, amount, 0]
        )
        _attempt(chain, account, [call, call] if multicall else [call], vu, "outside", nonce=i)
        policy = chain.spending_policy(account, SESSION.public_key, token)
        assert policy.spent_in_window <= max_per_window
        assert policy.window_start <= clock.now()
