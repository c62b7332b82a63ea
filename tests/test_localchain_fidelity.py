"""LocalChain where it once disagreed with the real v33 contract (issue 13; docs/contract.md §14).

One test per rule, named after it: block info inside ``__validate__`` is rounded; signatures are
accepted by the Cairo corelib's rules, not the client's stricter ones; OZ v3's ``ISRC5_ID``;
OZ v3's ERC-20 events; and the direct-INVOKE effects that already agreed. Each rule is checked on
LocalChain here; what HTTP shows is checked through ``localnet`` in test_localnet_fidelity.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chipi_session import ChipiSession
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import FIELD_PRIME, selector
from chipi_session.hashing import outside_execution_hash, session_validate_hash
from chipi_session.keys import SecretKey, public_key_of, verify
from chipi_session.localchain import ChainEvent, ContractPanic
from chipi_session.localchain.account import VALID
from chipi_session.localchain.ecdsa import (
    check_by_curve_arithmetic,
    check_ecdsa_signature,
    generator,
    point_from_x,
)
from chipi_session.localchain.model import TxInfo
from chipi_session.localchain.runtime import Runtime
from chipi_session.localchain.state import ChainState
from chipi_session.localchain.testing import (
    outside_execute,
    owner_invoke,
    session_invoke,
    session_invoke_signature,
)
from chipi_session.types import Call
from chipi_session.vault import KdfCost, Vault

from .chain_env import ChainEnv
from .forged_signatures import (
    BOUND,
    FORGED_RANGES,
    ORDER,
    R_HIGH,
    R_LOW,
    forge_key,
    point_x,
    sign_any_hash,
)

HOUR = 3600
START = 1_800_001_000  # 1000 s into an hour
OWNER = SecretKey(0x0123456789ABCDEF0123456789ABCDEF)
SESSION = SecretKey(0x5E5510_4B3C2A19)
RECIPIENT = 0xBEEF
ISRC5_OZ_V3 = 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87748628532A055
ISRC5_WRONG = 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87F6E7F2E4C01A


class Env(ChainEnv):
    def transfer(self, amount: int = 10, to: int = RECIPIENT) -> Call:
        return Call(to=self.token, selector="transfer", calldata=[to, amount, 0])

    def self_call(self, entrypoint: str, calldata: Sequence[int]) -> Call:
        return Call(to=self.account, selector=entrypoint, calldata=list(calldata))

    def register(self, key: int, valid_until: int, max_calls: int = 10) -> None:
        calldata = [key, valid_until, max_calls, 0]
        assert owner_invoke(
            self.chain, self.account, OWNER, [self.self_call("add_or_update_session_key", calldata)]
        ).succeeded

    def set_policy(self, key: int, max_per_call: int, max_per_window: int, window: int) -> None:
        calldata = [key, self.token, max_per_call, 0, max_per_window, 0, window]
        assert owner_invoke(
            self.chain, self.account, OWNER, [self.self_call("set_spending_policy", calldata)]
        ).succeeded

    def calls_used(self, key: int = SESSION.public_key) -> int:
        return self.chain.view(self.account, "get_session_data", [key])[2]

    def spent(self, key: int = SESSION.public_key) -> int:
        return self.chain.spending_policy(self.account, key, self.token).spent_in_window

    def is_valid_signature(self, msg_hash: int, signature: Sequence[int]) -> int:
        return self.chain.view(
            self.account, "is_valid_signature", [msg_hash, len(signature), *signature]
        )[0]


@pytest.fixture
def env() -> Env:
    return Env.make(START, OWNER, minted=1_000_000)


# -- 1. __validate__ sees block info rounded down --------------------------------------------


def test_validate_sees_block_timestamp_rounded_down_to_the_hour(env: Env) -> None:
    valid_until = START + 100
    env.register(SESSION.public_key, valid_until)
    nonce = env.chain.get_nonce(env.account)
    env.clock.set(valid_until + 5)  # expired by real time, same hour
    receipt = session_invoke(
        env.chain, env.account, SESSION, [env.transfer(30)], valid_until=valid_until
    )
    assert receipt.succeeded
    assert receipt.block_timestamp == valid_until + 5  # the block itself has the real time
    assert env.calls_used() == 1
    assert env.balance(RECIPIENT) == 30
    assert env.chain.get_nonce(env.account) == nonce + 1
    # from the next hour on __validate__ sees a time past valid_until: rejected, nothing moves
    env.clock.set(valid_until - valid_until % HOUR + HOUR)
    with pytest.raises(ChipiSessionError) as info:
        session_invoke(env.chain, env.account, SESSION, [env.transfer(30)], valid_until=valid_until)
    assert info.value.code is ErrorCode.TRANSACTION_REJECTED
    assert env.calls_used() == 1 and env.balance(RECIPIENT) == 30
    assert env.chain.get_nonce(env.account) == nonce + 1


def test_validate_sees_block_number_rounded_down_to_100_and_execute_the_real_values() -> None:
    seen: list[tuple[int, int]] = []

    def probe(f: Any, cd: Any) -> list[int]:
        seen.append((f.now, f.block_number))
        return []

    runtime = Runtime(ChainState(), {"probe": {1: probe}})
    state = runtime.state
    state.contracts.set(0x77, "probe")
    tx = TxInfo(0, 0, (), 0, 0)
    runtime.begin_block(7 * HOUR + 3599, 1299)
    with runtime.validate_phase():
        runtime.execute(0x77, 1, [], caller=0, tx=tx)
    runtime.execute(0x77, 1, [], caller=0, tx=tx)
    assert seen == [(7 * HOUR, 1200), (7 * HOUR + 3599, 1299)]


def test_execute_phase_sees_the_real_block_timestamp(env: Env) -> None:
    env.register(SESSION.public_key, START + 10 * HOUR)
    env.set_policy(SESSION.public_key, 100, 1000, window=10)
    env.clock.set(START + 1500)  # __validate__ sees START - 1000; __execute__ START + 1500
    receipt = session_invoke(
        env.chain, env.account, SESSION, [env.transfer(40)], valid_until=START + 10 * HOUR
    )
    assert receipt.succeeded
    policy = env.chain.spending_policy(env.account, SESSION.public_key, env.token)
    assert (policy.spent_in_window, policy.window_start) == (40, START + 1500)


def test_outside_execution_sees_the_real_block_timestamp(env: Env) -> None:
    valid_until = START + 100
    env.register(SESSION.public_key, valid_until)
    env.clock.set(valid_until + 5)
    with pytest.raises(ContractPanic, match="^Session: unauthorized selector$"):
        outside_execute(
            env.chain, env.account, SESSION, [env.transfer()], nonce=1, valid_until=valid_until
        )
    assert env.calls_used() == 0
    assert not env.chain.is_outside_nonce_used(env.account, 1)


# -- 2. signatures: the corelib's check_ecdsa_signature --------------------------------------


@pytest.mark.parametrize("case", sorted(FORGED_RANGES))
def test_is_valid_signature_accepts_what_the_corelib_accepts(env: Env, case: str) -> None:
    r, s = FORGED_RANGES[case]
    msg_hash = 0xABC123
    key = forge_key(msg_hash, r, s)
    assert not verify(key, msg_hash, r, s)  # the client's verifier is stricter
    # owner path: an account whose owner key is the forged one
    account = env.chain.deploy_account(key)
    assert env.chain.view(account, "is_valid_signature", [msg_hash, 2, r, s]) == [VALID]
    assert env.chain.view(account, "is_valid_signature", [msg_hash + 1, 2, r, s]) == [0]
    # session path: the forged key registered as a session
    env.register(key, START + HOUR)
    assert env.is_valid_signature(msg_hash, [key, r, s, START + HOUR]) == VALID
    assert env.is_valid_signature(msg_hash + 1, [key, r, s, START + HOUR]) == 0


def test_is_valid_signature_accepts_the_owner_key_over_a_hash_at_or_above_2_251(env: Env) -> None:
    for msg_hash in (BOUND, BOUND + 0xDEAD, FIELD_PRIME - 1):
        r, s = sign_any_hash(msg_hash, OWNER.reveal(), nonce=0x1234567 + msg_hash % 97)
        assert not verify(OWNER.public_key, msg_hash, r, s)
        assert env.is_valid_signature(msg_hash, [r, s]) == VALID
        assert env.is_valid_signature(msg_hash - 1, [r, s]) == 0


def test_outside_execution_accepts_a_session_signature_with_s_above_order(env: Env) -> None:
    valid_until = START + HOUR
    calls = [env.transfer(25)]
    window = (START - 60, START + HOUR)
    msg_hash = outside_execution_hash(
        account=env.account,
        chain_id=env.chain.chain_id,
        caller=0,
        nonce=42,
        execute_after=window[0],
        execute_before=window[1],
        calls=calls,
    )
    r, s = R_LOW, ORDER + 5
    key = forge_key(msg_hash, r, s)
    env.register(key, valid_until)
    receipt = env.chain.execute_from_outside(
        env.account,
        caller=0,
        nonce=42,
        execute_after=window[0],
        execute_before=window[1],
        calls=calls,
        signature=[key, r, s, valid_until],
    )
    assert receipt.succeeded and receipt.results == ((1,),)
    assert env.balance(RECIPIENT) == 25
    assert env.chain.is_outside_nonce_used(env.account, 42)
    assert env.calls_used(key) == 1


def test_session_invoke_accepts_r_at_or_above_2_251(env: Env) -> None:
    valid_until = START + HOUR
    calls = [env.transfer(15)]
    nonce_after_registration = env.chain.get_nonce(env.account) + 1
    msg_hash = session_validate_hash(
        account=env.account,
        chain_id=env.chain.chain_id,
        nonce=nonce_after_registration,
        valid_until=valid_until,
        calls=calls,
    )
    r, s = R_HIGH, 0x5EED
    key = forge_key(msg_hash, r, s)
    env.register(key, valid_until)
    receipt = env.chain.invoke(env.account, calls, [key, r, s, valid_until])
    assert receipt.succeeded
    assert env.balance(RECIPIENT) == 15 and env.calls_used(key) == 1


def test_corelib_rejects_only_its_listed_cases(env: Env) -> None:
    msg_hash = 0xABC123
    r, s = OWNER.sign(msg_hash)
    assert env.is_valid_signature(msg_hash, [r, s]) == VALID
    not_on_curve = next(x for x in range(1, 100) if point_from_x(x) is None)
    rejected = {
        "s == 0": (msg_hash, OWNER.public_key, r, 0),
        "s == ORDER": (msg_hash, OWNER.public_key, r, ORDER),
        "r == ORDER": (msg_hash, OWNER.public_key, ORDER, s),
        "r not on the curve": (msg_hash, OWNER.public_key, not_on_curve, s),
        "key not on the curve": (msg_hash, not_on_curve, r, s),
        "equation fails": (msg_hash + 1, OWNER.public_key, r, s),
    }
    for what, (z, key, rr, ss) in rejected.items():
        assert not check_ecdsa_signature(z, key, rr, ss), what
        assert not check_by_curve_arithmetic(z, key, rr, ss), what
    assert env.is_valid_signature(msg_hash, [r, 0]) == 0
    assert env.is_valid_signature(msg_hash, [ORDER, s]) == 0
    assert env.is_valid_signature(msg_hash, [r, ORDER]) == 0
    # -s is the same signature to the corelib (the x of ±s·R is the same)
    assert env.is_valid_signature(msg_hash, [r, ORDER - s]) == VALID


_felts = st.integers(0, FIELD_PRIME - 1)


@settings(max_examples=40, deadline=None)
@given(z=_felts, key=_felts, r=_felts, s=_felts)
def test_corelib_check_is_total_over_felts(z: int, key: int, r: int, s: int) -> None:
    """Any four felts get an answer (random ones: not valid), never an exception."""
    # z = 0, key = r, s = ±r is a real (degenerate) solution: r·Q and s·R are the same point
    assume(not (z == 0 and key == r and s in (r, (-r) % ORDER)))
    assert check_ecdsa_signature(z, key, r, s) is False
    assert check_ecdsa_signature(z, key, r, s + FIELD_PRIME) is False  # not a felt
    assert check_ecdsa_signature(-z - 1, key, r, s) is False


def test_corelib_check_agrees_with_the_standard_verifier_inside_its_ranges() -> None:
    """The fast path hands standard-range signatures to keys.verify; the curve arithmetic
    (python-ecdsa) must decide them the same, and its points must be starknet's."""
    rng = random.Random(13)
    for k in (1, 2, 0xC0FFEE, ORDER - 1):
        assert point_x(generator() * k) == public_key_of(k)
    for _ in range(8):
        private_key = rng.randrange(1, ORDER)
        key = public_key_of(private_key)
        msg_hash = rng.randrange(1, BOUND)
        r, s = SecretKey(private_key).sign(msg_hash)
        for z in (msg_hash, msg_hash ^ 1):
            expected = verify(key, z, r, s)
            assert check_ecdsa_signature(z, key, r, s) is expected
            assert check_by_curve_arithmetic(z, key, r, s) is expected
        assert check_ecdsa_signature(msg_hash, key, r, s)


