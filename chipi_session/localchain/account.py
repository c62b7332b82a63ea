"""The Chipi v33 account contract (docs/contract.md), entrypoint by entrypoint.

Each handler follows the Cairo code's order of checks, because which check fails first decides
the panic message (or the 0 that ``__validate__`` returns). The session policy itself
(``is_session_allowed_for_calls``, ``check_and_update_spending``) is
:mod:`chipi_session.policy`, the very code the engine runs as its pre-flight, so the two cannot
drift apart. The session-key component (keys, whitelist, budget, spending policies and their
entrypoints) is :mod:`.session_keys`. Storage lives in
:class:`~chipi_session.localchain.state.ChainState`, keyed by the account address.

Deliberate simplifications (documented, not observable through the v33 ABI): ``upgrade``
records the new class hash and emits ``Upgraded`` but the account keeps running v33 code, and the
owner's ``[r, s]`` signs LocalChain's own transaction hash (see ``LocalChain.invoke_hash``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..felts import U64_MAX, encode_short_string, selector
from ..hashing import ANY_CALLER, outside_execution_hash, poseidon_many
from ..types import Call, SessionStatus
from . import session_keys
from .abi import Calldata, encode_spans
from .ecdsa import check_ecdsa_signature
from .model import ContractPanic
from .runtime import ContractClass, Frame, Handler
from .session_keys import (
    assert_only_self,
    check_and_update_spending,
    consume_call,
    session_allowed_for_calls,
    session_record,
    validate_session,
)

__all__ = [
    "ACCOUNT_CLASS",
    "CONSTRUCTOR",
    "V33_CLASS_HASH",
    "VALID",
    "CONTRACT_INFO",
    "SESSION_KEY_MANAGER_ID",
    "ISRC5_ID",
    "ISRC6_ID",
    "ISRC9_V2_ID",
    "accept_ownership_hash",
    "constructor",
]

#: Mainnet class hash of v33 (docs/contract.md §2); recorded for deployed accounts.
V33_CLASS_HASH = 0x0484BBD2404B3C7264BEA271F7267D6D4004821AC7787A9EED7F472E79EF40D1
VALID = encode_short_string("VALID")
CONTRACT_INFO = encode_short_string("v33")
SESSION_KEY_MANAGER_ID = (
    selector("add_or_update_session_key")
    ^ selector("revoke_session_key")
    ^ selector("get_session_data")
)
#: OpenZeppelin v3 ``ISRC5_ID`` (docs/contract.md §10); ``supports_interface`` always knows it.
ISRC5_ID = 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87748628532A055
ISRC6_ID = 0x2CECCEF7F994940B3962A6C67E0BA4FCD37DF7D131417C604F91E03CAECC1CD
ISRC9_V2_ID = 0x1D1144BB2138366FF28D8E9AB57456B1D332AC42196230C3A602003C89872

# events (docs/contract.md §11.1): keys[0] is sn_keccak of the variant name
_EV_OWNER_ADDED = selector("OwnerAdded")
_EV_OWNER_REMOVED = selector("OwnerRemoved")
_EV_UPGRADED = selector("Upgraded")

# panic messages (docs/contract.md §12 and the OZ / corelib texts)
_UNAUTHORIZED_CALLER = "Account: unauthorized caller"
_INVALID_SIGNATURE = "Account: invalid signature"


# -- storage helpers -----------------------------------------------------------------------


# -- signatures ----------------------------------------------------------------------------


def _is_valid_signature(f: Frame, msg_hash: int, signature: Sequence[int]) -> bool:
    """The internal ``is_valid_signature`` (docs/contract.md §7.2): read-only, never panics."""
    if len(signature) == 2:
        owner = f.state.owner_keys.get(f.address)
        return check_ecdsa_signature(msg_hash, owner, signature[0], signature[1])
    if len(signature) == 4:
        key, r, s, valid_until = signature
        if valid_until > U64_MAX or f.now > valid_until:
            return False
        record = session_record(f, key)
        status = SessionStatus(record.valid_until, record.max_calls, record.calls_used)
        if not status.is_active(f.now):
            return False
        return check_ecdsa_signature(msg_hash, key, r, s)
    return False


def _assert_owner_signed(f: Frame) -> None:
    """OZ ``validate_transaction``: the owner's ``[r, s]`` over the transaction hash."""
    signature = f.tx.signature
    owner = f.state.owner_keys.get(f.address)
    if len(signature) != 2 or not check_ecdsa_signature(
        f.tx.transaction_hash, owner, signature[0], signature[1]
    ):
        raise ContractPanic(_INVALID_SIGNATURE)


