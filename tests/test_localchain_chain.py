"""LocalChain as a chain: deployment, ERC-20, calldata decoding, owner entrypoints, events,
receipts, determinism, snapshots, and scale."""

from __future__ import annotations

from typing import Any

import pytest

from chipi_session.clock import ManualClock
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.felts import FIELD_PRIME, selector
from chipi_session.hashing import ANY_CALLER
from chipi_session.keys import SecretKey
from chipi_session.localchain import ChainEvent, ContractPanic, LocalChain, default_chain
from chipi_session.localchain.account import (
    ISRC5_ID,
    ISRC6_ID,
    ISRC9_V2_ID,
    SESSION_KEY_MANAGER_ID,
    VALID,
    accept_ownership_hash,
)
from chipi_session.localchain.testing import owner_invoke, session_invoke
from chipi_session.selfcalls import add_or_update_session_key_call
from chipi_session.types import Call

START = 1_000_000
OWNER = SecretKey(0xC0FFEE)
SESSION = SecretKey(0x5E5510)
ALICE, BOB = 0xA11CE, 0xB0B


@pytest.fixture
def chain() -> LocalChain:
    return LocalChain(clock=ManualClock(START))


@pytest.fixture
def account(chain: LocalChain) -> int:
    return chain.deploy_account(OWNER.public_key)


def panics(message: str) -> Any:
    return pytest.raises(ContractPanic, match=f"^{message}$")


# -- constants -----------------------------------------------------------------------------


def test_interface_ids_and_event_selectors() -> None:
    assert SESSION_KEY_MANAGER_ID == (
        0x037AB4F01106526662A612EAA2926DF2AA314C4144B964F183805880BBCFA55D
    )
    assert selector("SpendingPolicySet") == (
        0x1EF9D3D32FC977DC284DB5B971EC288BA781A23EA286EE085F0DE31FDFD4B38
    )
    assert selector("SpendingPolicyRemoved") == (
        0x317A272FB4D501481DB976C1ADC0DFF69ADDC863CDAAB956E9696DAC694CA87
    )


def test_constructor_registers_interfaces_and_emits_owner_added(
    chain: LocalChain, account: int
) -> None:
    # OZ v3 interfaces/src/introspection.cairo (docs/contract.md §10), pinned by value
    assert ISRC5_ID == 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87748628532A055
    for iid in (ISRC5_ID, ISRC6_ID, ISRC9_V2_ID, SESSION_KEY_MANAGER_ID):
        assert chain.call(account, "supports_interface", [iid]) == [1]
    assert chain.events == [
        ChainEvent(account, (selector("OwnerAdded"), OWNER.public_key), ()),
    ]
    assert chain.block_number == 0  # deployments are setup, not blocks


# -- dispatch and calldata -------------------------------------------------------------------


def test_undeployed_and_unknown_entrypoint(chain: LocalChain, account: int) -> None:
    with panics("Contract not found"):
        chain.call(0x1234, "get_contract_info")
    with panics("Contract not found"):
        chain.get_nonce(0x1234)
    with panics("ENTRYPOINT_NOT_FOUND"):
        chain.call(account, "no_such_entrypoint")
    with panics("ENTRYPOINT_NOT_FOUND"):
        chain.call(account, selector("isValidSignature"))


def test_calldata_deserialization(chain: LocalChain, account: int) -> None:
    me = account
    with panics("Failed to deserialize param #2"):
        chain.call(me, "add_or_update_session_key", [1, 2**64, 1, 0], caller=me)
    with panics("Failed to deserialize param #3"):
        chain.call(me, "add_or_update_session_key", [1, 5, 2**32, 0], caller=me)
    with panics("Failed to deserialize param #4"):
        chain.call(me, "add_or_update_session_key", [1, 5, 1, 3, 7], caller=me)
    with panics("Input too long for arguments"):
        chain.call(me, "get_session_data", [1, 2])
    with panics("Failed to deserialize param #1"):
        chain.call(me, "get_session_data", [])
    with panics("Failed to deserialize param #2"):
        chain.call(me, "get_spending_policy", [1, 2**251])
    with panics("Failed to deserialize param #1"):
        chain.call(me, "__validate__", [1, 2**251, 1, 0])
    with pytest.raises(ChipiSessionError) as info:
        chain.call(me, "get_session_data", [-1])
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert chain.call(me, "get_session_data", ["0x1"]) == [0, 0, 0, 0]