# -- 3. SRC-5 ------------------------------------------------------------------------------


def test_supports_interface_knows_oz_v3_isrc5_id(env: Env) -> None:
    assert env.chain.view(env.account, "supports_interface", [ISRC5_OZ_V3]) == [1]
    assert env.chain.view(env.account, "supports_interface", [ISRC5_WRONG]) == [0]


# -- 4. ERC-20 events ------------------------------------------------------------------------

TRANSFER_EV = selector("Transfer")
APPROVAL_EV = selector("Approval")


def test_transfer_from_emits_approval_then_transfer(env: Env) -> None:
    spender = env.chain.deploy_account(SESSION.public_key)
    approve = Call(to=env.token, selector="approve", calldata=[spender, 500, 0])
    assert owner_invoke(env.chain, env.account, OWNER, [approve]).succeeded
    pull = Call(to=env.token, selector="transfer_from", calldata=[env.account, 0xCAFE, 120, 0])
    receipt = owner_invoke(env.chain, spender, SESSION, [pull])
    assert receipt.succeeded
    assert list(receipt.events) == [
        ChainEvent(env.token, (APPROVAL_EV, env.account, spender), (380, 0)),
        ChainEvent(env.token, (TRANSFER_EV, env.account, 0xCAFE), (120, 0)),
    ]
    # an unlimited allowance is not spent, so only Transfer
    unlimited = Call(to=env.token, selector="approve", calldata=[spender, 2**128 - 1, 2**128 - 1])
    assert owner_invoke(env.chain, env.account, OWNER, [unlimited]).succeeded
    pull = Call(to=env.token, selector="transferFrom", calldata=[env.account, 0xCAFE, 1, 0])
    receipt = owner_invoke(env.chain, spender, SESSION, [pull])
    assert list(receipt.events) == [
        ChainEvent(env.token, (TRANSFER_EV, env.account, 0xCAFE), (1, 0)),
    ]


