"""The v33 account's session-key component: session keys, their whitelist and budget, and
spending policies (docs/contract.md §4, §8).

What :mod:`.account` needs from it to validate a session signature (the stored record, the
whitelist check, consuming one call, the spending update) and the admin and view entrypoints
of the component, which :mod:`.account` puts in the v33 class. Same order of checks as the Cairo
code; the rules themselves are :mod:`chipi_session.policy`, shared with the engine's pre-flight.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..felts import U64_MAX, selector, split_u256
from ..hashing import session_validate_hash
from ..policy import SPENDING_SELECTORS, SpendingViolation, apply_spending, check_session_allowed
from ..types import Call, SessionStatus, SpendingPolicy
from .abi import Calldata
from .ecdsa import check_ecdsa_signature
from .model import ContractPanic
from .runtime import Frame, Handler
from .state import SessionRecord

__all__ = [
    "ENTRYPOINTS",
    "assert_only_self",
    "check_and_update_spending",
    "consume_call",
    "session_allowed_for_calls",
    "session_record",
    "validate_session",
]

# events (docs/contract.md §11.1): keys[0] is sn_keccak of the variant name
_EV_SESSION_ADDED = selector("SessionKeyAdded")
_EV_SESSION_REVOKED = selector("SessionKeyRevoked")
_EV_POLICY_SET = selector("SpendingPolicySet")
_EV_POLICY_REMOVED = selector("SpendingPolicyRemoved")

_UNAUTHORIZED = "Account: unauthorized"


# -- storage helpers -----------------------------------------------------------------------


def session_record(f: Frame, key: int) -> SessionRecord:
    return f.state.sessions.get((f.address, key))


def _session_status(f: Frame, key: int) -> SessionStatus:
    record = session_record(f, key)
    entrypoints = f.state.entrypoints
    allowed = tuple(
        entrypoints.get((f.address, key, i)) for i in range(record.allowed_entrypoints_len)
    )
    return SessionStatus(record.valid_until, record.max_calls, record.calls_used, allowed)


def session_allowed_for_calls(f: Frame, key: int, calls: Sequence[Call]) -> bool:
    return check_session_allowed(_session_status(f, key), f.address, calls, f.now) is None


def consume_call(f: Frame, key: int) -> None:
    record = session_record(f, key)
    f.state.sessions.set((f.address, key), record._replace(calls_used=record.calls_used + 1))


def assert_only_self(f: Frame) -> None:
    if f.caller != f.address:
        raise ContractPanic(_UNAUTHORIZED)


def validate_session(f: Frame, signature: Sequence[int], calls: Sequence[Call]) -> bool:
    """The 4-felt path of ``__validate__`` (docs/contract.md §4.1): False instead of panicking."""
    key, r, s, valid_until = signature
    if valid_until > U64_MAX or f.now > valid_until:
        return False
    if not session_allowed_for_calls(f, key, calls):
        return False
    msg_hash = session_validate_hash(
        account=f.address,
        chain_id=f.tx.chain_id,
        nonce=f.tx.nonce,
        valid_until=valid_until,
        calls=calls,
    )
    if not check_ecdsa_signature(msg_hash, key, r, s):
        return False
    consume_call(f, key)
    return True


# -- spending (docs/contract.md §8) ----------------------------------------------------------


def check_and_update_spending(f: Frame, key: int, calls: Sequence[Call]) -> None:
    tokens = {c.to for c in calls if c.selector in SPENDING_SELECTORS}
    if not tokens:
        return
    store = f.state.policies
    policies: dict[int, SpendingPolicy] = {}
    for token in tokens:
        policy = store.get((f.address, key, token))
        if policy.max_per_window:
            policies[token] = policy
    if not policies:
        return
    try:
        updated = apply_spending(policies, calls, f.now)
    except SpendingViolation as violation:
        raise ContractPanic(violation.panic) from None
    for token, policy in updated.items():
        store.set((f.address, key, token), policy)


def _add_or_update_session_key(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    valid_until = cd.u64()
    max_calls = cd.u32()
    allowed = cd.felts()
    cd.end()
    assert_only_self(f)
    me, entrypoints = f.address, f.state.entrypoints
    for i in range(session_record(f, key).allowed_entrypoints_len):  # stale-entrypoint cleanup
        entrypoints.set((me, key, i), 0)
    f.state.sessions.set((me, key), SessionRecord(valid_until, max_calls, 0, len(allowed)))
    for i, sel in enumerate(allowed):
        entrypoints.set((me, key, i), sel)
    f.emit([_EV_SESSION_ADDED, key], [valid_until, max_calls])
    return []


def _revoke_session_key(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    cd.end()
    assert_only_self(f)
    me, entrypoints = f.address, f.state.entrypoints
    for i in range(session_record(f, key).allowed_entrypoints_len):
        entrypoints.set((me, key, i), 0)
    f.state.sessions.set((me, key), SessionRecord())
    f.emit([_EV_SESSION_REVOKED, key])
    return []


def _get_session_data(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    cd.end()
    return list(session_record(f, key))


def _get_session_allowed_entrypoints_len(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    cd.end()
    return [session_record(f, key).allowed_entrypoints_len]


def _get_session_allowed_entrypoint_at(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    index = cd.u32()
    cd.end()
    return [f.state.entrypoints.get((f.address, key, index))]  # no bounds check, as on chain


def _compute_session_message_hash(f: Frame, cd: Calldata) -> list[int]:
    calls = cd.calls()
    valid_until = cd.u64()
    cd.end()
    return [
        session_validate_hash(
            account=f.address,
            chain_id=f.tx.chain_id,
            nonce=f.tx.nonce,
            valid_until=valid_until,
            calls=calls,
        )
    ]


def _set_spending_policy(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    token = cd.address()
    max_per_call = cd.u256()
    max_per_window = cd.u256()
    window_seconds = cd.u64()
    cd.end()
    assert_only_self(f)
    policy = SpendingPolicy(max_per_call, max_per_window, window_seconds, 0, f.now)
    f.state.policies.set((f.address, key, token), policy)
    f.emit(
        [_EV_POLICY_SET, key, token],
        [*split_u256(max_per_call), *split_u256(max_per_window), window_seconds],
    )
    return []


def _get_spending_policy(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    token = cd.address()
    cd.end()
    p = f.state.policies.get((f.address, key, token))
    return [
        *split_u256(p.max_per_call),
        *split_u256(p.max_per_window),
        p.window_seconds,
        *split_u256(p.spent_in_window),
        p.window_start,
    ]


def _remove_spending_policy(f: Frame, cd: Calldata) -> list[int]:
    key = cd.felt()
    token = cd.address()
    cd.end()
    assert_only_self(f)
    f.state.policies.set((f.address, key, token), SpendingPolicy(0, 0, 0, 0, 0))
    f.emit([_EV_POLICY_REMOVED, key, token])
    return []


#: The component's entrypoints by name (the account adds them to its class).
ENTRYPOINTS: dict[str, Handler] = {
    "add_or_update_session_key": _add_or_update_session_key,
    "revoke_session_key": _revoke_session_key,
    "get_session_data": _get_session_data,
    "get_session_allowed_entrypoints_len": _get_session_allowed_entrypoints_len,
    "get_session_allowed_entrypoint_at": _get_session_allowed_entrypoint_at,
    "compute_session_message_hash": _compute_session_message_hash,
    "set_spending_policy": _set_spending_policy,
    "get_spending_policy": _get_spending_policy,
    "remove_spending_policy": _remove_spending_policy,
}
