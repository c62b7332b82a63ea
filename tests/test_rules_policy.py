"""The session policy's rules at their edges (chipi_session.policy; mutation/config.toml).

Each test pins one rule the mutation run showed unpinned: a multicall that mixes allowed and
refused calls (for the whitelist, the empty-whitelist self-call and the admin-selector checks:
one refused call refuses the batch), exact bounds of the spending arithmetic, and the same
rules seen through LocalChain's ``__validate__`` and through the engine's pre-flight.
"""

from __future__ import annotations

import pytest

from chipi_session import ChipiSessionError, ErrorCode
from chipi_session.felts import U64_MAX, U128_BOUND, U256_BOUND, selector, split_u256
from chipi_session.policy import (
    ADMIN_SELECTORS,
    SPENDING_SELECTORS,
    Denial,
    SpendingViolation,
    apply_spending,
    check_session_allowed,
    denial_error,
)
from chipi_session.types import Call, SessionStatus, SpendingPolicy

from .helpers import RECIPIENT, World

ACCOUNT = 0xACC
TOKEN = 0x70C
OTHER = 0x0123
NOW = 1_000
TRANSFER = selector("transfer")
APPROVE = selector("approve")
WAVE = selector("wave")


def status(
    allowed: tuple[int, ...] = (), *, valid_until: int = NOW + 100, max_calls: int = 5,
    calls_used: int = 0,
) -> SessionStatus:
    return SessionStatus(valid_until, max_calls, calls_used, allowed)


def call(to: int = OTHER, sel: int = WAVE, calldata: tuple[int, ...] = ()) -> Call:
    return Call(to=to, selector=sel, calldata=calldata)


def pay(amount: int, *, to: int = TOKEN, sel: int = TRANSFER) -> Call:
    low, high = split_u256(amount)
    return Call(to=to, selector=sel, calldata=(RECIPIENT, low, high))


# -- is_session_allowed_for_calls: one refused call refuses the whole multicall -----------------


@pytest.mark.parametrize("order", ["refused_last", "refused_first"])
def test_whitelist_refuses_a_multicall_with_one_call_outside_it(order: str) -> None:
    calls = [call(sel=TRANSFER), call(sel=APPROVE)]
    if order == "refused_first":
        calls.reverse()
    allowed = status((TRANSFER,))
    assert check_session_allowed(allowed, ACCOUNT, calls, NOW) is Denial.NOT_WHITELISTED
    assert check_session_allowed(allowed, ACCOUNT, [call(sel=TRANSFER)] * 2, NOW) is None


@pytest.mark.parametrize("order", ["self_last", "self_first"])
def test_empty_whitelist_refuses_a_multicall_with_one_call_to_the_wallet(order: str) -> None:
    calls = [call(to=OTHER), call(to=ACCOUNT)]
    if order == "self_first":
        calls.reverse()
    assert check_session_allowed(status(), ACCOUNT, calls, NOW) is Denial.SELF_CALL
    assert check_session_allowed(status(), ACCOUNT, [call(to=OTHER)] * 2, NOW) is None


def test_a_whitelist_allows_calls_to_the_wallet_itself() -> None:
    """The self-call rule is the empty whitelist's only: a listed entrypoint may target us."""
    calls = [call(to=ACCOUNT, sel=WAVE), call(to=OTHER, sel=WAVE)]
    assert check_session_allowed(status((WAVE,)), ACCOUNT, calls, NOW) is None


@pytest.mark.parametrize("name", ["upgrade", "__execute__", "set_spending_policy"])
@pytest.mark.parametrize("order", ["admin_last", "admin_first"])
def test_one_admin_call_refuses_the_multicall_even_if_whitelisted(name: str, order: str) -> None:
    admin = selector(name)
    calls = [call(sel=WAVE), call(to=OTHER, sel=admin)]
    if order == "admin_first":
        calls.reverse()
    for allowed in ((), (WAVE, admin)):
        got = check_session_allowed(status(allowed), ACCOUNT, calls, NOW)
        assert got is Denial.ADMIN_SELECTOR