def test_erc20_entrypoints_emit_oz_v3_events(env: Env) -> None:
    token, me = env.token, env.account
    cases = [
        ("transfer", [RECIPIENT, 7, 0], [(TRANSFER_EV, me, RECIPIENT, 7)]),
        ("approve", [RECIPIENT, 50, 0], [(APPROVAL_EV, me, RECIPIENT, 50)]),
        ("increase_allowance", [RECIPIENT, 5, 0], [(APPROVAL_EV, me, RECIPIENT, 55)]),
        ("increaseAllowance", [RECIPIENT, 5, 0], [(APPROVAL_EV, me, RECIPIENT, 60)]),
        ("balance_of", [me], []),
        ("allowance", [me, RECIPIENT], []),
    ]
    for entrypoint, calldata, expected in cases:
        call = Call(to=token, selector=entrypoint, calldata=calldata)
        receipt = owner_invoke(env.chain, me, OWNER, [call])
        assert [(*e.keys, e.data[0]) for e in receipt.events] == expected, entrypoint
    events_before = len(env.chain.events)
    env.chain.mint(token, RECIPIENT, 9)
    assert env.chain.events[events_before:] == [
        ChainEvent(token, (TRANSFER_EV, 0, RECIPIENT), (9, 0))
    ]


# -- 5. direct-INVOKE effects that already agreed ----------------------------------------------


