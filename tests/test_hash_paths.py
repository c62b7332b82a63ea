"""The fast (contract-side Poseidon) and the general (starknet-py TypedData) SNIP-12 hashes agree
on every typed data the LocalChain paymaster issues, so signing with the fast one is safe."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipi_session import Call, ManualClock
from chipi_session.felts import FIELD_PRIME
from chipi_session.hashing import typed_data_message_hash
from chipi_session.localchain import LocalChain

felts = st.integers(0, FIELD_PRIME - 1)
calls = st.lists(
    st.builds(
        Call,
        to=st.integers(1, 2**251 - 1),
        selector=st.sampled_from(["transfer", "approve", "balance_of"]) | felts,
        calldata=st.lists(felts, max_size=5),
    ),
    min_size=1,
    max_size=3,
)


CHAIN = LocalChain(clock=ManualClock(1_700_000_000))
ACCOUNT = CHAIN.deploy_account(0x1234)


@settings(max_examples=30, deadline=None)
@given(calls=calls)
def test_fast_and_typed_data_hashes_agree(calls: list[Call]) -> None:
    account = ACCOUNT
    typed_data = CHAIN.prepare_typed_data(account, calls)
    chain = CHAIN
    assert chain._message_hash(account, typed_data) == typed_data_message_hash(typed_data, account)


@settings(max_examples=20, deadline=None)
@given(calls=calls)
def test_an_issued_requests_hash_is_its_typed_datas(calls: list[Call]) -> None:
    """The in-process backend signs the issued request's hash, computed from its fields: the
    same hash as TypedData's over the typed data the paymaster handed out for it."""
    request = CHAIN.issue_request(ACCOUNT, calls)
    typed_data = request.typed_data(CHAIN.chain_id)
    assert CHAIN._request_hash(request) == typed_data_message_hash(typed_data, ACCOUNT)
    assert CHAIN._message_hash(ACCOUNT, typed_data) == CHAIN._request_hash(request)


def test_the_nonce_read_equals_the_contract_view() -> None:
    """``is_outside_nonce_used`` reads the storage the view reads (a used nonce:
    tests/test_localchain_fidelity.py), and fails like it for a contract that is not an
    account."""
    chain = LocalChain(clock=ManualClock(1_700_000_000))
    account = chain.deploy_account(0x1234)
    token = chain.deploy_token("USDC", 6)
    for nonce in (0, 5, 2**128):
        view = chain.view(account, "is_valid_outside_execution_nonce", [nonce]) == [0]
        assert chain.is_outside_nonce_used(account, nonce) is view is False
    from chipi_session.localchain.model import ContractPanic

    with pytest.raises(ContractPanic) as direct:
        chain.is_outside_nonce_used(token, 5)
    with pytest.raises(ContractPanic) as via_view:
        chain.view(token, "is_valid_outside_execution_nonce", [5])
    assert direct.value.message == via_view.value.message