def test_entrypoint_at_has_no_bounds_check(chain: LocalChain, account: int) -> None:
    assert chain.call(account, "get_session_allowed_entrypoint_at", [1, 2**32 - 1]) == [0]


# -- owner entrypoints -------------------------------------------------------------------------


def test_set_public_key_needs_self_and_new_key_proof(chain: LocalChain, account: int) -> None:
    new = SecretKey(0xBEEF01)
    r, s = new.sign(accept_ownership_hash(account, OWNER.public_key))
    with panics("Account: unauthorized"):
        chain.call(account, "set_public_key", [new.public_key, 2, r, s], caller=BOB)
    bad = SecretKey(0x1).sign(accept_ownership_hash(account, OWNER.public_key))
    with panics("Account: invalid signature"):
        chain.call(account, "setPublicKey", [new.public_key, 2, *bad], caller=account)
    start = len(chain.events)
    chain.call(account, "setPublicKey", [new.public_key, 2, r, s], caller=account)
    assert chain.call(account, "get_public_key") == [new.public_key]
    assert chain.events[start:] == [
        ChainEvent(account, (selector("OwnerRemoved"), OWNER.public_key), ()),
        ChainEvent(account, (selector("OwnerAdded"), new.public_key), ()),
    ]
    with pytest.raises(ChipiSessionError, match="Account: invalid signature"):
        owner_invoke(chain, account, OWNER, [Call(to=account, selector="get_contract_info")])
    assert owner_invoke(chain, account, new, [Call(to=account, selector="get_contract_info")])


def test_upgrade_and_register_interfaces(chain: LocalChain, account: int) -> None:
    with panics("Class hash cannot be zero"):
        chain.call(account, "upgrade", [0], caller=account)
    with panics("Account: unauthorized"):
        chain.call(account, "register_interfaces", [], caller=BOB)
    assert chain.call(account, "register_interfaces", [], caller=account) == []


def test_validate_deploy_and_declare(chain: LocalChain, account: int) -> None:
    with panics("Account: invalid signature"):
        chain.call(account, "__validate_declare__", [0x1])
    with panics("Account: invalid signature"):
        chain.call(account, "__validate_deploy__", [0x1, 0x2, 0x3], signature=[1, 2])
    r, s = OWNER.sign(0xD5)  # the owner signs the (cheated) transaction hash
    valid = chain.call(
        account, "__validate_declare__", [0x1], signature=[r, s], transaction_hash=0xD5
    )
    assert valid == [VALID]
    assert chain.call(account, "__validate__", [0], signature=[r, s], transaction_hash=0xD5) == [
        VALID
    ]


def test_owner_is_valid_signature(chain: LocalChain, account: int) -> None:
    r, s = OWNER.sign(0x1234)
    assert chain.call(account, "is_valid_signature", [0x1234, 2, r, s]) == [VALID]
    assert chain.call(account, "is_valid_signature", [0x1235, 2, r, s]) == [0]
    assert chain.call(account, "is_valid_signature", [0x1234, 3, r, s, 0]) == [0]


# -- ERC-20 ------------------------------------------------------------------------------------