def test_spending_revert_keeps_the_consumed_call_and_the_nonce_bump(env: Env) -> None:
    valid_until = START + HOUR
    env.register(SESSION.public_key, valid_until)
    env.set_policy(SESSION.public_key, 100, 1000, window=86400)
    nonce = env.chain.get_nonce(env.account)
    receipt = session_invoke(
        env.chain, env.account, SESSION, [env.transfer(200)], valid_until=valid_until
    )
    assert receipt.status == "REVERTED"
    assert receipt.revert_reason == "Spending: exceeds per-call"
    assert env.calls_used() == 1  # validate's consume stays
    assert env.chain.get_nonce(env.account) == nonce + 1
    assert env.balance(RECIPIENT) == 0 and env.spent() == 0


def test_spend_is_counted_even_when_the_token_call_fails(env: Env) -> None:
    valid_until = START + HOUR
    env.register(SESSION.public_key, valid_until)
    env.set_policy(SESSION.public_key, 10**7, 10**8, window=86400)
    too_much = env.transfer(2_000_000)  # the account holds 1_000_000
    receipt = session_invoke(env.chain, env.account, SESSION, [too_much], valid_until=valid_until)
    assert receipt.succeeded  # the multicall catches the failed call
    assert receipt.results == ((),)
    assert receipt.inner_failures == ((0, "ERC20: insufficient balance"),)
    assert env.spent() == 2_000_000
    assert env.balance(RECIPIENT) == 0 and env.calls_used() == 1