def test_admin_selectors_are_the_nine_documented_entrypoints() -> None:
    names = [
        "upgrade", "add_or_update_session_key", "revoke_session_key", "__execute__",
        "set_public_key", "setPublicKey", "execute_from_outside_v2", "set_spending_policy",
        "remove_spending_policy",
    ]
    assert ADMIN_SELECTORS == {selector(n) for n in names}
    assert SPENDING_SELECTORS == {
        selector(n) for n in ("transfer", "approve", "increase_allowance", "increaseAllowance")
    }


def test_expiry_is_inclusive_and_checked_before_the_budget() -> None:
    s = status(valid_until=NOW, calls_used=5, max_calls=5)
    assert check_session_allowed(s, ACCOUNT, [call()], NOW + 1) is Denial.EXPIRED
    assert check_session_allowed(s, ACCOUNT, [call()], NOW) is Denial.EXHAUSTED
    fresh = status(valid_until=NOW)
    assert check_session_allowed(fresh, ACCOUNT, [call()], NOW) is None
    assert check_session_allowed(fresh, ACCOUNT, [call()], NOW + 1) is Denial.EXPIRED


def test_check_order_not_registered_then_budget_then_admin() -> None:
    admin = [call(sel=selector("upgrade"))]
    assert check_session_allowed(status(valid_until=0), ACCOUNT, admin, 0) is (
        Denial.NOT_REGISTERED
    )
    exhausted = status(calls_used=3, max_calls=3)
    assert check_session_allowed(exhausted, ACCOUNT, admin, NOW) is Denial.EXHAUSTED
    assert check_session_allowed(status(calls_used=2, max_calls=3), ACCOUNT, [call()], NOW) is None


@pytest.mark.parametrize(
    ("denial", "code"),
    [
        (Denial.NOT_REGISTERED, ErrorCode.SESSION_NOT_REGISTERED),
        (Denial.EXPIRED, ErrorCode.SESSION_EXPIRED),
        (Denial.EXHAUSTED, ErrorCode.SESSION_MAX_CALLS_EXCEEDED),
        (Denial.ADMIN_SELECTOR, ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED),
        (Denial.SELF_CALL, ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED),
        (Denial.NOT_WHITELISTED, ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED),
    ],
)
def test_each_denial_has_its_error_code(denial: Denial, code: ErrorCode) -> None:
    assert denial_error(denial).code is code
    assert denial_error(denial).message
    if denial is not Denial.NOT_REGISTERED:  # "revoked" only refines "not registered"
        assert denial_error(denial, revoked=True).code is code


def test_not_registered_and_known_revoked_is_revoked() -> None:
    error = denial_error(Denial.NOT_REGISTERED, revoked=True)
    assert error.code is ErrorCode.SESSION_REVOKED
    assert "revoked" in error.message


# -- check_and_update_spending --------------------------------------------------------------


def policy(
    per_call: int = 100, per_window: int = 150, window: int = 60, spent: int = 0,
    start: int = NOW,
) -> SpendingPolicy:
    return SpendingPolicy(per_call, per_window, window, spent, start)


def violation(policies: dict[int, SpendingPolicy], calls: list[Call], now: int = NOW) -> (
    SpendingViolation
):
    with pytest.raises(SpendingViolation) as info:
        apply_spending(policies, calls, now)
    return info.value


def test_non_spending_calls_to_a_capped_token_are_not_counted() -> None:
    """Even with calldata that would be malformed for a transfer."""
    assert apply_spending({TOKEN: policy()}, [call(to=TOKEN, sel=WAVE)], NOW) == {}
    assert apply_spending({TOKEN: policy()}, [call(to=TOKEN, sel=WAVE, calldata=(1, 999, 0))],
                          NOW) == {}


def test_a_spending_call_to_an_uncapped_token_is_not_counted() -> None:
    assert apply_spending({TOKEN: policy()}, [pay(10**6, to=OTHER)], NOW) == {}
    assert apply_spending({}, [Call(to=TOKEN, selector=TRANSFER)], NOW) == {}


def test_a_zero_window_limit_means_no_policy() -> None:
    """``max_per_window == 0`` is how the contract stores "removed": nothing is checked."""
    removed = policy(per_call=0, per_window=0)
    assert apply_spending({TOKEN: removed}, [pay(10**6), Call(to=TOKEN, selector=TRANSFER)],
                          NOW) == {}