def test_erc20(chain: LocalChain) -> None:
    token = chain.deploy_token("USDC", 6)
    assert chain.call(token, "decimals") == [6]
    assert chain.call(token, "symbol") == [int.from_bytes(b"USDC", "big")]
    chain.mint(token, ALICE, 1000)
    assert chain.call(token, "total_supply") == chain.call(token, "totalSupply") == [1000, 0]
    assert chain.call(token, "transfer", [BOB, 300, 0], caller=ALICE) == [1]
    assert chain.balance_of(token, ALICE) == 700 and chain.call(token, "balanceOf", [BOB]) == [
        300,
        0,
    ]
    with panics("ERC20: insufficient balance"):
        chain.call(token, "transfer", [BOB, 701, 0], caller=ALICE)
    with panics("ERC20: transfer to 0"):
        chain.call(token, "transfer", [0, 1, 0], caller=ALICE)
    with panics("Failed to deserialize param #2"):
        chain.call(token, "transfer", [BOB, 2**128, 0], caller=ALICE)
    assert chain.call(token, "approve", [BOB, 100, 0], caller=ALICE) == [1]
    assert chain.call(token, "increase_allowance", [BOB, 50, 0], caller=ALICE) == [1]
    assert chain.call(token, "increaseAllowance", [BOB, 50, 0], caller=ALICE) == [1]
    assert chain.allowance(token, ALICE, BOB) == 200
    with panics("ERC20: insufficient allowance"):
        chain.call(token, "transfer_from", [ALICE, BOB, 201, 0], caller=BOB)
    assert chain.call(token, "transferFrom", [ALICE, 0xCAFE, 150, 0], caller=BOB) == [1]
    assert chain.allowance(token, ALICE, BOB) == 50 and chain.balance_of(token, 0xCAFE) == 150
    # OZ v3: transfer_from spends the allowance through _approve (docs/contract.md §11.2)
    assert chain.events[-2:] == [
        ChainEvent(token, (selector("Approval"), ALICE, BOB), (50, 0)),
        ChainEvent(token, (selector("Transfer"), ALICE, 0xCAFE), (150, 0)),
    ]
    with pytest.raises(ChipiSessionError):
        chain.mint(0x1234, ALICE, 1)


def test_call_is_atomic(chain: LocalChain) -> None:
    token = chain.deploy_token()
    chain.mint(token, ALICE, 10)
    chain.call(token, "approve", [BOB, 100, 0], caller=ALICE)
    events = len(chain.events)
    with panics("ERC20: insufficient balance"):
        chain.call(token, "transfer_from", [ALICE, BOB, 50, 0], caller=BOB)
    assert chain.allowance(token, ALICE, BOB) == 100  # the allowance write was undone
    assert len(chain.events) == events


# -- receipts, hashes, determinism, snapshots ----------------------------------------------------


def _history(chain: LocalChain) -> list[str]:
    account = chain.deploy_account(OWNER.public_key)
    token = chain.deploy_token()
    chain.mint(token, account, 100)
    vu = START + 100
    hashes = [
        owner_invoke(
            chain,
            account,
            OWNER,
            [add_or_update_session_key_call(account, SESSION.public_key, vu, 5)],
        ).tx_hash
    ]
    for amount in (1, 2, 2):
        call = Call(to=token, selector="transfer", calldata=[ALICE, amount, 0])
        hashes.append(session_invoke(chain, account, SESSION, [call], valid_until=vu).tx_hash)
    return hashes


def test_tx_hashes_deterministic_and_unique() -> None:
    a = _history(LocalChain(clock=ManualClock(START)))
    b = _history(LocalChain(clock=ManualClock(START)))
    assert a == b and len(set(a)) == len(a)
    assert all(h.startswith("0x") for h in a)


def test_receipts_and_blocks(chain: LocalChain, account: int) -> None:
    receipt = owner_invoke(chain, account, OWNER, [Call(to=account, selector="get_snip9_version")])
    assert receipt.block_number == chain.block_number == 1
    assert receipt.block_timestamp == START and receipt.results == ((2,),)
    assert chain.get_receipt(receipt.tx_hash) == receipt
    assert chain.get_receipt(receipt.tx_hash.upper().replace("0X", "0x")) == receipt
    assert chain.get_receipt("0xdead") is None