_STARKNET_MESSAGE = encode_short_string("StarkNet Message")
_ACCEPT_OWNERSHIP = encode_short_string("accept_ownership")


def accept_ownership_hash(account: int, current_owner: int) -> int:
    """What a new owner key signs for ``set_public_key`` (OZ, docs/contract.md §7.3)."""
    return poseidon_many([_STARKNET_MESSAGE, _ACCEPT_OWNERSHIP, account, current_owner])


# -- multicall -----------------------------------------------------------------------------


def _execute_calls(f: Frame, calls: Sequence[Call]) -> list[int]:
    """Non-atomic per call (docs/contract.md §5): a failing call gives an empty span."""
    spans: list[Sequence[int]] = []
    for index, call in enumerate(calls):
        result = f.try_call_contract(call.to, call.selector, call.calldata)
        if isinstance(result, ContractPanic):
            f.runtime.inner_failures.append((index, result.message))
            spans.append(())
        else:
            spans.append(result)
    return encode_spans(spans)


# -- entrypoints ---------------------------------------------------------------------------


def constructor(f: Frame, cd: Calldata) -> list[int]:
    public_key = cd.felt()
    cd.end()
    state, me = f.state, f.address
    state.owner_keys.set(me, public_key)
    state.src5.set((me, ISRC6_ID), True)
    f.emit([_EV_OWNER_ADDED, public_key])
    state.src5.set((me, ISRC9_V2_ID), True)
    state.src5.set((me, SESSION_KEY_MANAGER_ID), True)
    return []


def _validate(f: Frame, cd: Calldata) -> list[int]:
    calls = cd.calls()
    cd.end()
    signature = f.tx.signature
    if len(signature) == 0:
        return [VALID if f.caller == f.address else 0]
    if len(signature) == 4:
        return [VALID if validate_session(f, signature, calls) else 0]
    if len(signature) == 2:
        _assert_owner_signed(f)
        return [VALID]
    return [0]


def _execute(f: Frame, cd: Calldata) -> list[int]:
    calls = cd.calls()
    cd.end()
    if f.caller not in (0, f.address):
        raise ContractPanic(_UNAUTHORIZED_CALLER)
    if len(f.tx.signature) == 4:
        check_and_update_spending(f, f.tx.signature[0], calls)
    return _execute_calls(f, calls)


def _validate_deploy(f: Frame, cd: Calldata) -> list[int]:
    cd.felt()  # class_hash
    cd.felt()  # contract_address_salt
    cd.felt()  # public_key
    cd.end()
    _assert_owner_signed(f)
    return [VALID]


def _validate_declare(f: Frame, cd: Calldata) -> list[int]:
    cd.felt()  # class_hash
    cd.end()
    _assert_owner_signed(f)
    return [VALID]


def _is_valid_signature_ep(f: Frame, cd: Calldata) -> list[int]:
    msg_hash = cd.felt()
    signature = cd.felts()
    cd.end()
    return [VALID if _is_valid_signature(f, msg_hash, signature) else 0]


