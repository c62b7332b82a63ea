"""The fast (contract-side Poseidon) and the general (starknet-py TypedData) SNIP-12 hashes agree
on every typed data the LocalChain paymaster issues, so signing with the fast one is safe."""

from __future__ import annotations

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
    assert chain._message_hash(account, typed_data) == typed_data_message_hash(
        typed_data, account
    )