def test_snapshot_restore(chain: LocalChain, account: int) -> None:
    snap = chain.snapshot()
    call = add_or_update_session_key_call(account, SESSION.public_key, START + 10, 1)
    receipt = owner_invoke(chain, account, OWNER, [call])
    assert chain.session_status(account, SESSION.public_key).exists
    chain.restore(snap)
    assert not chain.session_status(account, SESSION.public_key).exists
    assert chain.get_nonce(account) == 0 and chain.block_number == 0
    assert chain.get_receipt(receipt.tx_hash) is None
    assert owner_invoke(chain, account, OWNER, [call]).tx_hash == receipt.tx_hash


def test_view_discards_writes(chain: LocalChain, account: int) -> None:
    calldata = [SESSION.public_key, START + 10, 1, 0]
    assert chain.view(account, "add_or_update_session_key", calldata, caller=account) == []
    assert not chain.session_status(account, SESSION.public_key).exists
    events = len(chain.events)
    chain.call(account, "add_or_update_session_key", calldata, caller=account)
    assert chain.session_status(account, SESSION.public_key).exists
    assert len(chain.events) == events + 1
    with panics("Account: unauthorized"):
        chain.view(account, "revoke_session_key", [SESSION.public_key])
    assert chain.class_hash_at(account) == (
        0x0484BBD2404B3C7264BEA271F7267D6D4004821AC7787A9EED7F472E79EF40D1
    )
    assert chain.class_hash_at(0x1234) is None
    chain.call(account, "upgrade", [0xABC], caller=account)
    assert chain.class_hash_at(account) == 0xABC


def test_default_chain_is_shared() -> None:
    assert default_chain() is default_chain()


def test_deploy_validation(chain: LocalChain, account: int) -> None:
    with pytest.raises(ChipiSessionError, match="already deployed"):
        chain.deploy_account(OWNER.public_key, address=account)
    with pytest.raises(ChipiSessionError):
        chain.deploy_account(OWNER.public_key, address=2**251)
    again = chain.deploy_account(OWNER.public_key)
    assert again != account and chain.is_account(again)


def test_thousand_sessions_stay_independent(chain: LocalChain, account: int) -> None:
    """A thousand registered sessions keep their own data; executes and snapshots still work.
    (Their cost is measured in benchmarks/, not asserted here: these machines are noisy.)"""
    for pk in range(1, 1001):
        chain.call(
            account, "add_or_update_session_key", [pk, START + 100, 5, 1, pk], caller=account
        )
    assert chain.session_status(account, 500).allowed_entrypoints == (500,)
    assert chain.session_status(account, 1000).allowed_entrypoints == (1000,)
    token = chain.deploy_token()
    chain.mint(token, account, 100)
    call = add_or_update_session_key_call(account, SESSION.public_key, START + 100, 5)
    owner_invoke(chain, account, OWNER, [call])
    snap = chain.snapshot()
    for _ in range(5):
        transfer = Call(to=token, selector="transfer", calldata=[ALICE, 1, 0])
        assert session_invoke(chain, account, SESSION, [transfer], valid_until=START + 100)
    assert chain.session_status(account, SESSION.public_key).calls_used == 5
    chain.restore(snap)
    assert chain.session_status(account, SESSION.public_key).calls_used == 0
    assert chain.session_status(account, 500).allowed_entrypoints == (500,)


def test_outside_execution_checks_felts_of_calls_that_are_not_call_objects(
    chain: LocalChain, account: int
) -> None:
    """Call objects carry felts already; anything else call-shaped is checked felt by felt."""

    class LooseCall:
        def __init__(self, to: int, selector: int, calldata: tuple[int, ...]) -> None:
            self.to, self.selector, self.calldata = to, selector, calldata

    kw: dict[str, Any] = dict(
        caller=ANY_CALLER, nonce=1, execute_after=0, execute_before=2**63, signature=[]
    )
    assert chain.block_number == 0
    with pytest.raises(ChipiSessionError, match="outside execution calls") as info:
        chain.execute_from_outside(account, calls=[LooseCall(0x123, 0, (FIELD_PRIME,))], **kw)
    assert info.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError, match=r"outside execution\[1\]"):
        chain.execute_from_outside(account, **{**kw, "nonce": FIELD_PRIME}, calls=[])
    assert chain.block_number == 0  # nothing was included (deploying adds no block)
