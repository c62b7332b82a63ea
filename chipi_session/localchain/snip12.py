"""The SNIP-12 rev-1 OutsideExecution hashes as the v33 contract computes them (contract.md §7.3).

The client side hashes typed-data JSON through starknet-py
(:func:`chipi_session.hashing.typed_data_message_hash`, ~3 ms); the contract hashes the struct
directly from fixed type hashes, which takes a dozen Poseidon permutations. LocalChain does the
latter, so verifying one outside execution costs about one hash and one ECDSA verify. The tests
check both sides agree on both time encodings.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ..felts import encode_short_string, selector
from ..hashing import OUTSIDE_EXECUTION_DOMAIN_NAME, poseidon_many
from ..types import Call

__all__ = [
    "DOMAIN_TYPE_HASH",
    "CALL_TYPE_HASH",
    "OUTSIDE_EXECUTION_TYPE_HASH_U128",
    "OUTSIDE_EXECUTION_TYPE_HASH_FELT",
    "domain_hash",
    "outside_execution_hash",
]

_CALL_TYPE = '"Call"("To":"ContractAddress","Selector":"selector","Calldata":"felt*")'


def _oe_type(time_type: str) -> str:
    return (
        '"OutsideExecution"("Caller":"ContractAddress","Nonce":"felt",'
        f'"Execute After":"{time_type}","Execute Before":"{time_type}","Calls":"Call*")'
        + _CALL_TYPE
    )


DOMAIN_TYPE_HASH = selector(
    '"StarknetDomain"("name":"shortstring","version":"shortstring",'
    '"chainId":"shortstring","revision":"shortstring")'
)
CALL_TYPE_HASH = selector(_CALL_TYPE)
#: Primary: the OZ / starknet.js / SNIP-9 v2 encoding (timestamps as u128).
OUTSIDE_EXECUTION_TYPE_HASH_U128 = selector(_oe_type("u128"))
#: Fallback: the legacy Chipi paymaster encoding (timestamps as felt).
OUTSIDE_EXECUTION_TYPE_HASH_FELT = selector(_oe_type("felt"))

_STARKNET_MESSAGE = encode_short_string("StarkNet Message")
_DOMAIN_NAME = encode_short_string(OUTSIDE_EXECUTION_DOMAIN_NAME)


@functools.lru_cache(maxsize=8)
def domain_hash(chain_id: int) -> int:
    """``StarknetDomain{name, version: 2, chainId, revision: 1}`` (numeric version/revision)."""
    return poseidon_many([DOMAIN_TYPE_HASH, _DOMAIN_NAME, 2, chain_id, 1])


def outside_execution_hash(
    *,
    account: int,
    chain_id: int,
    caller: int,
    nonce: int,
    execute_after: int,
    execute_before: int,
    calls: Sequence[Call],
    felt_times: bool = False,
) -> int:
    """``h1`` (``felt_times=False``) or ``h2`` (``felt_times=True``) of contract.md §7.2."""
    call_hashes = [
        poseidon_many([CALL_TYPE_HASH, c.to, c.selector, poseidon_many(c.calldata)]) for c in calls
    ]
    type_hash = OUTSIDE_EXECUTION_TYPE_HASH_FELT if felt_times else OUTSIDE_EXECUTION_TYPE_HASH_U128
    struct_hash = poseidon_many(
        [type_hash, caller, nonce, execute_after, execute_before, poseidon_many(call_hashes)]
    )
    return poseidon_many([_STARKNET_MESSAGE, domain_hash(chain_id), account, struct_hash])
