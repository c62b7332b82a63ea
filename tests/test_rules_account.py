"""The simulated v33 account's validation at its edges (localchain/account.py;
mutation/config.toml): mixed multicalls through ``__validate__`` and SNIP-9, exact u64 and
time bounds, and which signature lengths reach which check. Real signatures throughout, so a
refusal is the rule's and not a bad signature's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chipi_session.felts import U64_MAX, selector
from chipi_session.hashing import ANY_CALLER
from chipi_session.keys import SecretKey
from chipi_session.keys import verify as keys_verify
from chipi_session.localchain import ContractPanic
from chipi_session.localchain.account import VALID, accept_ownership_hash
from chipi_session.localchain.testing import outside_execute, session_invoke_signature
from chipi_session.types import Call

from .chain_env import ChainEnv

START = 1_000_000
OWNER = SecretKey(0x123456789ABCDEF0123456789ABCDEF)
SESSION = SecretKey(0x987654321FEDCBA0987654321FEDCBA)
EXTERNAL = 0x1234
TRANSFER = selector("transfer")
WAVE = selector("wave")


class Env(ChainEnv):
    def add_session(self, *, valid_until: int, max_calls: int = 10,
                    allowed: Sequence[int] = ()) -> int:
        self.as_self("add_or_update_session_key",
                     [SESSION.public_key, valid_until, max_calls, len(allowed), *allowed])
        return valid_until

    def calls_used(self) -> int:
        return self.session_data(SESSION.public_key)[2]

    def validate_session(self, calls: Sequence[Call], valid_until: int) -> int:
        """``__validate__`` with a real session signature over ``calls``."""
        signature = session_invoke_signature(
            self.chain, self.account, SESSION, calls, valid_until=valid_until
        )
        return self.validate(calls, signature)

    def is_valid(self, msg_hash: int, signature: Sequence[int]) -> int:
        return self.chain.call(
            self.account, "is_valid_signature", [msg_hash, len(signature), *signature]
        )[0]


@pytest.fixture
def env() -> Env:
    return Env.make(START, OWNER)


def wave(to: int = EXTERNAL) -> Call:
    return Call(to=to, selector=WAVE)


def transfer(to: int = EXTERNAL) -> Call:
    return Call(to=to, selector=TRANSFER, calldata=[0xBEEF, 1, 0])


# -- __validate__: one refused call refuses the multicall -------------------------------------


def test_validate_refuses_a_multicall_with_one_call_outside_the_whitelist(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100, allowed=[WAVE])
    assert env.validate_session([wave(), wave()], vu) == VALID
    assert env.calls_used() == 1
    for calls in ([wave(), transfer()], [transfer(), wave()]):
        assert env.validate_session(calls, vu) == 0
    assert env.calls_used() == 1


def test_validate_refuses_a_multicall_with_one_call_to_the_wallet(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)  # empty whitelist
    assert env.validate_session([wave(), wave()], vu) == VALID
    for calls in ([wave(), wave(env.account)], [wave(env.account), wave()]):
        assert env.validate_session(calls, vu) == 0
    assert env.calls_used() == 1


def test_validate_refuses_a_multicall_with_one_admin_call(env: Env) -> None:
    upgrade = Call(to=EXTERNAL, selector="upgrade", calldata=[1])
    vu = env.add_session(valid_until=START + 100, allowed=[WAVE, upgrade.selector])
    for calls in ([wave(), upgrade], [upgrade, wave()]):
        assert env.validate_session(calls, vu) == 0
    assert env.calls_used() == 0


# -- u64 and time bounds ------------------------------------------------------------------------


def test_a_session_valid_until_u64_max_validates(env: Env) -> None:
    vu = env.add_session(valid_until=U64_MAX)
    assert env.validate_session([wave()], vu) == VALID
    r, s = SESSION.sign(0xABC)
    assert env.is_valid(0xABC, [SESSION.public_key, r, s, vu]) == VALID


def test_signed_valid_until_is_inclusive(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    r, s = SESSION.sign(0xABC)
    assert env.validate_session([wave()], START) == VALID  # signed for exactly now
    assert env.is_valid(0xABC, [SESSION.public_key, r, s, START]) == VALID
    assert env.validate_session([wave()], START - 1) == 0  # signed bound already past
    assert env.is_valid(0xABC, [SESSION.public_key, r, s, START - 1]) == 0
    assert vu > START


def test_is_valid_signature_needs_an_active_session(env: Env) -> None:
    r, s = SESSION.sign(0xABC)
    sig = [SESSION.public_key, r, s, START + 50]
    assert env.is_valid(0xABC, sig) == 0  # not registered
    env.add_session(valid_until=START + 100, max_calls=1)
    assert env.is_valid(0xABC, sig) == VALID
    assert env.validate_session([wave()], START + 50) == VALID  # uses the one call
    assert env.is_valid(0xABC, sig) == 0  # exhausted


@pytest.mark.parametrize("length", [0, 1, 3, 5])
def test_is_valid_signature_of_other_lengths_is_zero(env: Env, length: int) -> None:
    env.add_session(valid_until=START + 100)
    r, s = SESSION.sign(0xABC)
    full = [SESSION.public_key, r, s, START + 100, 0]
    assert env.is_valid(0xABC, full[:length]) == 0


def test_is_valid_signature_owner_form(env: Env) -> None:
    r, s = OWNER.sign(0xABC)
    assert env.is_valid(0xABC, [r, s]) == VALID
    assert env.is_valid(0xABD, [r, s]) == 0
    r2, s2 = SESSION.sign(0xABC)
    assert env.is_valid(0xABC, [r2, s2]) == 0


# -- SNIP-9 -----------------------------------------------------------------------------------


def _outside(env: Env, calls: Sequence[Call], *, nonce: int, valid_until: int | None,
             window: tuple[int, int] | None = None, caller: int = 0,
             relayer: int | None = None, key: SecretKey = SESSION) -> object:
    return outside_execute(env.chain, env.account, key, calls, nonce=nonce,
                           valid_until=valid_until, window=window, caller=caller,
                           relayer=relayer)


def _panics(message: str) -> pytest.RaisesContext[ContractPanic]:
    return pytest.raises(ContractPanic, match=f"^{message}$")


def test_outside_execution_refuses_a_mixed_multicall(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100, allowed=[WAVE])
    for nonce, calls in enumerate(([wave(), transfer()], [transfer(), wave()]), 1):
        with _panics("Session: unauthorized selector"):
            _outside(env, calls, nonce=nonce, valid_until=vu)
    _outside(env, [wave(), wave()], nonce=9, valid_until=vu)
    assert env.calls_used() == 1


def test_outside_execution_session_timestamp_bounds(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    r, s = SESSION.sign(0xABC)
    with _panics("Session: invalid timestamp"):
        env.chain.execute_from_outside(
            env.account, caller=0, nonce=1, execute_after=0, execute_before=START + 10,
            calls=[wave()], signature=[SESSION.public_key, r, s, U64_MAX + 1],
        )
    with _panics("Session: valid_until exceeded"):
        _outside(env, [wave()], nonce=2, valid_until=vu + 1)
    _outside(env, [wave()], nonce=3, valid_until=vu)  # exactly the stored bound
    assert env.calls_used() == 1


def test_outside_execution_by_a_session_valid_until_u64_max(env: Env) -> None:
    env.add_session(valid_until=U64_MAX)
    _outside(env, [wave()], nonce=1, valid_until=U64_MAX)
    assert env.calls_used() == 1


def test_outside_execution_window_is_exclusive_at_both_ends(env: Env) -> None:
    with _panics("SRC9: now <= execute_after"):
        _outside(env, [wave()], nonce=1, valid_until=None, window=(START, START + 10))
    with _panics("SRC9: now >= execute_before"):
        _outside(env, [wave()], nonce=2, valid_until=None, window=(START - 10, START))
    _outside(env, [wave()], nonce=3, valid_until=None, window=(START - 1, START + 1),
             key=OWNER)


def test_outside_execution_caller_rules(env: Env) -> None:
    relayer = 0xEE
    with _panics("SRC9: invalid caller"):
        _outside(env, [wave()], nonce=1, valid_until=None, caller=relayer, relayer=0xEF,
                 key=OWNER)
    _outside(env, [wave()], nonce=2, valid_until=None, caller=relayer, relayer=relayer,
             key=OWNER)
    _outside(env, [wave()], nonce=3, valid_until=None, caller=ANY_CALLER, relayer=0xEF,
             key=OWNER)


def test_outside_execution_nonce_is_single_use(env: Env) -> None:
    _outside(env, [wave()], nonce=7, valid_until=None, key=OWNER)
    assert env.chain.call(env.account, "is_valid_outside_execution_nonce", [7]) == [0]
    assert env.chain.call(env.account, "is_valid_outside_execution_nonce", [8]) == [1]
    with _panics("SRC9: duplicated nonce"):
        _outside(env, [wave()], nonce=7, valid_until=None, key=OWNER)


# -- SRC-5, deploy validation, revocation and policy removal leave exact state --------------


@pytest.mark.parametrize(
    "interface",
    [
        0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87748628532A055,  # ISRC5
        0x2CECCEF7F994940B3962A6C67E0BA4FCD37DF7D131417C604F91E03CAECC1CD,  # ISRC6
        0x1D1144BB2138366FF28D8E9AB57456B1D332AC42196230C3A602003C89872,  # ISRC9_V2
        0x037AB4F01106526662A612EAA2926DF2AA314C4144B964F183805880BBCFA55D,  # session keys
    ],
)
def test_supports_the_documented_interface_ids(env: Env, interface: int) -> None:
    """docs/contract.md §10: the exact ids, and nothing one off."""
    ask = lambda i: env.chain.call(env.account, "supports_interface", [i])  # noqa: E731
    assert ask(interface) == [1]
    assert ask(interface + 1) == [0] and ask(interface - 1) == [0]


def test_validate_deploy_and_declare_return_valid_for_the_owner(env: Env) -> None:
    tx_hash = 0xABCDEF
    r, s = OWNER.sign(tx_hash)
    for entrypoint, calldata in (("__validate_deploy__", [1, 2, 3]), ("__validate_declare__", [1])):
        assert env.chain.call(
            env.account, entrypoint, calldata, signature=[r, s], transaction_hash=tx_hash
        ) == [VALID]
        with pytest.raises(ContractPanic, match="invalid signature"):
            env.chain.call(env.account, entrypoint, calldata, signature=[r, s + 1],
                           transaction_hash=tx_hash)


def test_revoke_clears_every_whitelist_slot(env: Env) -> None:
    env.add_session(valid_until=START + 100, allowed=[WAVE, TRANSFER])
    env.as_self("revoke_session_key", [SESSION.public_key])
    for index in range(3):
        assert env.chain.call(
            env.account, "get_session_allowed_entrypoint_at", [SESSION.public_key, index]
        ) == [0]
    assert env.chain.call(env.account, "get_session_data", [SESSION.public_key]) == [0, 0, 0, 0]


def test_removed_policy_reads_back_as_all_zeros(env: Env) -> None:
    env.add_session(valid_until=START + 100)
    token = 0xDA1
    env.as_self("set_spending_policy", [SESSION.public_key, token, 10, 0, 50, 0, 3600])
    env.as_self("remove_spending_policy", [SESSION.public_key, token])
    got = env.chain.call(env.account, "get_spending_policy", [SESSION.public_key, token])
    assert got == [0] * 8


def test_compute_session_message_hash_is_what_a_session_signs(env: Env) -> None:
    vu = env.add_session(valid_until=START + 100)
    calls = [wave(), transfer()]
    calldata = [len(calls)]
    for c in calls:
        calldata += [c.to, c.selector, len(c.calldata), *c.calldata]
    nonce = env.chain.get_nonce(env.account)
    (got,) = env.chain.call(env.account, "compute_session_message_hash", [*calldata, vu],
                            nonce=nonce)
    _, r, s, _ = session_invoke_signature(env.chain, env.account, SESSION, calls,
                                          valid_until=vu)
    assert keys_verify(SESSION.public_key, got, r, s)


def test_set_public_key_returns_nothing_and_rotates_the_owner(env: Env) -> None:
    new_owner = SecretKey(0x5EC0DD)
    message = accept_ownership_hash(env.account, OWNER.public_key)
    r, s = new_owner.sign(message)
    assert env.as_self("set_public_key", [new_owner.public_key, 2, r, s]) == []
    assert env.chain.call(env.account, "get_public_key") == [new_owner.public_key]


def test_a_deployed_account_has_the_documented_v33_class_hash(env: Env) -> None:
    """docs/contract.md: the mainnet class hash of v33."""
    v33 = 0x0484BBD2404B3C7264BEA271F7267D6D4004821AC7787A9EED7F472E79EF40D1
    assert env.chain.class_hash_at(env.account) == v33


def test_upgrade_refuses_class_hash_zero_and_register_interfaces_returns_nothing(
    env: Env,
) -> None:
    with pytest.raises(ContractPanic, match="^Class hash cannot be zero$"):
        env.as_self("upgrade", [0])
    assert env.as_self("upgrade", [1]) == []
    assert env.chain.class_hash_at(env.account) == 1
    assert env.as_self("register_interfaces") == []


def test_set_public_key_refuses_a_bad_or_misshaped_signature(env: Env) -> None:
    new_owner = SecretKey(0x5EC0DD)
    message = accept_ownership_hash(env.account, OWNER.public_key)
    r, s = new_owner.sign(message)
    for signature in ([r, s + 1], [r], [r, s, 0]):
        with pytest.raises(ContractPanic, match="invalid signature"):
            env.as_self("set_public_key", [new_owner.public_key, len(signature), *signature])
    assert env.chain.call(env.account, "get_public_key") == [OWNER.public_key]