def test_revoking_a_session_keeps_its_spending_policy(env: Env) -> None:
    valid_until = START + HOUR
    env.register(SESSION.public_key, valid_until)
    env.set_policy(SESSION.public_key, 100, 1000, window=86400)
    assert session_invoke(
        env.chain, env.account, SESSION, [env.transfer(60)], valid_until=valid_until
    ).succeeded
    before = env.chain.spending_policy(env.account, SESSION.public_key, env.token)
    revoke = env.self_call("revoke_session_key", [SESSION.public_key])
    assert owner_invoke(env.chain, env.account, OWNER, [revoke]).succeeded
    assert env.chain.view(env.account, "get_session_data", [SESSION.public_key]) == [0, 0, 0, 0]
    assert env.chain.spending_policy(env.account, SESSION.public_key, env.token) == before
    env.register(SESSION.public_key, valid_until)  # re-adding finds the old window
    assert env.spent() == 60


def test_execute_does_not_recheck_the_admin_blocklist(env: Env) -> None:
    valid_until = START + HOUR
    env.register(SESSION.public_key, valid_until)
    calls = [env.self_call("revoke_session_key", [SESSION.public_key])]
    signature = session_invoke_signature(
        env.chain, env.account, SESSION, calls, valid_until=valid_until
    )
    # __validate__ refuses the admin selector...
    with pytest.raises(ChipiSessionError):
        env.chain.invoke(env.account, calls, signature)
    # ...but __execute__ on its own (caller 0, the session signature in tx_info) runs it
    calldata = [1, env.account, selector("revoke_session_key"), 1, SESSION.public_key]
    out = env.chain.call(env.account, "__execute__", calldata, signature=signature)
    assert out == [1, 0]
    assert env.chain.view(env.account, "get_session_data", [SESSION.public_key])[0] == 0


def test_is_valid_signature_accepts_a_signed_valid_until_above_the_stored_one(env: Env) -> None:
    stored = START + HOUR
    env.register(SESSION.public_key, stored)
    r, s = SESSION.sign(0xFEED)
    assert env.is_valid_signature(0xFEED, [SESSION.public_key, r, s, stored + 10**6]) == VALID
    # the SNIP-9 path binds it (sig.valid_until <= stored); is_valid_signature does not
    with pytest.raises(ContractPanic, match="^Session: valid_until exceeded$"):
        outside_execute(
            env.chain, env.account, SESSION, [env.transfer()], nonce=5, valid_until=stored + 1
        )


# -- 5b. the engine's budget follows the chain ------------------------------------------------

PIN = "1234"


def _engine(env: Env, vault: Vault) -> ChipiSession:
    wallet = env.chain.create_wallet(PIN, private_key=OWNER.reveal())
    env.chain.mint(env.token, wallet.address, 1_000_000)
    return ChipiSession(
        wallet=wallet,
        encrypt_key=PIN,
        backend=env.chain,
        clock=env.clock,
        vault=vault,
        auto_check_status=False,
        key_source=lambda: SESSION.reveal(),
    )


@pytest.mark.anyio
async def test_engine_budget_follows_a_reverted_direct_invoke(env: Env) -> None:
    """A spending revert of a direct INVOKE (sent with the same key outside the engine) uses
    one call: after a status refresh the engine's budget shows it."""
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    env.chain.vault = vault
    async with _engine(env, vault) as session:
        await session.create_session(HOUR)
        await session.register_session(max_calls=5)
        await session.set_spending_policy(env.token, 100, 1000, 86400)
        wallet = session.wallet.address
        assert session.session is not None
        receipt = session_invoke(
            env.chain,
            wallet,
            SESSION,
            [env.transfer(500)],
            valid_until=session.session.valid_until,
        )
        assert receipt.status == "REVERTED"
        await session.refetch_status()
        assert session.remaining_calls == 4
        assert env.chain.session_status(wallet, SESSION.public_key).calls_used == 1


@pytest.mark.anyio
async def test_engine_budget_unchanged_by_a_refused_outside_execution(env: Env) -> None:
    """The engine's own path is SNIP-9, atomic: a spending panic there uses no call."""
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    env.chain.vault = vault
    async with _engine(env, vault) as session:
        await session.create_session(HOUR)
        await session.register_session(max_calls=5)
        await session.set_spending_policy(env.token, 1000, 1000, 86400)
        wallet = session.wallet.address
        # the owner lowers the cap behind the engine's back: its pre-flight cannot know
        lower = Call(
            to=wallet,
            selector="set_spending_policy",
            calldata=[SESSION.public_key, env.token, 100, 0, 1000, 0, 86400],
        )
        assert owner_invoke(env.chain, wallet, OWNER, [lower]).succeeded
        with pytest.raises(ChipiSessionError) as info:
            await session.execute_with_session([env.transfer(500)])
        assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
        assert session.remaining_calls == 5
        assert env.chain.session_status(wallet, SESSION.public_key).calls_used == 0
