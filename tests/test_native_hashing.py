"""The fast hashing paths (pycryptodome Keccak selectors, native or fallback Poseidon, constant
type hashes) give exactly starknet-py's results, and the working path imports neither
starknet-py nor sympy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipi_session import Call, hashing, poseidon
from chipi_session.errors import ChipiSessionError
from chipi_session.felts import _KNOWN_SELECTORS, FIELD_PRIME, keccak250, selector

felts = st.integers(0, FIELD_PRIME - 1)
felt_lists = st.lists(felts, max_size=24)
names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)


def _reference_poseidon(values: list[int]) -> int:
    from starknet_py.hash.hash_method import HashMethod

    return int(HashMethod.POSEIDON.hash_many(values))


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# -- light import ------------------------------------------------------------------------------


def test_working_path_imports_neither_starknet_py_nor_sympy() -> None:
    code = (
        "import sys\n"
        "from chipi_session import ChipiSession, Call, WalletData\n"
        "from chipi_session.backends.chipi_api import ChipiApiBackend\n"
        "c = Call(to=1, selector='transfer', calldata=[1, 2, 0])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starknet_py', 'sympy', 'crypto_cpp_py'}))\n"
    )
    assert _run(code) == "[]"


def test_the_heavy_modules_do_load_when_asked() -> None:
    """The check above can fail: the same probe sees starknet-py once something imports it."""
    code = (
        "import sys\n"
        "from chipi_session.hashing import typed_data_message_hash\n"
        "from chipi_session.localchain.paymaster import Paymaster\n"
        "import starknet_py.utils.typed_data\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'starknet_py', 'sympy'}))\n"
    )
    assert _run(code) == "['starknet_py', 'sympy']"


# -- selectors ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(name=names)
def test_selector_equals_starknet_py(name: str) -> None:
    from starknet_py.hash.selector import get_selector_from_name

    assert selector(name) == get_selector_from_name(name)


@pytest.mark.parametrize("name", sorted(_KNOWN_SELECTORS))
def test_every_precomputed_selector_is_right(name: str) -> None:
    from starknet_py.hash.selector import get_selector_from_name

    assert _KNOWN_SELECTORS[name] == get_selector_from_name(name)
    if name not in ("__default__", "__l1_default__"):
        assert keccak250(name.encode()) == _KNOWN_SELECTORS[name]


def test_keccak250_is_keccak_not_sha3() -> None:
    # sn_keccak("transfer"), as printed by every Starknet explorer
    assert (
        keccak250(b"transfer") == 0x83AFD3F4CAEDC6EEBF44246FE54E38C95E3179A5EC9EA81740ECA5B482D12E
    )


def test_type_hash_constants_equal_starknet_py_typed_data() -> None:
    from starknet_py.utils.typed_data import TypedData

    for time_type, expected in (
        ("u128", hashing.OUTSIDE_EXECUTION_TYPE_HASH_U128),
        ("felt", hashing.OUTSIDE_EXECUTION_TYPE_HASH_FELT),
    ):
        td = TypedData.from_dict(
            hashing.outside_execution_typed_data(  # type: ignore[arg-type]
                caller=1,
                nonce=2,
                execute_after=3,
                execute_before=4,
                calls=[],
                chain_id=5,
                time_type=time_type,
            )
        )
        assert td.type_hash("OutsideExecution") == expected
        assert td.type_hash("Call") == hashing.CALL_TYPE_HASH
        assert td.type_hash("StarknetDomain") == hashing.DOMAIN_TYPE_HASH


# -- Poseidon ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(values=felt_lists)
def test_poseidon_many_equals_starknet_py(values: list[int]) -> None:
    assert poseidon.poseidon_many(values) == _reference_poseidon(values)


@settings(max_examples=100, deadline=None)
@given(values=felt_lists)
def test_native_poseidon_equals_starknet_py(values: list[int]) -> None:
    native = pytest.importorskip("starknet_pathfinder_crypto")
    assert int(native.poseidon_hash_many(values)) == _reference_poseidon(values)


def test_the_native_backend_is_selected_where_installed() -> None:
    try:
        import starknet_pathfinder_crypto  # noqa: F401
    except ImportError:
        assert poseidon.POSEIDON_BACKEND == "poseidon-py"
    else:
        assert poseidon.POSEIDON_BACKEND == "starknet-pathfinder-crypto"


@pytest.mark.parametrize(
    "values",
    [
        [FIELD_PRIME],
        [FIELD_PRIME + 5, 1],
        [2**256 - 1],
        [0, FIELD_PRIME - 1, FIELD_PRIME],
    ],
)
def test_out_of_field_inputs_behave_like_starknet_py(values: list[int]) -> None:
    assert poseidon.poseidon_many(values) == _reference_poseidon(values)


@pytest.mark.parametrize("values", [[-1], [2**256]])
def test_inputs_starknet_py_refuses_are_refused(values: list[int]) -> None:
    with pytest.raises(ValueError):
        _reference_poseidon(values)
    with pytest.raises(ValueError):
        poseidon.poseidon_many(values)


def test_fallback_is_chosen_when_the_native_module_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "starknet_pathfinder_crypto", None)  # import -> ImportError
    backend, impl = poseidon._load()
    assert backend == "poseidon-py"
    for values in ([], [1], [1, 2, 3], list(range(1, 20)), [FIELD_PRIME - 1] * 7):
        assert impl(values) == _reference_poseidon(values)


def test_whole_hash_path_without_the_native_module() -> None:
    """A process where the native wheel is missing hashes OutsideExecutions like TypedData."""
    code = (
        "import sys\n"
        "sys.modules['starknet_pathfinder_crypto'] = None\n"
        "from chipi_session import Call, hashing, poseidon\n"
        "calls = [Call(to=0x123, selector='transfer', calldata=[7, 5, 0])]\n"
        "kw = dict(caller=hashing.ANY_CALLER, nonce=9, execute_after=10, execute_before=20,\n"
        "          calls=calls, chain_id=hashing.SN_SEPOLIA)\n"
        "ours = hashing.outside_execution_hash(account=0xABC, **kw)\n"
        "ref = hashing.typed_data_message_hash(hashing.outside_execution_typed_data(**kw), 0xABC)\n"
        "print(poseidon.POSEIDON_BACKEND, ours == ref)\n"
    )
    assert _run(code) == "poseidon-py True"


calls_strategy = st.lists(
    st.builds(
        Call,
        to=st.integers(1, 2**251 - 1),
        selector=st.sampled_from(["transfer", "approve", "mint"]) | felts,
        calldata=st.lists(felts, max_size=6),
    ),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    calls=calls_strategy,
    account=st.integers(1, 2**251 - 1),
    caller=st.integers(0, 2**251 - 1),
    nonce=felts,
    after=st.integers(0, 2**64 - 1),
    before=st.integers(0, 2**64 - 1),
    chain_id=st.sampled_from([hashing.SN_MAIN, hashing.SN_SEPOLIA, 0x4B4154414E41]),
    felt_times=st.booleans(),
)
def test_outside_execution_hash_equals_typed_data(
    calls: list[Call],
    account: int,
    caller: int,
    nonce: int,
    after: int,
    before: int,
    chain_id: int,
    felt_times: bool,
) -> None:
    kw = dict(
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        chain_id=chain_id,
    )
    typed = hashing.outside_execution_typed_data(
        **kw,
        time_type="felt" if felt_times else "u128",  # type: ignore[arg-type]
    )
    assert hashing.outside_execution_hash(
        account=account,
        felt_times=felt_times,
        **kw,  # type: ignore[arg-type]
    ) == hashing.typed_data_message_hash(typed, account)


@settings(max_examples=60, deadline=None)
@given(
    calls=calls_strategy,
    account=st.integers(1, 2**251 - 1),
    nonce=felts,
    valid_until=st.integers(0, 2**64 - 1),
)
def test_session_validate_hash_equals_starknet_py_poseidon(
    calls: list[Call], account: int, nonce: int, valid_until: int
) -> None:
    data = [account, hashing.SN_SEPOLIA, nonce, valid_until]
    for c in calls:
        data.extend((c.to, c.selector, len(c.calldata), *c.calldata))
    assert hashing.session_validate_hash(
        account=account,
        chain_id=hashing.SN_SEPOLIA,
        nonce=nonce,
        valid_until=valid_until,
        calls=calls,
    ) == _reference_poseidon(data)


# -- the localnet paymaster's hot path -----------------------------------------------------------


def test_prepared_typed_data_is_the_callers_own_copy() -> None:
    """The paymaster hands out a fresh copy (not a deepcopy any more): mutating it in place
    must not change what the paymaster expects back."""
    from chipi_session.clock import ManualClock
    from chipi_session.keys import SecretKey, session_signature
    from chipi_session.localchain import LocalChain
    from chipi_session.localchain.testing import owner_invoke
    from chipi_session.selfcalls import add_or_update_session_key_call
    from chipi_session.vault import KdfCost, Vault

    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(clock=ManualClock(1_000_000), vault=vault)
    wallet = chain.create_wallet("1234")
    owner = vault.decrypt(wallet.encrypted_private_key, "1234")
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 1_000)
    session = SecretKey(0x5E55)
    valid_until = chain.now() + 3600
    owner_invoke(
        chain,
        wallet.address,
        owner,
        [add_or_update_session_key_call(wallet.address, session.public_key, valid_until, 5, ())],
    )
    calls = [Call(to=token, selector="transfer", calldata=[0xA11CE, 7, 0])]
    handed_out = chain.prepare_typed_data(wallet.address, calls)
    pristine = json.loads(json.dumps(handed_out))
    msg_hash = hashing.typed_data_message_hash(handed_out, wallet.address)
    handed_out["message"]["Calls"][0]["Calldata"][1] = "0x3e8"  # the caller scribbles on it
    with pytest.raises(ChipiSessionError, match="altered"):
        chain.execute_sponsored(
            wallet.address, handed_out, session_signature(session, msg_hash, valid_until)
        )
    tx = chain.execute_sponsored(
        wallet.address, pristine, session_signature(session, msg_hash, valid_until)
    )
    assert chain.get_transaction_status(tx) == "ACCEPTED_ON_L2"
    assert chain.call(token, "balance_of", [0xA11CE]) == [7, 0]


# -- the memoized OutsideExecution hash ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    calls=calls_strategy,
    account=st.integers(1, 2**251 - 1),
    nonce=felts,
    after=st.integers(0, 2**64 - 1),
    before=st.integers(0, 2**64 - 1),
)
def test_memoized_hash_is_keyed_on_every_input(
    calls: list[Call], account: int, nonce: int, after: int, before: int
) -> None:
    """Warm (memoized) and cold results are the reference's, for both time encodings hashed
    one after the other and for a neighbour differing in one field only: a key that forgot an
    input would hand back the wrong cached hash here."""
    base = dict(
        account=account,
        chain_id=hashing.SN_MAIN,
        caller=hashing.ANY_CALLER,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
    )
    variants = [
        base,
        {**base, "felt_times": True},
        {**base, "nonce": (nonce + 1) % FIELD_PRIME},
        {**base, "account": account ^ 1},
        {**base, "chain_id": hashing.SN_SEPOLIA},
        {**base, "calls": [*calls, Call(to=1, selector=0, calldata=[nonce])]},
    ]
    warm = [hashing.outside_execution_hash(**v) for v in variants]  # type: ignore[arg-type]
    again = [hashing.outside_execution_hash(**v) for v in variants]  # type: ignore[arg-type]
    hashing.clear_hash_caches()
    cold = [hashing.outside_execution_hash(**v) for v in variants]  # type: ignore[arg-type]
    assert warm == again == cold
    assert len(set(warm)) == len(warm)
    for v, h in zip(variants[:2], warm[:2], strict=True):
        typed = hashing.outside_execution_typed_data(
            caller=hashing.ANY_CALLER,
            nonce=nonce,
            execute_after=after,
            execute_before=before,
            calls=calls,
            chain_id=hashing.SN_MAIN,
            time_type="felt" if v.get("felt_times") else "u128",
        )
        assert h == hashing.typed_data_message_hash(typed, account)


def test_memo_accepts_call_like_objects_it_cannot_key() -> None:
    """A call object that is not hashable is hashed without the cache, to the same result."""

    class LooseCall:
        __hash__ = None  # type: ignore[assignment]

        def __init__(self, call: Call) -> None:
            self.to, self.selector, self.calldata = call.to, call.selector, call.calldata

    call = Call(to=0x123, selector="transfer", calldata=[7, 5, 0])
    kw = dict(
        account=0xABC,
        chain_id=hashing.SN_MAIN,
        caller=hashing.ANY_CALLER,
        nonce=3,
        execute_after=1,
        execute_before=2,
    )
    assert hashing.outside_execution_hash(
        calls=[LooseCall(call)],
        **kw,  # type: ignore[arg-type, list-item]
    ) == hashing.outside_execution_hash(calls=[call], **kw)  # type: ignore[arg-type]


def test_a_float_never_gets_an_ints_cached_hash() -> None:
    """The memo is typed: 3.0 == 3 but is not a felt, so it must not hit 3's entry."""
    kw = dict(
        account=0xABC,
        chain_id=hashing.SN_MAIN,
        caller=hashing.ANY_CALLER,
        execute_after=1,
        execute_before=2,
        calls=[Call(to=0x123, selector=0)],
    )
    hashing.outside_execution_hash(nonce=3, **kw)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError, AttributeError)):  # the hash refuses a float
        hashing.outside_execution_hash(nonce=3.0, **kw)  # type: ignore[arg-type]
