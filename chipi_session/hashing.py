"""SNIP-12 / SNIP-9 typed data and the session message hashes.

starknet-py does the hashing (typed data, Poseidon); this module only builds the inputs the
Chipi wallet contract hashes. Selectors are always written as hex in typed data: starknet-py
0.30 mis-encodes int selectors in ``sign_outside_execution_call``, hex ones hash correctly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .felts import to_hex

if TYPE_CHECKING:
    from .types import Call

__all__ = [
    "ANY_CALLER",
    "SN_MAIN",
    "SN_SEPOLIA",
    "OUTSIDE_EXECUTION_DOMAIN_NAME",
    "outside_execution_typed_data",
    "typed_data_message_hash",
    "session_validate_hash",
    "poseidon_many",
]

ANY_CALLER = 0x414E595F43414C4C4552
SN_MAIN = 0x534E5F4D41494E
SN_SEPOLIA = 0x534E5F5345504F4C4941
OUTSIDE_EXECUTION_DOMAIN_NAME = "Account.execute_from_outside"


def poseidon_many(values: Sequence[int]) -> int:
    from starknet_py.hash.hash_method import HashMethod

    return int(HashMethod.POSEIDON.hash_many(list(values)))


def outside_execution_typed_data(
    *,
    caller: int,
    nonce: int,
    execute_after: int,
    execute_before: int,
    calls: Sequence[Call],
    chain_id: int,
    time_type: str = "u128",
) -> dict[str, Any]:
    """The SNIP-9 v2 OutsideExecution as SNIP-12 rev 1 typed data (the shape Chipi returns).

    ``time_type="u128"`` is the standard (OZ, starknet.js); ``"felt"`` is the legacy variant the
    v33 contract also accepts.
    """
    return {
        "types": {
            "StarknetDomain": [
                {"name": "name", "type": "shortstring"},
                {"name": "version", "type": "shortstring"},
                {"name": "chainId", "type": "shortstring"},
                {"name": "revision", "type": "shortstring"},
            ],
            "OutsideExecution": [
                {"name": "Caller", "type": "ContractAddress"},
                {"name": "Nonce", "type": "felt"},
                {"name": "Execute After", "type": time_type},
                {"name": "Execute Before", "type": time_type},
                {"name": "Calls", "type": "Call*"},
            ],
            "Call": [
                {"name": "To", "type": "ContractAddress"},
                {"name": "Selector", "type": "selector"},
                {"name": "Calldata", "type": "felt*"},
            ],
        },
        "primaryType": "OutsideExecution",
        "domain": {
            "name": OUTSIDE_EXECUTION_DOMAIN_NAME,
            "version": "2",
            "chainId": to_hex(chain_id),
            "revision": "1",
        },
        "message": {
            "Caller": to_hex(caller),
            "Nonce": to_hex(nonce),
            "Execute After": to_hex(execute_after),
            "Execute Before": to_hex(execute_before),
            "Calls": [
                {
                    "To": to_hex(c.to),
                    "Selector": to_hex(c.selector),
                    "Calldata": [to_hex(x) for x in c.calldata],
                }
                for c in calls
            ],
        },
    }


def typed_data_message_hash(typed_data: Mapping[str, Any], account: int) -> int:
    """SNIP-12 message hash of ``typed_data`` for ``account`` (starknet-py's implementation)."""
    from starknet_py.utils.typed_data import TypedData

    return int(TypedData.from_dict(dict(typed_data)).message_hash(account))  # type: ignore[arg-type]


def session_validate_hash(
    *, account: int, chain_id: int, nonce: int, valid_until: int, calls: Sequence[Call]
) -> int:
    """The ``__validate__``-path session hash (contract.md §6.3): one flat Poseidon."""
    data: list[int] = [account, chain_id, nonce, valid_until]
    for c in calls:
        data.extend((c.to, c.selector, len(c.calldata), *c.calldata))
    return poseidon_many(data)