def test_a_window_limit_of_one_is_a_real_policy() -> None:
    tiny = policy(per_call=1, per_window=1)
    assert apply_spending({TOKEN: tiny}, [pay(1)], NOW) == {TOKEN: policy(1, 1, spent=1)}
    assert violation({TOKEN: tiny}, [pay(2)]).panic == "Spending: exceeds per-call"


@pytest.mark.parametrize("length", [0, 1, 2])
def test_calldata_shorter_than_three_felts_is_refused_not_indexed(length: int) -> None:
    short = Call(to=TOKEN, selector=TRANSFER, calldata=(RECIPIENT, 5)[:length])
    v = violation({TOKEN: policy()}, [short])
    assert (v.panic, v.code) == ("Spending: calldata too short", ErrorCode.INVALID_INPUT)
    assert v.to_error().code is ErrorCode.INVALID_INPUT


def test_calldata_of_exactly_three_felts_is_read() -> None:
    exact = Call(to=TOKEN, selector=TRANSFER, calldata=(RECIPIENT, 7, 0))
    assert apply_spending({TOKEN: policy()}, [exact], NOW) == {TOKEN: policy(spent=7)}


@pytest.mark.parametrize("low, high", [(U128_BOUND, 0), (0, U128_BOUND), (U128_BOUND, U128_BOUND)])
def test_a_u256_half_of_2_128_is_an_invalid_amount(low: int, high: int) -> None:
    big = policy(per_call=U256_BOUND - 1, per_window=U256_BOUND - 1)
    bad = Call(to=TOKEN, selector=TRANSFER, calldata=(RECIPIENT, low, high))
    v = violation({TOKEN: big}, [bad])
    assert (v.panic, v.code) == ("Spending: invalid amount", ErrorCode.INVALID_INPUT)


def test_the_largest_u256_halves_are_a_valid_amount() -> None:
    big = policy(per_call=U256_BOUND - 1, per_window=U256_BOUND - 1)
    edge = Call(to=TOKEN, selector=TRANSFER, calldata=(RECIPIENT, U128_BOUND - 1, U128_BOUND - 1))
    assert apply_spending({TOKEN: big}, [edge], NOW)[TOKEN].spent_in_window == U256_BOUND - 1


def test_per_call_limit_is_inclusive() -> None:
    assert apply_spending({TOKEN: policy()}, [pay(100)], NOW) == {TOKEN: policy(spent=100)}
    v = violation({TOKEN: policy()}, [pay(101)])
    assert (v.panic, v.code) == (
        "Spending: exceeds per-call", ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
    )


def test_window_limit_is_inclusive_and_cumulative_within_a_batch() -> None:
    assert apply_spending({TOKEN: policy()}, [pay(100), pay(50)], NOW) == {
        TOKEN: policy(spent=150)
    }
    v = violation({TOKEN: policy()}, [pay(100), pay(51)])
    assert (v.panic, v.code) == (
        "Spending: exceeds window limit", ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
    )


def test_window_resets_exactly_at_its_end() -> None:
    spent = policy(spent=150, start=NOW)
    assert violation({TOKEN: spent}, [pay(1)], NOW + 59).panic == "Spending: exceeds window limit"
    assert apply_spending({TOKEN: spent}, [pay(100)], NOW + 60) == {
        TOKEN: policy(spent=100, start=NOW + 60)
    }


def test_a_zero_second_window_resets_on_every_batch() -> None:
    """``now >= start + 0`` always holds: each batch is its own window, even at ``start``."""
    zero = policy(window=0, spent=150, start=NOW)
    assert apply_spending({TOKEN: zero}, [pay(100)], NOW) == {
        TOKEN: policy(window=0, spent=100, start=NOW)
    }


def test_window_end_at_exactly_u64_max_does_not_overflow() -> None:
    start = U64_MAX - 60
    edge = policy(window=60, start=start)
    assert apply_spending({TOKEN: edge}, [pay(10)], start + 1) == {
        TOKEN: policy(window=60, spent=10, start=start)
    }
    over = policy(window=61, start=start)
    v = violation({TOKEN: over}, [pay(10)], start + 1)
    assert (v.panic, v.code) == ("u64_add Overflow", ErrorCode.TRANSACTION_REJECTED)