def _execute_from_outside_v2(f: Frame, cd: Calldata) -> list[int]:
    """docs/contract.md §6, in its exact order; any panic reverts the whole call."""
    oe = cd.outside_execution()
    signature = cd.felts()
    cd.end()
    if oe.caller not in (0, ANY_CALLER) and f.caller != oe.caller:
        raise ContractPanic("SRC9: invalid caller")
    now = f.now
    if not oe.execute_after < now:
        raise ContractPanic("SRC9: now <= execute_after")
    if not now < oe.execute_before:
        raise ContractPanic("SRC9: now >= execute_before")
    nonces = f.state.src9_nonces
    if nonces.get((f.address, oe.nonce)):
        raise ContractPanic("SRC9: duplicated nonce")
    nonces.set((f.address, oe.nonce), True)

    is_session = len(signature) == 4
    if is_session:
        key = signature[0]
        if signature[3] > U64_MAX:
            raise ContractPanic("Session: invalid timestamp")
        if not signature[3] <= session_record(f, key).valid_until:
            raise ContractPanic("Session: valid_until exceeded")
        if not session_allowed_for_calls(f, key, oe.calls):
            raise ContractPanic("Session: unauthorized selector")

    def message_hash(felt_times: bool) -> int:
        return outside_execution_hash(
            account=f.address,
            chain_id=f.tx.chain_id,
            caller=oe.caller,
            nonce=oe.nonce,
            execute_after=oe.execute_after,
            execute_before=oe.execute_before,
            calls=oe.calls,
            felt_times=felt_times,
        )

    # h1 (u128 timestamps) first; h2 (felt) is only computed when h1 does not verify
    if not _is_valid_signature(f, message_hash(False), signature):
        if not _is_valid_signature(f, message_hash(True), signature):
            raise ContractPanic("SRC9: invalid signature")

    if is_session:
        consume_call(f, signature[0])
        check_and_update_spending(f, signature[0], oe.calls)
    return _execute_calls(f, oe.calls)


def _is_valid_outside_execution_nonce(f: Frame, cd: Calldata) -> list[int]:
    nonce = cd.felt()
    cd.end()
    return [0 if f.state.src9_nonces.get((f.address, nonce)) else 1]


def _register_interfaces(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    assert_only_self(f)
    f.state.src5.set((f.address, SESSION_KEY_MANAGER_ID), True)
    return []


def _get_contract_info(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [CONTRACT_INFO]


def _get_snip9_version(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [2]


def _upgrade(f: Frame, cd: Calldata) -> list[int]:
    class_hash = cd.address()  # ClassHash: a felt below 2**251
    cd.end()
    assert_only_self(f)
    if class_hash == 0:
        raise ContractPanic("Class hash cannot be zero")
    f.state.class_hashes.set(f.address, class_hash)
    f.emit([_EV_UPGRADED], [class_hash])
    return []


def _supports_interface(f: Frame, cd: Calldata) -> list[int]:
    interface_id = cd.felt()
    cd.end()
    supported = interface_id == ISRC5_ID or f.state.src5.get((f.address, interface_id))
    return [1 if supported else 0]


def _get_public_key(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [f.state.owner_keys.get(f.address)]


def _set_public_key(f: Frame, cd: Calldata) -> list[int]:
    """OZ v3: self only, and the new key must sign ``accept_ownership_hash``."""
    new_key = cd.felt()
    signature = cd.felts()
    cd.end()
    assert_only_self(f)
    current = f.state.owner_keys.get(f.address)
    message = accept_ownership_hash(f.address, current)
    if len(signature) != 2 or not check_ecdsa_signature(
        message, new_key, signature[0], signature[1]
    ):
        raise ContractPanic(_INVALID_SIGNATURE)
    f.emit([_EV_OWNER_REMOVED, current])
    f.state.owner_keys.set(f.address, new_key)
    f.emit([_EV_OWNER_ADDED, new_key])
    return []


_ENTRYPOINTS: dict[str, Handler] = {
    **session_keys.ENTRYPOINTS,
    "__validate__": _validate,
    "__execute__": _execute,
    "__validate_deploy__": _validate_deploy,
    "__validate_declare__": _validate_declare,
    "is_valid_signature": _is_valid_signature_ep,
    "execute_from_outside_v2": _execute_from_outside_v2,
    "is_valid_outside_execution_nonce": _is_valid_outside_execution_nonce,
    "register_interfaces": _register_interfaces,
    "get_contract_info": _get_contract_info,
    "get_snip9_version": _get_snip9_version,
    "upgrade": _upgrade,
    "supports_interface": _supports_interface,
    "get_public_key": _get_public_key,
    "getPublicKey": _get_public_key,
    "set_public_key": _set_public_key,
    "setPublicKey": _set_public_key,
}

#: The v33 account class: selector -> handler.
ACCOUNT_CLASS: ContractClass = {selector(name): h for name, h in _ENTRYPOINTS.items()}
CONSTRUCTOR: Handler = constructor
