"""SNIP-9, INVOKE and multicall semantics of LocalChain (docs/contract.md §4–§8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import selector
from chipi_session.hashing import (
    ANY_CALLER,
    SN_MAIN,
    SN_SEPOLIA,
    domain_hash,
    outside_execution_hash,
    outside_execution_typed_data,
    session_validate_hash,
    typed_data_message_hash,
)
from chipi_session.keys import SecretKey
from chipi_session.localchain import ContractPanic, Receipt
from chipi_session.localchain.account import VALID
from chipi_session.localchain.testing import (
    outside_execute,
    outside_signature,
    owner_invoke,
    session_invoke,
    session_invoke_signature,
)
from chipi_session.policy import ADMIN_SELECTORS
from chipi_session.selfcalls import (
    add_or_update_session_key_call,
    set_spending_policy_call,
)
from chipi_session.types import Call

from .chain_env import ChainEnv

START = 1_000_000
OWNER = SecretKey(0x0123456789ABCDEF0123456789ABCDEF)
SESSION = SecretKey(0x0FEDCBA9876543210FEDCBA987654321)
RELAYER = 0x5E1A7E5
ALICE = 0xA11CE
BOB = 0xB0B


class Env(ChainEnv):
    def add_session(
        self, *, valid_until: int | None = None, max_calls: int = 100, allowed: Sequence[int] = ()
    ) -> int:
        vu = self.now + 86400 if valid_until is None else valid_until
        call = add_or_update_session_key_call(
            self.account, SESSION.public_key, vu, max_calls, allowed
        )
        assert owner_invoke(self.chain, self.account, OWNER, [call]).inner_failures == ()
        return vu

    def set_policy(self, mpc: int, mpw: int, window: int, token: int | None = None) -> None:
        call = set_spending_policy_call(
            self.account, SESSION.public_key, token or self.token, mpc, mpw, window
        )
        assert owner_invoke(self.chain, self.account, OWNER, [call]).inner_failures == ()

    def calls_used(self) -> int:
        return self.session_data(SESSION.public_key)[2]

    def spent(self) -> int:
        policy = self.chain.spending_policy(self.account, SESSION.public_key, self.token)
        return policy.spent_in_window

    def transfer(self, amount: int = 10, to: int = ALICE) -> Call:
        return Call(to=self.token, selector="transfer", calldata=[to, amount, 0])

    def outside(self, calls: Sequence[Call], vu: int | None, nonce: int, **kw: object) -> Receipt:
        key = OWNER if vu is None else SESSION
        return outside_execute(
            self.chain,
            self.account,
            key,
            calls,
            nonce=nonce,
            valid_until=vu,
            **kw,  # type: ignore[arg-type]
        )

    def nonce_unused(self, nonce: int) -> bool:
        return self.chain.call(self.account, "is_valid_outside_execution_nonce", [nonce]) == [1]


@pytest.fixture
def env() -> Env:
    return Env.make(START, OWNER, minted=10_000)


# -- hashes (docs/contract.md §4.2, §6) -----------------------------------------------------

VECTOR_CALL = Call(
    to=0x49D36570D4E46F48E99674BD3FCC84644DDD6B96F7C741B1562B82F9E004DC7,
    selector="transfer",
    calldata=[0xBEEF, 100, 0],
)


def test_session_hash_vectors() -> None:
    h = session_validate_hash(
        account=0x1234ABCD, chain_id=SN_MAIN, nonce=5, valid_until=1700000000, calls=[VECTOR_CALL]
    )
    assert h == 0x65AC3C853882F861F43D68E2E75C5D19EB9CA0B18CCAE02BCB60B860EB34B0B
    h0 = session_validate_hash(
        account=0x1234ABCD, chain_id=SN_MAIN, nonce=0, valid_until=1700000000, calls=[]
    )
    assert h0 == 0x19356974252D8757D2F5138EFC16B14D370F255A16159B0DB7A6D9A2010C7E9


@pytest.mark.parametrize(
    ("felt_times", "expected"),
    [
        (False, 0x253D31E91DA000A67672297395E9DDE63472BFC9CAC5E1BB71992F0923DD61E),
        (True, 0x26A746832C179CB1071AC23B0C749ECC8B1153FC39605ECA6E170544510BBE3),
    ],
)
def test_outside_execution_hash_vectors(felt_times: bool, expected: int) -> None:
    fields = dict(caller=0, nonce=42, execute_after=999999, execute_before=1003600)
    ours = outside_execution_hash(
        account=0x1234ABCD, chain_id=SN_MAIN, calls=[VECTOR_CALL], felt_times=felt_times, **fields
    )
    typed = outside_execution_typed_data(
        calls=[VECTOR_CALL],
        chain_id=SN_MAIN,
        time_type="felt" if felt_times else "u128",
        **fields,
    )
    assert ours == expected == typed_data_message_hash(typed, 0x1234ABCD)
    assert domain_hash(SN_MAIN) == 0x9951E1D5316915DC4436ACCE0A48AFD57BB4B6C501687C151E869AB878A2AC
    assert domain_hash(SN_SEPOLIA) == (
        0x2534050C42890F9CAD3CF470A8B54A39C4D283A246DFCEB486A8755E44A91DF
    )


def test_contract_hash_matches_starknet_py_for_multicalls() -> None:
    calls = [VECTOR_CALL, Call(to=0x99, selector="approve", calldata=[]), VECTOR_CALL]
    for time_type in ("u128", "felt"):
        typed = outside_execution_typed_data(
            caller=ANY_CALLER,
            nonce=2**200 + 7,
            execute_after=5,
            execute_before=2**63,
            calls=calls,
            chain_id=SN_SEPOLIA,
            time_type=time_type,
        )
        ours = outside_execution_hash(
            account=0xACC,
            chain_id=SN_SEPOLIA,
            caller=ANY_CALLER,
            nonce=2**200 + 7,
            execute_after=5,
            execute_before=2**63,
            calls=calls,
            felt_times=time_type == "felt",
        )
        assert ours == typed_data_message_hash(typed, 0xACC)


@pytest.mark.parametrize(("felt_times", "hashes"), [(False, 1), (True, 2)])
def test_h2_is_computed_only_when_h1_fails(
    env: Env, monkeypatch: pytest.MonkeyPatch, felt_times: bool, hashes: int
) -> None:
    import chipi_session.localchain.account as account_module

    seen: list[bool] = []

    def counting(**kwargs: Any) -> int:
        seen.append(kwargs["felt_times"])
        return outside_execution_hash(**kwargs)

    monkeypatch.setattr(account_module, "outside_execution_hash", counting)
    vu = env.add_session()
    assert env.outside([env.transfer()], vu, nonce=1, felt_times=felt_times).succeeded
    assert seen == [False, True][:hashes]
    seen.clear()
    assert env.outside([env.transfer()], None, nonce=2, felt_times=felt_times).succeeded  # owner
    assert seen == [False, True][:hashes]


def test_compute_session_message_hash_uses_tx_info(env: Env) -> None:
    calls = [env.transfer()]
    calldata = [1, env.token, selector("transfer"), 3, ALICE, 10, 0, START + 5]
    (h,) = env.chain.call(env.account, "compute_session_message_hash", calldata, nonce=7)
    assert h == session_validate_hash(
        account=env.account, chain_id=SN_MAIN, nonce=7, valid_until=START + 5, calls=calls
    )


# -- scenarios v33's Cairo tests do not cover (from the contract code) ------------------------


@pytest.mark.parametrize("felt_times", [False, True], ids=["h1_u128", "h2_felt"])
def test_snip9_session_signature_h1_and_h2(env: Env, felt_times: bool) -> None:
    vu = env.add_session()
    receipt = env.outside([env.transfer(25)], vu, nonce=77, felt_times=felt_times)
    assert receipt.status == "SUCCEEDED" and receipt.results == ((1,),)
    assert env.calls_used() == 1
    assert env.chain.balance_of(env.token, ALICE) == 25
    assert not env.nonce_unused(77)
    with pytest.raises(ContractPanic, match="^SRC9: duplicated nonce$"):
        env.outside([env.transfer(25)], vu, nonce=77, felt_times=felt_times)
    assert env.calls_used() == 1


def test_snip9_valid_until_binding(env: Env) -> None:
    vu = env.add_session()
    with pytest.raises(ContractPanic, match="^Session: valid_until exceeded$"):
        env.outside([env.transfer()], vu + 1, nonce=1)
    env.chain.call(env.account, "revoke_session_key", [SESSION.public_key], caller=env.account)
    with pytest.raises(ContractPanic, match="^Session: valid_until exceeded$"):
        env.outside([env.transfer()], vu, nonce=1)
    # unknown key and sig[3] == 0 passes the binding, then fails the session check
    with pytest.raises(ContractPanic, match="^Session: unauthorized selector$"):
        env.outside([env.transfer()], 0, nonce=1)
    assert env.nonce_unused(1)


def test_snip9_owner_signature_adds_session(env: Env) -> None:
    call = add_or_update_session_key_call(env.account, SESSION.public_key, START + 500, 3, [])
    receipt = env.outside([call], None, nonce=5, relayer=RELAYER)
    assert receipt.inner_failures == ()
    assert env.chain.call(env.account, "get_session_data", [SESSION.public_key]) == [
        START + 500,
        3,
        0,
        0,
    ]


def test_validate_session_max_calls_one(env: Env) -> None:
    vu = env.add_session(max_calls=1)
    calls = [env.transfer()]
    assert session_invoke(env.chain, env.account, SESSION, calls, valid_until=vu).succeeded
    signature = session_invoke_signature(env.chain, env.account, SESSION, calls, valid_until=vu)
    with pytest.raises(ChipiSessionError, match="did not return 'VALID'"):
        env.chain.invoke(env.account, calls, signature)


def test_explicit_whitelist_allows_self_call(env: Env) -> None:
    vu = env.add_session(allowed=[selector("get_public_key")])
    calls = [Call(to=env.account, selector="get_public_key")]
    receipt = session_invoke(env.chain, env.account, SESSION, calls, valid_until=vu)
    assert receipt.results == ((OWNER.public_key,),)
    receipt = env.outside(calls, vu, nonce=3)
    assert receipt.results == ((OWNER.public_key,),)
    assert env.calls_used() == 2


def test_validate_signed_valid_until_below_stored(env: Env) -> None:
    stored = env.add_session(valid_until=START + 1000)
    short = START + 10
    calls = [env.transfer()]
    assert session_invoke(env.chain, env.account, SESSION, calls, valid_until=short).succeeded
    # a signature over one valid_until cannot be replayed with another
    _, r, s, _ = session_invoke_signature(env.chain, env.account, SESSION, calls, valid_until=short)
    with pytest.raises(ChipiSessionError):
        env.chain.invoke(env.account, calls, [SESSION.public_key, r, s, stored])
    # past the signed value (in the rounded hour __validate__ sees, docs/contract.md §9.1),
    # before the stored one
    env.clock.set(short - short % 3600 + 3600)
    assert env.clock.now() < stored
    with pytest.raises(ChipiSessionError):
        session_invoke(env.chain, env.account, SESSION, calls, valid_until=short)
    assert session_invoke(env.chain, env.account, SESSION, calls, valid_until=stored).succeeded


# -- admin blocklist, time window, caller rule -------------------------------------------------

BLOCKED = [
    "upgrade",
    "add_or_update_session_key",
    "revoke_session_key",
    "__execute__",
    "set_public_key",
    "setPublicKey",
    "execute_from_outside_v2",
    "set_spending_policy",
    "remove_spending_policy",
]


def test_blocklist_is_the_policy_blocklist() -> None:
    assert {selector(n) for n in BLOCKED} == ADMIN_SELECTORS


@pytest.mark.parametrize("name", BLOCKED)
def test_blocked_selector_rejected_even_if_whitelisted(env: Env, name: str) -> None:
    sel = selector(name)
    vu = env.add_session(allowed=[sel])
    for target in (env.account, 0x777):
        calls = [Call(to=target, selector=sel, calldata=[1])]
        signature = session_invoke_signature(env.chain, env.account, SESSION, calls, valid_until=vu)
        nonce = env.chain.get_nonce(env.account)
        calldata = [1, target, sel, 1, 1]
        assert env.chain.call(
            env.account, "__validate__", calldata, signature=signature, nonce=nonce
        ) == [0]
        with pytest.raises(ContractPanic, match="^Session: unauthorized selector$"):
            env.outside(calls, vu, nonce=target)
    assert env.calls_used() == 0


def test_snip9_time_window_is_strict(env: Env) -> None:
    vu = env.add_session()
    now = env.now
    with pytest.raises(ContractPanic, match="^SRC9: now <= execute_after$"):
        env.outside([env.transfer()], vu, nonce=1, window=(now, now + 10))
    with pytest.raises(ContractPanic, match="^SRC9: now >= execute_before$"):
        env.outside([env.transfer()], vu, nonce=1, window=(now - 10, now))
    assert env.calls_used() == 0 and env.nonce_unused(1)
    assert env.outside([env.transfer()], vu, nonce=1, window=(now - 1, now + 1)).succeeded


def test_snip9_caller_rule(env: Env) -> None:
    vu = env.add_session()
    assert env.outside([env.transfer()], vu, nonce=1, caller=ANY_CALLER, relayer=BOB).succeeded
    assert env.outside([env.transfer()], vu, nonce=2, caller=0, relayer=0xD00D).succeeded
    assert env.outside([env.transfer()], vu, nonce=3, caller=RELAYER, relayer=RELAYER).succeeded
    with pytest.raises(ContractPanic, match="^SRC9: invalid caller$"):
        env.outside([env.transfer()], vu, nonce=4, caller=RELAYER, relayer=BOB)
    assert env.calls_used() == 3


def test_snip9_inclusive_expiry(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    env.clock.set(vu)
    assert env.outside([env.transfer()], vu, nonce=1).succeeded
    env.clock.set(vu + 1)
    with pytest.raises(ContractPanic, match="^Session: unauthorized selector$"):
        env.outside([env.transfer()], vu, nonce=2)


def test_snip9_session_failures(env: Env) -> None:
    vu = env.add_session(valid_until=START + 1000)
    with pytest.raises(ContractPanic, match="^Session: invalid timestamp$"):
        env.chain.execute_from_outside(
            env.account,
            caller=0,
            nonce=1,
            execute_after=0,
            execute_before=START + 10,
            calls=[env.transfer()],
            signature=[SESSION.public_key, 1, 2, 2**64],
        )
    # a bad r/s
    with pytest.raises(ContractPanic, match="^SRC9: invalid signature$"):
        env.chain.execute_from_outside(
            env.account,
            caller=0,
            nonce=1,
            execute_after=0,
            execute_before=START + 10,
            calls=[env.transfer()],
            signature=[SESSION.public_key, 1, 2, vu],
        )
    # a signature over other calls
    sig = outside_signature(
        env.chain,
        env.account,
        SESSION,
        caller=0,
        nonce=1,
        execute_after=0,
        execute_before=START + 10,
        calls=[env.transfer(1)],
        valid_until=vu,
    )
    with pytest.raises(ContractPanic, match="^SRC9: invalid signature$"):
        env.chain.execute_from_outside(
            env.account,
            caller=0,
            nonce=1,
            execute_after=0,
            execute_before=START + 10,
            calls=[env.transfer(2)],
            signature=sig,
        )
    # now > sig[3] (sig[3] below the stored value): the signature check fails
    env.clock.set(START + 50)
    with pytest.raises(ContractPanic, match="^SRC9: invalid signature$"):
        env.outside([env.transfer()], START + 40, nonce=1)
    # owner signatures of other lengths fail too
    with pytest.raises(ContractPanic, match="^SRC9: invalid signature$"):
        env.chain.execute_from_outside(
            env.account,
            caller=0,
            nonce=1,
            execute_after=0,
            execute_before=START + 100,
            calls=[env.transfer()],
            signature=[1, 2, 3],
        )
    assert env.calls_used() == 0 and env.nonce_unused(1)


def test_outside_nonces_any_felt_once(env: Env) -> None:
    for nonce in (0, 1, 999):
        assert env.nonce_unused(nonce)
    assert env.outside([env.transfer()], None, nonce=0).succeeded
    assert not env.nonce_unused(0) and env.nonce_unused(1)


def test_snip9_owner_skips_session_checks_and_spending(env: Env) -> None:
    env.add_session()
    env.set_policy(5, 5, 3600)
    receipt = env.outside([env.transfer(1000)], None, nonce=9)
    assert receipt.results == ((1,),)
    assert env.chain.balance_of(env.token, ALICE) == 1000
    assert env.spent() == 0


# -- spending: boundaries and the two transaction paths ---------------------------------------


def test_spending_window_resets_exactly_at_boundary(env: Env) -> None:
    vu = env.add_session(valid_until=START + 86400)
    env.set_policy(1000, 1000, 3600)
    assert env.outside([env.transfer(1000)], vu, nonce=1).succeeded
    env.clock.set(START + 3599)
    with pytest.raises(ContractPanic, match="^Spending: exceeds window limit$"):
        env.outside([env.transfer(1)], vu, nonce=2)
    env.clock.set(START + 3600)
    assert env.outside([env.transfer(1000)], vu, nonce=2).succeeded
    policy = env.chain.spending_policy(env.account, SESSION.public_key, env.token)
    assert (policy.spent_in_window, policy.window_start) == (1000, START + 3600)


def test_invoke_spending_panic_reverts_but_keeps_calls_used(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(100, 1000, 3600)
    nonce = env.chain.get_nonce(env.account)
    receipt = session_invoke(env.chain, env.account, SESSION, [env.transfer(500)], valid_until=vu)
    assert receipt.status == "REVERTED"
    assert receipt.revert_reason == "Spending: exceeds per-call"
    assert receipt.results == () and receipt.events == ()
    assert env.calls_used() == 1  # the validate phase stays
    assert env.chain.get_nonce(env.account) == nonce + 1
    assert env.chain.balance_of(env.token, ALICE) == 0
    assert env.chain.get_transaction_status(receipt.tx_hash) == "ACCEPTED_ON_L2"


def test_snip9_spending_panic_reverts_everything(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(100, 1000, 3600)
    with pytest.raises(ContractPanic, match="^Spending: exceeds per-call$"):
        env.outside([env.transfer(500)], vu, nonce=4)
    assert env.calls_used() == 0 and env.nonce_unused(4)
    assert env.spent() == 0


def test_invoke_spending_tracks_and_limits(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(600, 1000, 3600)
    first = session_invoke(env.chain, env.account, SESSION, [env.transfer(600)], valid_until=vu)
    assert first.succeeded and env.spent() == 600
    receipt = session_invoke(env.chain, env.account, SESSION, [env.transfer(600)], valid_until=vu)
    assert receipt.revert_reason == "Spending: exceeds window limit"
    assert env.spent() == 600 and env.calls_used() == 2


def test_spending_u64_overflow_of_window_end(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(100, 1000, 2**64 - 1)  # "forever", but window_start + window_seconds overflows
    with pytest.raises(ContractPanic, match="^u64_add Overflow$"):
        env.outside([env.transfer(5)], vu, nonce=1)
    with pytest.raises(ContractPanic, match="^Spending: exceeds per-call$"):
        env.outside([env.transfer(500)], vu, nonce=1)  # the per-call check comes first


def test_spending_u256_overflow_of_spent(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(2**256 - 1, 2**256 - 1, 3600)
    half = Call(to=env.token, selector="approve", calldata=[ALICE, 0, 2**127])  # 2**255
    assert env.outside([half], vu, nonce=1).succeeded
    assert env.spent() == 2**255
    with pytest.raises(ContractPanic, match="^u256_add Overflow$"):
        env.outside([half], vu, nonce=2)
    assert env.spent() == 2**255


def test_spending_policy_is_per_token_and_only_tracked_selectors(env: Env) -> None:
    vu = env.add_session()
    env.set_policy(10, 10, 3600)
    other = env.chain.deploy_token("DAI")
    env.chain.mint(other, env.account, 1000)
    calls = [
        Call(to=other, selector="transfer", calldata=[ALICE, 500, 0]),
        Call(to=env.token, selector="transfer_from", calldata=[env.account, ALICE, 500, 0]),
        env.transfer(10),
    ]
    receipt = env.outside(calls, vu, nonce=1)
    assert receipt.results[0] == (1,) and receipt.results[2] == (1,)
    assert receipt.inner_failures == ((1, "ERC20: insufficient allowance"),)
    assert env.spent() == 10


# -- non-atomic multicall ----------------------------------------------------------------------


def test_non_atomic_multicall(env: Env) -> None:
    vu = env.add_session()
    calls = [env.transfer(10, ALICE), env.transfer(10**9, BOB), env.transfer(5, BOB)]
    receipt = session_invoke(env.chain, env.account, SESSION, calls, valid_until=vu)
    assert receipt.status == "SUCCEEDED"
    assert receipt.results == ((1,), (), (1,))
    assert receipt.inner_failures == ((1, "ERC20: insufficient balance"),)
    assert env.chain.balance_of(env.token, ALICE) == 10
    assert env.chain.balance_of(env.token, BOB) == 5
    assert env.chain.balance_of(env.token, env.account) == 10_000 - 15
    transfers = [e for e in receipt.events if e.keys[0] == selector("Transfer")]
    assert [e.data for e in transfers] == [(10, 0), (5, 0)]
    assert env.calls_used() == 1
    # the same through SNIP-9
    receipt = env.outside(calls, vu, nonce=1)
    assert receipt.results == ((1,), (), (1,)) and env.calls_used() == 2


def test_failed_inner_call_writes_are_discarded(env: Env) -> None:
    # transfer_from spends the allowance, then fails on the balance: both undone
    env.chain.call(env.token, "approve", [env.account, 50, 0], caller=BOB)
    env.chain.mint(env.token, BOB, 10)
    call = Call(to=env.token, selector="transfer_from", calldata=[BOB, ALICE, 20, 0])
    receipt = owner_invoke(env.chain, env.account, OWNER, [call])
    assert receipt.results == ((),)
    assert env.chain.allowance(env.token, BOB, env.account) == 50
    assert receipt.events == ()


# -- INVOKE protocol ---------------------------------------------------------------------------


def test_invoke_rejections_change_nothing(env: Env) -> None:
    vu = env.add_session()
    nonce = env.chain.get_nonce(env.account)
    events = len(env.chain.events)
    block = env.chain.block_number
    with pytest.raises(ChipiSessionError) as info:
        env.chain.invoke(env.account, [env.transfer()], [SESSION.public_key, 1, 2, vu])
    assert info.value.code is ErrorCode.TRANSACTION_REJECTED
    owner_sig = OWNER.sign(env.chain.invoke_hash(env.account, [env.transfer()]))
    with pytest.raises(ChipiSessionError, match="invalid transaction nonce"):
        env.chain.invoke(env.account, [env.transfer()], owner_sig, nonce=nonce + 1)
    assert env.chain.get_nonce(env.account) == nonce
    assert len(env.chain.events) == events and env.chain.block_number == block
    assert env.calls_used() == 0


def test_session_hash_uses_protocol_nonce(env: Env) -> None:
    vu = env.add_session()
    calls = [env.transfer()]
    stale = session_invoke_signature(env.chain, env.account, SESSION, calls, valid_until=vu)
    owner_invoke(env.chain, env.account, OWNER, [env.transfer(1)])  # bumps the nonce
    with pytest.raises(ChipiSessionError):
        env.chain.invoke(env.account, calls, stale)
    assert session_invoke(env.chain, env.account, SESSION, calls, valid_until=vu).succeeded


def test_validate_returns_valid_constant(env: Env) -> None:
    assert VALID == 0x56414C4944
