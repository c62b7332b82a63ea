"""Signing shortcuts for tests and simulations against LocalChain.

Each helper builds what a real client would send (owner INVOKE, session INVOKE, SNIP-9 outside
execution) with real Stark signatures, so tests read as scenarios instead of hash plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hashing import outside_execution_hash, session_validate_hash
from ..keys import SecretKey, session_signature
from ..types import Call
from .chain import LocalChain
from .model import Receipt

__all__ = [
    "owner_invoke",
    "session_invoke_signature",
    "session_invoke",
    "outside_signature",
    "outside_execute",
]


def owner_invoke(
    chain: LocalChain, account: int, owner: SecretKey, calls: Sequence[Call]
) -> Receipt:
    """An INVOKE signed ``[r, s]`` by the owner over :meth:`LocalChain.invoke_hash`."""
    r, s = owner.sign(chain.invoke_hash(account, calls))
    return chain.invoke(account, calls, [r, s])


def session_invoke_signature(
    chain: LocalChain,
    account: int,
    session: SecretKey,
    calls: Sequence[Call],
    *,
    valid_until: int,
    nonce: int | None = None,
) -> tuple[int, int, int, int]:
    """``[pubkey, r, s, valid_until]`` over the session hash (docs/contract.md, "The session
    hash") with the account's (or the given) protocol nonce."""
    msg_hash = session_validate_hash(
        account=account,
        chain_id=chain.chain_id,
        nonce=chain.get_nonce(account) if nonce is None else nonce,
        valid_until=valid_until,
        calls=calls,
    )
    return session_signature(session, msg_hash, valid_until)


def session_invoke(
    chain: LocalChain,
    account: int,
    session: SecretKey,
    calls: Sequence[Call],
    *,
    valid_until: int,
) -> Receipt:
    """An INVOKE signed by a session key (docs/contract.md, "A direct INVOKE, end to end")."""
    signature = session_invoke_signature(chain, account, session, calls, valid_until=valid_until)
    return chain.invoke(account, calls, signature)


def outside_signature(
    chain: LocalChain,
    account: int,
    key: SecretKey,
    *,
    caller: int,
    nonce: int,
    execute_after: int,
    execute_before: int,
    calls: Sequence[Call],
    valid_until: int | None = None,
    felt_times: bool = False,
) -> tuple[int, ...]:
    """A SNIP-9 signature: owner ``[r, s]`` if ``valid_until`` is None, else the 4-felt session
    form; over h1 (u128 times) or, with ``felt_times``, h2."""
    msg_hash = outside_execution_hash(
        account=account,
        chain_id=chain.chain_id,
        caller=caller,
        nonce=nonce,
        execute_after=execute_after,
        execute_before=execute_before,
        calls=calls,
        felt_times=felt_times,
    )
    if valid_until is None:
        return key.sign(msg_hash)
    return session_signature(key, msg_hash, valid_until)


def outside_execute(
    chain: LocalChain,
    account: int,
    key: SecretKey,
    calls: Sequence[Call],
    *,
    nonce: int,
    valid_until: int | None = None,
    caller: int = 0,
    relayer: int | None = None,
    window: tuple[int, int] | None = None,
    felt_times: bool = False,
) -> Receipt:
    """Sign and run an outside execution (window defaults to ``(now - 60, now + 3600)``)."""
    now = chain.now()
    after, before = window if window is not None else (now - 60, now + 3600)
    signature = outside_signature(
        chain,
        account,
        key,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        valid_until=valid_until,
        felt_times=felt_times,
    )
    return chain.execute_from_outside(
        account,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        signature=signature,
        relayer=relayer,
    )