def test_spent_plus_amount_overflows_only_at_2_256() -> None:
    full = U256_BOUND - 1
    near = policy(per_call=full, per_window=full, spent=full - 2)
    assert apply_spending({TOKEN: near}, [pay(2)], NOW)[TOKEN].spent_in_window == full
    v = violation({TOKEN: near}, [pay(3)])
    assert (v.panic, v.code) == ("u256_add Overflow", ErrorCode.TRANSACTION_REJECTED)


def test_only_changed_policies_are_returned_and_inputs_untouched() -> None:
    policies = {TOKEN: policy(), OTHER: policy()}
    got = apply_spending(policies, [pay(5), call(to=OTHER)], NOW)
    assert got == {TOKEN: policy(spent=5)}
    assert policies == {TOKEN: policy(), OTHER: policy()}


@pytest.mark.parametrize("name", ["approve", "increase_allowance", "increaseAllowance"])
def test_every_spending_entrypoint_counts(name: str) -> None:
    assert apply_spending({TOKEN: policy()}, [pay(9, sel=selector(name))], NOW) == {
        TOKEN: policy(spent=9)
    }


# -- the same rules through LocalChain's __validate__ and the engine's pre-flight -------------

def _set_policy_on_chain(world: World, key: int, per_call: int, per_window: int,
                         window: int) -> None:
    me = world.wallet.address
    world.chain.call(
        me, "set_spending_policy",
        [key, world.token, *split_u256(per_call), *split_u256(per_window), window], caller=me,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["whitelist", "self_call", "admin"])
async def test_engine_refuses_a_mixed_multicall_before_signing(world: World, case: str) -> None:
    me = world.wallet.address
    async with world.session() as s:
        data = await s.create_session()
        allowed = ["transfer"] if case == "whitelist" else None
        await s.register_session(max_calls=5, allowed_entrypoints=allowed)
        good = world.transfer(1)
        bad = {
            "whitelist": Call(to=world.token, selector="approve", calldata=[RECIPIENT, 1, 0]),
            "self_call": Call(to=me, selector="get_public_key"),
            "admin": Call(to=world.token, selector="upgrade", calldata=[1]),
        }[case]
        before = world.balance(RECIPIENT)
        for calls in ([good, bad], [bad, good]):
            with pytest.raises(ChipiSessionError) as info:
                await s.execute_with_session(calls)
            assert info.value.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
        assert world.chain.session_status(me, data.public_key).calls_used == 0
        assert world.balance(RECIPIENT) == before
        await s.execute_with_session([good, good])  # the allowed half alone goes through
        assert world.balance(RECIPIENT) == before + 2


@pytest.mark.anyio
async def test_engine_preflight_ignores_a_removed_policy(world: World) -> None:
    """A policy the engine has seen with ``max_per_window == 0`` limits nothing: the chain
    (which skips such policies) would accept the transfer, so the pre-flight must too."""
    async with world.session() as s:
        await s.create_session()
        await s.register_session(max_calls=5)
        await s.set_spending_policy(world.token, 0, 0, 60)  # stored as "no policy"
        before = world.balance(RECIPIENT)
        await s.execute_with_session(world.transfer(500))
        assert world.balance(RECIPIENT) == before + 500


@pytest.mark.anyio
async def test_engine_preflight_zero_second_window_matches_the_chain(world: World) -> None:
    """A zero-second window (settable on chain, not through the engine) resets on every
    transaction: two transfers of the full window limit at the same instant both go through,
    locally and on chain."""
    async with world.session() as s:
        data = await s.create_session()
        await s.register_session(max_calls=5)
        _set_policy_on_chain(world, data.public_key, 100, 150, 0)
        seen = await s.get_spending_policy(world.token)
        assert seen is not None and seen.window_seconds == 0
        before = world.balance(RECIPIENT)
        await s.execute_with_session(world.transfer(100))
        await s.execute_with_session(world.transfer(100))
        assert world.balance(RECIPIENT) == before + 200
        with pytest.raises(ChipiSessionError) as info:
            await s.execute_with_session(world.transfer(101))
        assert info.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
