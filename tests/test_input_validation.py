"""Bad input, everywhere (issue 9 §5): every public constructor, function, action and CLI option
answers it with ``ChipiSessionError(INVALID_INPUT)``, a clear message and no state change — never
a raw exception, never ``BACKEND_UNAVAILABLE`` with an ERROR traceback in the log."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipi_session import (
    BlockingChipiSession,
    Call,
    ChipiSessionError,
    ErrorCode,
    SessionHub,
    SessionKeyData,
    SessionState,
    WalletData,
)
from chipi_session.cli import main as cli_main
from chipi_session.felts import encode_short_string, parse_felt, parse_felts, split_u256
from chipi_session.pubsub import Broadcaster
from chipi_session.stores import JsonFileStore, MemoryStore, SqliteStore
from chipi_session.validate import describe
from chipi_session.vault import HighEntropyKey, KdfCost, Vault

from .helpers import PIN, RECIPIENT, World, make_world

HUGE = 10**5000  # str(HUGE) raises ValueError (more than 4,300 digits)
NEG_HUGE = -(10**5000)


def invalid_input(fn: Callable[[], object]) -> ChipiSessionError:
    """``fn()`` raises INVALID_INPUT whose message and repr can be built and are short."""
    with pytest.raises(ChipiSessionError) as info:
        fn()
    error = info.value
    assert error.code is ErrorCode.INVALID_INPUT, error
    text = str(error) + repr(error)
    assert len(error.message) < 400 and "Traceback" not in text
    return error


# -- values too large to print ---------------------------------------------------------------------


def test_describe_never_prints_a_huge_int() -> None:
    assert describe(HUGE) == f"an int of {HUGE.bit_length()} bits"
    assert describe(NEG_HUGE).startswith("a negative int of")
    assert describe(12) == "12" and describe("x" * 100).endswith("(100 long)")
    assert describe(object()) == "a object"  # never the caller's __repr__


@pytest.mark.parametrize("huge", [HUGE, NEG_HUGE], ids=["huge", "negative-huge"])
@pytest.mark.parametrize(
    "build",
    [
        lambda h: WalletData(address=h, encrypted_private_key="blob"),
        lambda h: WalletData(address=1, encrypted_private_key="blob", owner_public_key=h),
        lambda h: Call(to=h, selector="transfer"),
        lambda h: Call(to=1, selector=h),
        lambda h: Call(to=1, selector="transfer", calldata=[1, h]),
        lambda h: Call.from_dict({"contractAddress": "0x1", "entrypoint": "t", "calldata": [h]}),
        lambda h: SessionKeyData(public_key=h, encrypted_private_key="blob", valid_until=1),
        lambda h: SessionKeyData(public_key=1, encrypted_private_key="blob", valid_until=h),
        lambda h: parse_felt(h),
        lambda h: parse_felts([0, h]),
        lambda h: split_u256(h),
        lambda h: HighEntropyKey.generate(h),
        lambda h: KdfCost(ops=h, mem=8192),
    ],
    ids=lambda _: "",
)
def test_huge_ints_are_invalid_input_with_their_size(
    build: Callable[[int], object], huge: int
) -> None:
    error = invalid_input(lambda: build(huge))
    assert re.search(r"\d{80}", error.message) is None and "bits" in error.message


def test_huge_ints_in_clocks_stores_and_transports(world: World) -> None:
    from chipi_session.backends.chipi_api import ChipiApiBackend
    from chipi_session.backends.starknet_rpc import StarknetRpcBackend
    from chipi_session.clock import ManualClock
    from chipi_session.http import Timeouts
    from chipi_session.stores import SessionRecord

    clock = ManualClock(5.0)
    for fn in (
        lambda: ManualClock(HUGE),
        lambda: clock.advance(HUGE),
        lambda: clock.set(HUGE),
        lambda: SessionRecord(key="k", wallet=world.wallet, session=None, updated_at=HUGE),
        lambda: Timeouts.of(HUGE),
        lambda: StarknetRpcBackend(HUGE),  # type: ignore[arg-type]
        lambda: StarknetRpcBackend("http://127.0.0.1:1", timeout=HUGE),
        lambda: ChipiApiBackend("pk_dev_" + "a" * 32, rpc_url=HUGE),  # type: ignore[arg-type]
    ):
        invalid_input(fn)
    assert clock.now() == 5.0


def test_localchain_collaborators_are_validated() -> None:
    from chipi_session.localchain import LocalChain

    invalid_input(lambda: LocalChain(clock=5))  # type: ignore[arg-type]
    invalid_input(lambda: LocalChain(vault="vault"))  # type: ignore[arg-type]


def test_huge_ints_in_localchain_and_session_options(world: World) -> None:
    blocks = world.chain.block_number
    for fn in (
        lambda: world.chain.mint(world.token, world.wallet.address, HUGE),
        lambda: world.chain.mint(HUGE, world.wallet.address, 1),
        lambda: world.chain.deploy_token("X", HUGE),
        lambda: world.session(default_max_calls=HUGE),
        lambda: world.session(default_duration_seconds=HUGE),
        lambda: world.session(event_buffer_size=HUGE * 0 + NEG_HUGE),
    ):
        invalid_input(fn)
    assert world.chain.block_number == blocks  # nothing was applied


# -- constructors and functions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "mentions"),
    [
        (lambda: WalletData(address=1, encrypted_private_key="b", wallet_type="X"), "wallet_type"),
        (lambda: WalletData(address=1, encrypted_private_key="b", wallet_type=None), "wallet_type"),
        (lambda: WalletData.from_json(None), "wallet data"),  # type: ignore[arg-type]
        (lambda: WalletData.from_json([1]), "wallet data"),  # type: ignore[arg-type]
        (lambda: WalletData(address=1, encrypted_private_key=None), "encryptedPrivateKey"),  # type: ignore[arg-type]
        (lambda: WalletData(address=1, encrypted_private_key=""), "encryptedPrivateKey"),
        (lambda: WalletData(address=1, encrypted_private_key=7), "encryptedPrivateKey"),  # type: ignore[arg-type]
        (
            lambda: WalletData(address=1, encrypted_private_key="b", owner_public_key="zz"),  # type: ignore[arg-type]
            "ownerPublicKey",
        ),
        (lambda: Broadcaster().subscribe(-1), "buffer_size"),
        (lambda: Broadcaster().subscribe("8"), "buffer_size"),  # type: ignore[arg-type]
        (lambda: Broadcaster().subscribe(0), "buffer_size"),
        (lambda: SqliteStore(None), "path"),  # type: ignore[arg-type]
        (lambda: SqliteStore(""), "path"),
        (lambda: SqliteStore("bot\x00.db"), "NUL"),
        (lambda: JsonFileStore(None), "path"),  # type: ignore[arg-type]
        (lambda: JsonFileStore("bot\x00.json"), "NUL"),
        (lambda: SqliteStore(Path(__file__).parent), "directory"),
        (lambda: JsonFileStore(Path(__file__).parent), "directory"),
        (lambda: HighEntropyKey.generate(-1), "size"),
        (lambda: HighEntropyKey.generate(8), "size"),
        (lambda: HighEntropyKey.generate("32"), "size"),  # type: ignore[arg-type]
        (lambda: Vault(cost=None), "cost"),  # type: ignore[arg-type]
        (lambda: Vault(cost="DEFAULT"), "cost"),  # type: ignore[arg-type]
        (lambda: encode_short_string(None), "short string"),  # type: ignore[arg-type]
        (lambda: encode_short_string("é"), "ASCII"),
        (lambda: BlockingChipiSession(async_backend="curio"), "async_backend"),
    ],
    ids=lambda v: "" if callable(v) else str(v),
)
def test_constructors_refuse_bad_input(call: Callable[[], object], mentions: str) -> None:
    error = invalid_input(call)
    assert mentions in error.message


def test_localchain_deploy_token_refuses_bad_input(world: World) -> None:
    blocks = world.chain.block_number
    for bad in (
        lambda: world.chain.deploy_token(None),  # type: ignore[arg-type]
        lambda: world.chain.deploy_token("x" * 32),
        lambda: world.chain.deploy_token("TKN", "6"),  # type: ignore[arg-type]
        lambda: world.chain.deploy_token("TKN", 256),
        lambda: world.chain.deploy_token("TKN", 6, address="nowhere"),  # type: ignore[arg-type]
    ):
        invalid_input(bad)
    assert world.chain.block_number == blocks


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("encrypt_key", None),
        ("encrypt_key", ""),
        ("encrypt_key", 1234),
        ("encrypt_key", b"1234"),
        ("clock", 5),
        ("clock", "system"),
        ("vault", 5),
        ("vault", KdfCost.FAST_FOR_TESTS),
        ("backend", 5),
        ("backend", "localchain"),
        ("key_source", 5),
        ("get_bearer_token", "jwt"),
        ("on_session_created", "save"),
        ("event_buffer_size", 0),
        ("event_buffer_size", "8"),
        ("status_interval", math.nan),
        ("status_interval", -1),
        ("auto_check_status", "yes"),
        ("default_max_calls", -1),
        ("default_duration_seconds", 0),
        ("wallet", {"publicKey": "0x1"}),
        ("stored_session", "0x1"),
    ],
)
def test_session_options_are_validated(world: World, option: str, value: object) -> None:
    error = invalid_input(lambda: world.session(**{option: value}))
    assert option.split("_")[0] in error.message
    if option == "encrypt_key" and isinstance(value, str | bytes):
        assert repr(value) not in error.message  # a PIN is never echoed


def test_blocking_session_validates_on_construction(world: World) -> None:
    kwargs: dict[str, Any] = {"wallet": world.wallet, "encrypt_key": PIN, "backend": world.chain}
    invalid_input(lambda: BlockingChipiSession(**kwargs, clock=5))
    invalid_input(lambda: BlockingChipiSession(**kwargs, not_an_option=1))
    invalid_input(lambda: BlockingChipiSession(async_backend=None, **kwargs))  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning):  # the old spelling is still checked
        error = invalid_input(lambda: BlockingChipiSession(backend_name="curio", **kwargs))
    assert "backend_name" in error.message


def test_a_bad_stored_wallet_is_invalid_stored_data() -> None:
    with pytest.raises(ChipiSessionError) as info:
        WalletData.from_json({"publicKey": "0x1", "encryptedPrivateKey": "b", "walletType": "X"})
    assert info.value.code is ErrorCode.INVALID_STORED_DATA
    with pytest.raises(ChipiSessionError) as info:
        WalletData.from_json({"publicKey": "0x1"})
    assert info.value.code is ErrorCode.INVALID_STORED_DATA


# -- inside actions ------------------------------------------------------------------------------


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.anyio
async def test_bad_input_inside_actions_is_invalid_input(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chipi_session")
    huge_call = {"contractAddress": hex(world.token), "entrypoint": "transfer", "calldata": [HUGE]}
    async with world.session() as s:
        for action in (
            lambda: s.create_session(HUGE),
            lambda: s.create_session("3600"),  # type: ignore[arg-type]
        ):
            with pytest.raises(ChipiSessionError) as info:
                await action()
            assert info.value.code is ErrorCode.INVALID_INPUT
        assert s.session_state is SessionState.NONE
        await s.create_session(3600)
        created = s.session
        for action in (
            lambda: s.register_session(max_calls=HUGE),
            lambda: s.register_session(max_calls=5, allowed_entrypoints=7),  # type: ignore[arg-type]
            lambda: s.register_session(max_calls=5, allowed_entrypoints={"a": 1}),  # type: ignore[arg-type]
            lambda: s.register_session(max_calls=5, valid_until=HUGE),
        ):
            with pytest.raises(ChipiSessionError) as info:
                await action()
            assert info.value.code is ErrorCode.INVALID_INPUT, info.value
            assert s.error is info.value
        assert s.session_state is SessionState.CREATED and s.session == created
        await s.register_session(max_calls=5)
        before = (world.balance(world.wallet.address), s.remaining_calls)
        for action in (
            lambda: s.execute_with_session([huge_call]),
            lambda: s.execute_with_session(7),  # type: ignore[arg-type]
            lambda: s.execute_with_session([7]),  # type: ignore[list-item]
            lambda: s.set_spending_policy(HUGE, 1, 2, 3),
            lambda: s.get_spending_policy(HUGE),
            lambda: s.remove_spending_policy([1]),  # type: ignore[arg-type]
        ):
            with pytest.raises(ChipiSessionError) as info:
                await action()
            assert info.value.code is ErrorCode.INVALID_INPUT, info.value
        assert (world.balance(world.wallet.address), s.remaining_calls) == before
        status = await s.refetch_status()
        assert status is not None and status.calls_used == 0
    assert _errors(caplog) == []  # no "X failed unexpectedly" traceback


@pytest.mark.anyio
async def test_a_single_mapping_is_one_call(world: World) -> None:
    async with world.session() as s:
        await s.create_session(3600)
        await s.register_session(max_calls=5)
        call = {
            "contractAddress": hex(world.token),
            "entrypoint": "transfer",
            "calldata": [hex(RECIPIENT), "25", "0"],
        }
        await s.execute_with_session(call)
        assert world.balance(RECIPIENT) == 25 and s.remaining_calls == 4


@pytest.mark.anyio
@pytest.mark.parametrize("size", [-1, "8", 0, 1.5])
async def test_session_subscribe_refuses_bad_buffer_sizes(world: World, size: object) -> None:
    async with world.session() as s:
        invalid_input(lambda: s.subscribe(size))  # type: ignore[arg-type]
        async with s.subscribe(1) as events:  # the smallest buffer works
            s.clear_session()
            assert events.drain() == []


# -- the CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["diagram", "--output", ""], ["demo", "--backend", "curio"], ["nope"]]
)
def test_cli_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_cli_diagram_unwritable_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli_main(["diagram", "--output", str(blocker / "x.mmd")]) == 2
    assert "cannot write" in capsys.readouterr().err


# -- junk fed to every public constructor ---------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([HUGE, NEG_HUGE, 2**251, 2**256, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(object()),
)


def _only_typed_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except ChipiSessionError as exc:
        str(exc), repr(exc)  # noqa: B018 - building them must not fail either


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=JUNK,
    target=st.sampled_from(
        [
            lambda j: Call(to=j, selector="transfer"),
            lambda j: Call(to=1, selector=j),
            lambda j: Call(to=1, selector="transfer", calldata=j),
            lambda j: Call.from_dict(j),
            lambda j: WalletData(address=j, encrypted_private_key="blob"),
            lambda j: WalletData(address=1, encrypted_private_key=j),
            lambda j: WalletData(address=1, encrypted_private_key="b", wallet_type=j),
            lambda j: WalletData(address=1, encrypted_private_key="b", owner_public_key=j),
            lambda j: WalletData.from_json(j),
            lambda j: SessionKeyData(public_key=j, encrypted_private_key="b", valid_until=1),
            lambda j: SessionKeyData(public_key=1, encrypted_private_key=j, valid_until=1),
            lambda j: SessionKeyData(public_key=1, encrypted_private_key="b", valid_until=j),
            lambda j: SessionKeyData.from_json(j),
            lambda j: HighEntropyKey(j),
            lambda j: HighEntropyKey.from_hex(j),
            lambda j: HighEntropyKey.generate(j),
            lambda j: Vault(cost=j),
            lambda j: KdfCost(ops=j, mem=8192),
            lambda j: parse_felt(j),
            lambda j: parse_felts(j),
            lambda j: split_u256(j),
            lambda j: encode_short_string(j),
            lambda j: Broadcaster().subscribe(j),
            lambda j: BlockingChipiSession(async_backend=j),
        ]
    ),
)
def test_junk_into_value_constructors_raises_only_typed_errors(
    junk: object, target: Callable[[object], object]
) -> None:
    _only_typed_errors(lambda: target(junk))


_SESSION_OPTIONS = [
    "wallet",
    "encrypt_key",
    "backend",
    "get_bearer_token",
    "stored_session",
    "on_session_created",
    "default_duration_seconds",
    "default_max_calls",
    "auto_check_status",
    "status_interval",
    "clock",
    "vault",
    "key_source",
    "event_buffer_size",
    "renewal",
]
_HUB_OPTIONS = [
    "backend",
    "clock",
    "vault",
    "store",
    "get_bearer_token",
    "status_interval",
    "poll_batch_size",
    "max_polls_per_second",
    "renewal",
    "event_buffer_size",
    "lease_owner",
    "lease_ttl",
]
_WORLD = make_world()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK, option=st.sampled_from(_SESSION_OPTIONS))
def test_junk_into_chipi_session_raises_only_typed_errors(junk: object, option: str) -> None:
    _only_typed_errors(lambda: _WORLD.session(**{option: junk}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK, option=st.sampled_from(_HUB_OPTIONS))
def test_junk_into_session_hub_raises_only_typed_errors(junk: object, option: str) -> None:
    options: dict[str, Any] = {
        "backend": _WORLD.chain,
        "clock": _WORLD.clock,
        "vault": _WORLD.vault,
        "store": MemoryStore(),
    }
    options[option] = junk
    _only_typed_errors(lambda: SessionHub(**options))


_SERVER_OPTIONS = [
    "chain",
    "host",
    "port",
    "clock",
    "chain_id",
    "kdf_cost",
    "api_keys",
    "accept_any_api_key",
    "bearer_tokens",
    "legacy_session_layout",
    "cors_origins",
    "keep_alive",
    "request_timeout",
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=JUNK, option=st.sampled_from(_SERVER_OPTIONS))
def test_junk_into_localnet_server_raises_only_typed_errors(junk: object, option: str) -> None:
    pytest.importorskip("uvicorn")
    from chipi_session.localnet import LocalnetServer

    options: dict[str, Any] = {"kdf_cost": KdfCost.FAST_FOR_TESTS, option: junk}
    _only_typed_errors(lambda: LocalnetServer(**options))  # never started: nothing listens


_OPEN_JUNK: list[object] = [None, "", "x", 0, -1, HUGE, 1.5, math.nan, b"k", [1], {"a": 1}]


@pytest.mark.anyio
async def test_junk_into_hub_open_raises_only_typed_errors(world: World) -> None:
    options = [
        "wallet",
        "encrypt_key",
        "key",
        "stored_session",
        "on_session_created",
        "default_duration_seconds",
        "default_max_calls",
        "auto_check_status",
        "renewal",
        "key_source",
    ]
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, store=MemoryStore()
    ) as hub:
        for option in options:
            for junk in _OPEN_JUNK:
                kwargs: dict[str, Any] = {"wallet": world.wallet, "encrypt_key": PIN, "key": "k"}
                kwargs[option] = junk
                try:
                    session = await hub.open(**kwargs)
                except ChipiSessionError as exc:
                    assert exc.code is ErrorCode.INVALID_INPUT, (option, exc)
                    assert len(hub) == 0
                else:  # junk that happens to be valid (e.g. key=None, on_session_created=None)
                    await hub.close(session)
