"""SNIP-12 / SNIP-9 typed data and the session message hashes.

The hot path hashes with the contract's own Poseidon construction (:mod:`.poseidon`, native
where available) from constant type hashes; starknet-py's TypedData is the reference the tests
compare against and the cold path for typed data spelled differently from ours. Selectors are
always written as hex in typed data: starknet-py 0.30 mis-encodes int selectors in ``sign_outside_execution_call``, hex ones hash correctly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .felts import encode_short_string, to_hex
from .poseidon import poseidon_many

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
    "DOMAIN_TYPE_HASH",
    "CALL_TYPE_HASH",
    "OUTSIDE_EXECUTION_TYPE_HASH_U128",
    "OUTSIDE_EXECUTION_TYPE_HASH_FELT",
    "domain_hash",
    "outside_execution_hash",
    "clear_hash_caches",
]

ANY_CALLER = 0x414E595F43414C4C4552
SN_MAIN = 0x534E5F4D41494E
SN_SEPOLIA = 0x534E5F5345504F4C4941
OUTSIDE_EXECUTION_DOMAIN_NAME = "Account.execute_from_outside"


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
    """The ``__validate__``-path session hash (docs/contract.md, "The session hash"): one flat
    Poseidon."""
    data: list[int] = [account, chain_id, nonce, valid_until]
    for c in calls:
        data.extend((c.to, c.selector, len(c.calldata), *c.calldata))
    return poseidon_many(data)


# -- the OutsideExecution hash computed from fixed type hashes ---------------------------------
# The contract hashes the struct directly (a dozen Poseidon permutations, ~1 ms) where
# TypedData hashes JSON (~2-3 ms). LocalChain verifies with it; ChipiApiBackend uses it for the
# typed data it checked is exactly its own, and falls back to TypedData otherwise. The tests
# check both agree on both time encodings and on the spec's vectors.

_CALL_TYPE = '"Call"("To":"ContractAddress","Selector":"selector","Calldata":"felt*")'


def _oe_type(time_type: str) -> str:
    return (
        '"OutsideExecution"("Caller":"ContractAddress","Nonce":"felt",'
        f'"Execute After":"{time_type}","Execute Before":"{time_type}","Calls":"Call*")'
        + _CALL_TYPE
    )


_DOMAIN_TYPE = (
    '"StarknetDomain"("name":"shortstring","version":"shortstring",'
    '"chainId":"shortstring","revision":"shortstring")'
)
# The type hashes are sn_keccak of the type strings above, written out so the import needs no
# Keccak; tests/test_native_hashing.py recomputes them (``keccak250(_DOMAIN_TYPE)`` etc.).
DOMAIN_TYPE_HASH = 0x1FF2F602E42168014D405A94F75E8A93D640751D71D16311266E140D8B0A210
CALL_TYPE_HASH = 0x3635C7F2A7BA93844C0D064E18E487F35AB90F7C39D00F186A781FC3F0C2CA9
#: Primary: the OZ / starknet.js / SNIP-9 v2 encoding (timestamps as u128).
OUTSIDE_EXECUTION_TYPE_HASH_U128 = 0x312B56C05A7965066DDBDA31C016D8D05AFC305071C0CA3CDC2192C3C2F1F0F
#: Fallback: the legacy Chipi paymaster encoding (timestamps as felt).
OUTSIDE_EXECUTION_TYPE_HASH_FELT = 0x5A4B49E17039355CD95D1F0981D75901191D1319B1F4B05A9A791D218D7E0C

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
    """The SNIP-9 hash with ``u128`` times (``felt_times=False``) or ``felt`` times, the two the
    contract tries in turn (docs/contract.md, "SNIP-9: execute_from_outside_v2", step 5).

    A pure function, memoized on all of its inputs (a small LRU): in one process the signer and
    LocalChain's contract hash the same OutsideExecution, and the second gets the first's result
    instead of hashing it again. Same inputs, same hash: the contract still checks it.
    """
    args = (
        account,
        chain_id,
        caller,
        nonce,
        execute_after,
        execute_before,
        tuple(calls),
        bool(felt_times),
    )
    try:
        return _outside_execution_hash_cached(*args)
    except TypeError:  # call objects that cannot be a cache key: hash without the cache
        return _outside_execution_hash(*args)


def _call_hash(call: Call) -> int:
    return poseidon_many([CALL_TYPE_HASH, call.to, call.selector, poseidon_many(call.calldata)])


#: A call's struct hash, by value (a bot's calls repeat: same token, recipient, amount).
_call_hash_cached = functools.lru_cache(maxsize=1024)(_call_hash)


def _outside_execution_hash(
    account: int,
    chain_id: int,
    caller: int,
    nonce: int,
    execute_after: int,
    execute_before: int,
    calls: tuple[Call, ...],
    felt_times: bool,
) -> int:
    try:
        call_hashes = [_call_hash_cached(c) for c in calls]
    except TypeError:
        call_hashes = [_call_hash(c) for c in calls]
    type_hash = OUTSIDE_EXECUTION_TYPE_HASH_FELT if felt_times else OUTSIDE_EXECUTION_TYPE_HASH_U128
    struct_hash = poseidon_many(
        [type_hash, caller, nonce, execute_after, execute_before, poseidon_many(call_hashes)]
    )
    return poseidon_many([_STARKNET_MESSAGE, domain_hash(chain_id), account, struct_hash])


# typed=True: an int and an equal float or bool are different keys (only ints are felts)
_outside_execution_hash_cached = functools.lru_cache(maxsize=512, typed=True)(
    _outside_execution_hash
)


def clear_hash_caches() -> None:
    """Forget every memoized hash (tests use it to compare cold and warm results)."""
    _outside_execution_hash_cached.cache_clear()
    _call_hash_cached.cache_clear()
    domain_hash.cache_clear()
