"""The v33 Cairo test suites (docs/contract.md, "The Cairo test suites") replayed against LocalChain.

One test per Cairo test, same name. Where the Cairo test only *describes* the expected
``__validate__`` result (it uses dummy signatures), we sign for real with a session key pair and
assert both sides: the properly signed transaction validates, the bad one does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import selector
from chipi_session.keys import SecretKey
from chipi_session.localchain import ChainEvent, ContractPanic, Receipt
from chipi_session.localchain.account import VALID
from chipi_session.localchain.testing import (
    owner_invoke,
    session_invoke,
    session_invoke_signature,
)
from chipi_session.types import Call

from .chain_env import ChainEnv

START = 1_000_000
OWNER = SecretKey(0x123456789ABCDEF0123456789ABCDEF)
SESSION = SecretKey(0x987654321FEDCBA0987654321FEDCBA)
SESSION_B = SecretKey(0xAAAABBBBCCCCDDDD)
TRANSFER = selector("transfer")
APPROVE = selector("approve")
BALANCE_OF = selector("balanceOf")
WAVE = selector("wave")  # the Cairo tests use an arbitrary felt; any non-admin selector will do
EXTERNAL = 0x1234
BEEF = 0xBEEF


class Env(ChainEnv):
    def add_session(
        self,
        key: SecretKey = SESSION,
        *,
        valid_until: int | None = None,
        max_calls: int = 10,
        allowed: Sequence[int] = (),
    ) -> int:
        valid_until = self.now + 86400 if valid_until is None else valid_until
        self.as_self(
            "add_or_update_session_key",
            [key.public_key, valid_until, max_calls, len(allowed), *allowed],
        )
        return valid_until

    def data(self, key: int = SESSION.public_key) -> list[int]:
        return self.session_data(key)

    def entrypoint_at(self, index: int, key: int = SESSION.public_key) -> int:
        return self.chain.call(self.account, "get_session_allowed_entrypoint_at", [key, index])[0]

    def session_sig(
        self, calls: Sequence[Call], valid_until: int, key: SecretKey = SESSION
    ) -> tuple[int, int, int, int]:
        return session_invoke_signature(
            self.chain, self.account, key, calls, valid_until=valid_until
        )

    def session_invoke(
        self, calls: Sequence[Call], valid_until: int, key: SecretKey = SESSION
    ) -> Receipt:
        return session_invoke(self.chain, self.account, key, calls, valid_until=valid_until)

    def rejected(self, calls: Sequence[Call], valid_until: int, key: SecretKey = SESSION) -> bool:
        with pytest.raises(ChipiSessionError) as info:
            self.session_invoke(calls, valid_until, key)
        assert info.value.code is ErrorCode.TRANSACTION_REJECTED
        return True


@pytest.fixture
def env() -> Env:
    return Env.make(START, OWNER)


def transfer(to: int = EXTERNAL, amount: int = 100) -> Call:
    return Call(to=to, selector=TRANSFER, calldata=[BEEF, amount, 0])


def wave(to: int = EXTERNAL) -> Call:
    return Call(to=to, selector=WAVE, calldata=[])


def dummy(valid_until: int, key: int = SESSION.public_key) -> list[int]:
    return [key, 0x111, 0x222, valid_until]


def panics(message: str) -> Any:
    return pytest.raises(ContractPanic, match=f"^{message}$")


# -- test_session_validation.cairo -------------------------------------------------------


def test_owner_signature_valid(env: Env) -> None:
    calls = [Call(to=env.account, selector="get_contract_info")]
    receipt = owner_invoke(env.chain, env.account, OWNER, calls)
    assert receipt.status == "SUCCEEDED" and receipt.results == ((0x763333,),)
    stranger = SecretKey(0x5555)
    with pytest.raises(ChipiSessionError, match="Account: invalid signature"):
        owner_invoke(env.chain, env.account, stranger, calls)
    assert env.chain.get_nonce(env.account) == 1


def test_session_signature_valid(env: Env) -> None:
    vu = env.add_session(valid_until=START + 86400, max_calls=10, allowed=[TRANSFER, WAVE])
    assert env.data() == [vu, 10, 0, 2]
    calls = [transfer()]
    assert env.validate(calls, env.session_sig(calls, vu)) == VALID
    assert env.data()[2] == 1  # __validate__ consumed one call


def test_session_expired(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    env.clock.set(vu + 1)
    calls = [transfer()]
    assert env.validate(calls, env.session_sig(calls, vu)) == 0  # snforge: real time
    # a real INVOKE's __validate__ sees the hour (docs/contract.md, "Protocol facts the model
    # reproduces"): refused from the next
    env.clock.set(vu - vu % 3600 + 3600)
    assert env.rejected(calls, vu)
    assert env.data()[2] == 0


def test_session_max_calls(env: Env) -> None:
    vu = env.add_session(max_calls=1)
    assert env.data()[1:3] == [1, 0]
    assert env.session_invoke([transfer()], vu).status == "SUCCEEDED"
    assert env.data()[2] == 1
    assert env.rejected([transfer()], vu)
    assert env.data()[2] == 1


def test_session_not_allowed_selector(env: Env) -> None:
    vu = env.add_session(allowed=[WAVE])
    assert env.chain.call(
        env.account, "get_session_allowed_entrypoints_len", [SESSION.public_key]
    ) == [1]
    assert env.validate([transfer()], env.session_sig([transfer()], vu)) == 0
    assert env.validate([wave()], env.session_sig([wave()], vu)) == VALID


def test_session_invalid_signature(env: Env) -> None:
    vu = env.add_session()
    assert env.validate([transfer()], [SESSION.public_key, 0, 0, vu]) == 0
    other = SecretKey(0x4242)  # a real signature, by the wrong key
    _, r, s, _ = env.session_sig([transfer()], vu, key=other)
    assert env.validate([transfer()], [SESSION.public_key, r, s, vu]) == 0
    assert env.data()[2] == 0


def test_session_revoke(env: Env) -> None:
    vu = env.add_session()
    env.as_self("revoke_session_key", [SESSION.public_key])
    assert env.data()[:2] == [0, 0]
    assert env.validate([transfer()], env.session_sig([transfer()], vu)) == 0


def test_upgrade_still_owner_only(env: Env) -> None:
    vu = env.add_session(allowed=[selector("upgrade")])
    up = [Call(to=env.account, selector="upgrade", calldata=[0x123])]
    assert env.validate(up, env.session_sig(up, vu)) == 0
    with panics("Account: unauthorized"):
        env.chain.call(env.account, "upgrade", [0x123], caller=0xDEAD)
    receipt = owner_invoke(env.chain, env.account, OWNER, up)
    assert receipt.inner_failures == ()
    assert receipt.events == (ChainEvent(env.account, (selector("Upgraded"),), (0x123,)),)


def test_session_multiple_calls_in_transaction(env: Env) -> None:
    vu = env.add_session(allowed=[TRANSFER, WAVE])
    assert env.data()[3] == 2
    calls = [transfer(), wave()]
    receipt = env.session_invoke(calls, vu)
    assert receipt.status == "SUCCEEDED" and len(receipt.results) == 2
    assert env.data()[2] == 1  # one transaction, one call consumed


def test_session_with_no_restrictions(env: Env) -> None:
    vu = env.add_session(allowed=[])
    assert env.data()[3] == 0
    arbitrary = [Call(to=0x777, selector=selector("anything_at_all"), calldata=[1, 2])]
    assert env.validate(arbitrary, env.session_sig(arbitrary, vu)) == VALID


def test_add_session_unauthorized(env: Env) -> None:
    with panics("Account: unauthorized"):
        env.chain.call(
            env.account,
            "add_or_update_session_key",
            [SESSION.public_key, START + 10, 5, 0],
            caller=0xDEAD,
        )
    assert env.data() == [0, 0, 0, 0]


def test_revoke_session_unauthorized(env: Env) -> None:
    vu = env.add_session()
    with panics("Account: unauthorized"):
        env.chain.call(env.account, "revoke_session_key", [SESSION.public_key], caller=0xDEAD)
    assert env.data()[0] == vu


def test_session_events_emitted(env: Env) -> None:
    start = len(env.chain.events)
    vu = env.add_session(max_calls=7)
    env.as_self("revoke_session_key", [SESSION.public_key])
    added = ChainEvent(env.account, (selector("SessionKeyAdded"), SESSION.public_key), (vu, 7))
    revoked = ChainEvent(env.account, (selector("SessionKeyRevoked"), SESSION.public_key), ())
    assert env.chain.events[start:] == [added, revoked]
    assert added.keys[0] == 0x8EFD895EE992B61BB4221CF253D198A3A4C2A12F6D00BDDC22E3C4A7F51EDD
    assert revoked.keys[0] == 0x14E38D4CDDC27DF1BD8C116680C9EC73CF13B52C630A9AF72D7EE0967034B17


def test_invalid_signature_length_3_elements(env: Env) -> None:
    vu = env.add_session()
    assert env.validate([transfer()], list(env.session_sig([transfer()], vu))[:3]) == 0


def test_empty_signature_fails(env: Env) -> None:
    assert env.validate([transfer()], [], caller=0xDEAD) == 0
    assert env.validate([transfer()], [], caller=0) == 0  # the protocol is caller 0
    assert env.validate([transfer()], [], caller=env.account) == VALID
    with pytest.raises(ChipiSessionError, match="did not return 'VALID'"):
        env.chain.invoke(env.account, [transfer()], [])


def test_session_max_calls_zero_immediately_exhausted(env: Env) -> None:
    vu = env.add_session(max_calls=0)
    valid_until, max_calls, calls_used, _ = env.data()
    assert valid_until == vu and calls_used >= max_calls == 0
    assert env.validate([transfer()], env.session_sig([transfer()], vu)) == 0


def test_double_revoke_same_session(env: Env) -> None:
    env.add_session()
    env.as_self("revoke_session_key", [SESSION.public_key])
    env.as_self("revoke_session_key", [SESSION.public_key])
    assert env.data()[0] == 0
    revoked = [e for e in env.chain.events if e.keys[0] == selector("SessionKeyRevoked")]
    assert len(revoked) == 2


def test_update_session_resets_calls_used(env: Env) -> None:
    vu = env.add_session(max_calls=10)
    env.session_invoke([transfer()], vu)
    assert env.data()[1:3] == [10, 1]
    env.add_session(valid_until=vu, max_calls=20)
    assert env.data()[1:3] == [20, 0]


def test_multiple_concurrent_sessions_independent(env: Env) -> None:
    vu_a = env.add_session(SESSION, valid_until=START + 86400, max_calls=100, allowed=[TRANSFER])
    vu_b = env.add_session(SESSION_B, valid_until=START + 3600, max_calls=5, allowed=[WAVE])
    assert env.data(SESSION.public_key) == [vu_a, 100, 0, 1]
    assert env.data(SESSION_B.public_key) == [vu_b, 5, 0, 1]
    assert env.entrypoint_at(0, SESSION.public_key) == TRANSFER
    assert env.entrypoint_at(0, SESSION_B.public_key) == WAVE
    env.as_self("revoke_session_key", [SESSION.public_key])
    assert env.data(SESSION.public_key) == [0, 0, 0, 0]
    assert env.data(SESSION_B.public_key) == [vu_b, 5, 0, 1]
    assert env.session_invoke([wave()], vu_b, key=SESSION_B).status == "SUCCEEDED"


def test_signature_length_5_returns_zero(env: Env) -> None:
    vu = env.add_session()
    assert env.validate([transfer()], [*env.session_sig([transfer()], vu), 0]) == 0


def test_session_valid_at_exact_expiration_boundary(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    env.clock.set(vu)
    assert env.chain.call(env.account, "is_valid_signature", [0xABC, 4, *dummy(vu)]) == [0]
    r, s = SESSION.sign(0xABC)
    good = [SESSION.public_key, r, s, vu]
    assert env.chain.call(env.account, "is_valid_signature", [0xABC, 4, *good]) == [VALID]
    assert env.data()[2] == 0
    assert env.session_invoke([transfer()], vu).status == "SUCCEEDED"  # still valid at now == vu
    env.clock.set(vu - vu % 3600 + 3600)  # the hour: docs/contract.md, rounded block info
    assert env.rejected([transfer()], vu)


# -- test_audit_fixes.cairo --------------------------------------------------------------


def test_audit1_execute_rejects_unauthorized_caller(env: Env) -> None:
    with panics("Account: unauthorized caller"):
        env.chain.call(env.account, "__execute__", [0], caller=0xDEAD)


def test_audit1_execute_allows_self_caller(env: Env) -> None:
    assert env.chain.call(env.account, "__execute__", [0], caller=env.account) == [0]


def _blocked_self_call(env: Env, entrypoint: str, calldata: Sequence[int] = ()) -> None:
    vu = env.add_session(allowed=[], max_calls=10)
    calls = [Call(to=env.account, selector=entrypoint, calldata=calldata)]
    assert env.validate(calls, env.session_sig(calls, vu)) == 0
    assert env.data()[2] == 0


def test_audit3_session_blocked_from_upgrade(env: Env) -> None:
    _blocked_self_call(env, "upgrade", [0x1])


def test_audit3_session_blocked_from_add_session(env: Env) -> None:
    _blocked_self_call(env, "add_or_update_session_key", [0x1, START + 10, 1, 0])


def test_audit8_session_blocked_from_revoke(env: Env) -> None:
    _blocked_self_call(env, "revoke_session_key", [SESSION.public_key])


def test_audit_new_session_blocked_from_execute(env: Env) -> None:
    _blocked_self_call(env, "__execute__", [0])


def test_audit_new_execute_from_outside_invalid_signature_reverts(env: Env) -> None:
    vu = env.add_session(allowed=[], max_calls=1)
    calls = [Call(to=env.account, selector="get_contract_info")]
    with panics("Session: unauthorized selector"):
        env.chain.execute_from_outside(
            env.account,
            caller=0,
            nonce=1,
            execute_after=0,
            execute_before=vu,
            calls=calls,
            signature=dummy(vu),
        )
    assert env.chain.call(env.account, "is_valid_outside_execution_nonce", [1]) == [1]


def test_audit2_validate_blocks_disallowed_selector(env: Env) -> None:
    vu = env.add_session(allowed=[WAVE])
    assert env.validate([transfer()], env.session_sig([transfer()], vu)) == 0


def test_audit5_is_valid_signature_session_expired_returns_zero(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    r, s = SESSION.sign(0xABC)
    good = [0xABC, 4, SESSION.public_key, r, s, vu]
    assert env.chain.call(env.account, "is_valid_signature", good) == [VALID]
    env.clock.set(vu + 1)
    assert env.chain.call(env.account, "is_valid_signature", [0xABC, 4, *dummy(vu)]) == [0]
    assert env.chain.call(env.account, "is_valid_signature", good) == [0]


def test_audit6_is_valid_signature_does_not_consume_calls(env: Env) -> None:
    vu = env.add_session()
    r, s = SESSION.sign(0xABC)
    for _ in range(2):
        assert env.chain.call(
            env.account, "is_valid_signature", [0xABC, 4, SESSION.public_key, r, s, vu]
        ) == [VALID]
        assert env.data()[2] == 0


def test_audit7_execute_continues_after_failed_subcall(env: Env) -> None:
    calldata = [2, env.account, 0xDEAD, 0, env.account, selector("get_contract_info"), 0]
    out = env.chain.call(env.account, "__execute__", calldata, caller=env.account)
    assert out == [2, 0, 1, 0x763333]  # [[], ['v33']]


def test_audit9_overflow_valid_until_returns_zero(env: Env) -> None:
    env.add_session()
    assert env.validate([transfer()], [SESSION.public_key, 1, 2, 2**64]) == 0


def test_audit9_is_valid_signature_overflow_returns_zero(env: Env) -> None:
    env.add_session()
    sig = [SESSION.public_key, 1, 2, 2**64]
    assert env.chain.call(env.account, "is_valid_signature", [0xABC, 4, *sig]) == [0]


def test_audit10_update_session_clears_old_entrypoints(env: Env) -> None:
    vu = env.add_session(max_calls=10, allowed=[0xAAA, 0xBBB, 0xCCC])
    assert [env.entrypoint_at(i) for i in range(3)] == [0xAAA, 0xBBB, 0xCCC]
    env.add_session(valid_until=vu, max_calls=5, allowed=[0xDDD])
    assert [env.entrypoint_at(i) for i in range(3)] == [0xDDD, 0, 0]
    assert env.data() == [vu, 5, 0, 1]


def test_audit3_session_blocked_from_set_public_key(env: Env) -> None:
    _blocked_self_call(env, "set_public_key", [0x999])


def test_audit3_session_blocked_from_setPublicKey(env: Env) -> None:  # noqa: N802
    _blocked_self_call(env, "setPublicKey", [0x999])


def test_audit3_session_blocked_from_execute_from_outside_v2(env: Env) -> None:
    _blocked_self_call(env, "execute_from_outside_v2")


def test_audit3_session_blocked_self_call_generic(env: Env) -> None:
    _blocked_self_call(env, "get_public_key")


def test_audit3_session_allows_external_call_with_empty_whitelist(env: Env) -> None:
    vu = env.add_session(allowed=[])
    calls = [Call(to=EXTERNAL, selector=TRANSFER, calldata=[])]
    assert env.validate(calls, dummy(vu)) == 0  # the Cairo test: dummy ECDSA
    assert env.validate(calls, env.session_sig(calls, vu)) == VALID  # real signature


def test_audit3_session_explicit_whitelist_allows_external(env: Env) -> None:
    vu = env.add_session(allowed=[TRANSFER])
    assert env.validate([transfer()], env.session_sig([transfer()], vu)) == VALID
    assert env.validate([wave()], env.session_sig([wave()], vu)) == 0


def test_audit3_src5_supports_session_interface(env: Env) -> None:
    skm = 0x037AB4F01106526662A612EAA2926DF2AA314C4144B964F183805880BBCFA55D
    assert env.chain.call(env.account, "supports_interface", [skm]) == [1]


def test_audit3_src5_supports_unknown_returns_false(env: Env) -> None:
    assert env.chain.call(env.account, "supports_interface", [0xDEADBEEF]) == [0]


# -- test_spending_policy.cairo ----------------------------------------------------------

DAI = 0xDA1
USDC = 0xC01


def _set_policy(env: Env, token: int, mpc: int, mpw: int, window: int) -> None:
    env.as_self("set_spending_policy", [SESSION.public_key, token, mpc, 0, mpw, 0, window])


def _policy(env: Env, token: int) -> list[int]:
    return env.chain.call(env.account, "get_spending_policy", [SESSION.public_key, token])


def _spend_env(env: Env, allowed: Sequence[int] = (TRANSFER, APPROVE)) -> int:
    """The T-SP enforcement setup: the 'token' is the account itself, max_calls 100."""
    return env.add_session(max_calls=100, allowed=list(allowed))


def _execute_as_session(env: Env, calls: Sequence[Call], vu: int) -> list[int]:
    """``__execute__`` with caller = account and the session signature cheated (T-SP style)."""
    calldata = [len(calls)]
    for c in calls:
        calldata += [c.to, c.selector, len(c.calldata), *c.calldata]
    return env.chain.call(
        env.account, "__execute__", calldata, caller=env.account, signature=dummy(vu)
    )


def _spend(env: Env, amount: int, entrypoint: int = TRANSFER) -> Call:
    return Call(to=env.account, selector=entrypoint, calldata=[BEEF, amount, 0])


def test_spending_policy_set_and_get(env: Env) -> None:
    _set_policy(env, DAI, 1000, 5000, 86400)
    assert _policy(env, DAI) == [1000, 0, 5000, 0, 86400, 0, 0, START]


def test_spending_policy_unauthorized_set(env: Env) -> None:
    with panics("Account: unauthorized"):
        env.chain.call(
            env.account,
            "set_spending_policy",
            [SESSION.public_key, DAI, 1, 0, 2, 0, 3],
            caller=0xDEAD,
        )


def test_spending_policy_remove(env: Env) -> None:
    _set_policy(env, DAI, 1000, 5000, 86400)
    env.as_self("remove_spending_policy", [SESSION.public_key, DAI])
    assert _policy(env, DAI)[:5] == [0, 0, 0, 0, 0]
    removed = env.chain.events[-1]
    assert removed.keys == (selector("SpendingPolicyRemoved"), SESSION.public_key, DAI)


def test_spending_policy_remove_unauthorized(env: Env) -> None:
    _set_policy(env, DAI, 1000, 5000, 86400)
    with panics("Account: unauthorized"):
        env.chain.call(
            env.account, "remove_spending_policy", [SESSION.public_key, DAI], caller=0xDEAD
        )


def test_spending_policy_multiple_tokens(env: Env) -> None:
    _set_policy(env, DAI, 1000, 5000, 86400)
    _set_policy(env, USDC, 500, 2000, 3600)
    assert _policy(env, DAI)[:5] == [1000, 0, 5000, 0, 86400]
    assert _policy(env, USDC)[:5] == [500, 0, 2000, 0, 3600]
    set_event = env.chain.events[-1]
    assert set_event.keys == (selector("SpendingPolicySet"), SESSION.public_key, USDC)
    assert set_event.data == (500, 0, 2000, 0, 3600)


def test_spending_policy_no_policy_allows_all(env: Env) -> None:
    _spend_env(env)
    assert _policy(env, env.account)[2:4] == [0, 0]


def test_enforcement_within_limits(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 100, 1000, 86400)
    _execute_as_session(env, [_spend(env, 50)], vu)
    assert _policy(env, env.account)[5] == 50


def test_enforcement_exceeds_per_call(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 100, 1000, 86400)
    with panics("Spending: exceeds per-call"):
        _execute_as_session(env, [_spend(env, 200)], vu)
    assert _policy(env, env.account)[5] == 0


def test_enforcement_exceeds_window(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 700, 1000, 86400)
    _execute_as_session(env, [_spend(env, 600)], vu)
    with panics("Spending: exceeds window limit"):
        _execute_as_session(env, [_spend(env, 600)], vu)
    assert _policy(env, env.account)[5] == 600


def test_enforcement_window_auto_reset(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 900, 1000, 3600)
    _execute_as_session(env, [_spend(env, 800)], vu)
    assert _policy(env, env.account)[5] == 800
    env.clock.set(START + 3601)
    _execute_as_session(env, [_spend(env, 500)], vu)
    assert _policy(env, env.account)[5:] == [500, 0, START + 3601]


def test_enforcement_no_policy_unrestricted(env: Env) -> None:
    vu = _spend_env(env)
    _execute_as_session(env, [_spend(env, 999_999_999)], vu)
    assert _policy(env, env.account) == [0] * 8


def test_enforcement_approve_tracked(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 100, 1000, 86400)
    _execute_as_session(env, [_spend(env, 75, APPROVE)], vu)
    assert _policy(env, env.account)[5] == 75


def test_enforcement_multicall_cumulative(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 400, 1000, 86400)
    _execute_as_session(env, [_spend(env, 300), _spend(env, 300, APPROVE)], vu)
    assert _policy(env, env.account)[5] == 600


def test_enforcement_multicall_exceeds_window(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 700, 1000, 86400)
    with panics("Spending: exceeds window limit"):
        _execute_as_session(env, [_spend(env, 600), _spend(env, 600)], vu)
    assert _policy(env, env.account)[5] == 0


def test_enforcement_non_spending_selector(env: Env) -> None:
    vu = _spend_env(env, allowed=[BALANCE_OF])
    _set_policy(env, env.account, 100, 1000, 86400)
    _execute_as_session(env, [Call(to=env.account, selector=BALANCE_OF, calldata=[BEEF])], vu)
    assert _policy(env, env.account)[5] == 0


def test_enforcement_exactly_at_limit(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 100, 100, 86400)
    _execute_as_session(env, [_spend(env, 100)], vu)
    assert _policy(env, env.account)[5] == 100


def test_blocklist_rejects_set_spending_policy(env: Env) -> None:
    vu = env.add_session(allowed=[selector("set_spending_policy")])
    calls = [Call(to=env.account, selector="set_spending_policy")]
    assert env.validate(calls, env.session_sig(calls, vu)) == 0


def test_blocklist_rejects_remove_spending_policy(env: Env) -> None:
    vu = env.add_session(allowed=[selector("remove_spending_policy")])
    calls = [Call(to=env.account, selector="remove_spending_policy")]
    assert env.validate(calls, env.session_sig(calls, vu)) == 0


def test_spending_enforcement_invalid_amount_calldata(env: Env) -> None:
    vu = _spend_env(env)
    _set_policy(env, env.account, 100, 1000, 86400)
    bad = Call(to=env.account, selector=TRANSFER, calldata=[BEEF, 2**128, 0])
    with panics("Spending: invalid amount"):
        _execute_as_session(env, [bad], vu)


# -- test_snip9_compatibility.cairo ------------------------------------------------------


def test_snip9_version_returns_v2(env: Env) -> None:
    assert env.chain.call(env.account, "get_snip9_version") == [2]


def test_contract_info_shows_snip9_compatible(env: Env) -> None:
    assert env.chain.call(env.account, "get_contract_info") == [0x763333]  # 'v33'


def test_session_keys_still_work_with_snip9(env: Env) -> None:
    assert env.data(0xABCDEF)[:2] == [0, 0]
