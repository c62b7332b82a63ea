"""session_options: the keywords ``ChipiSession`` and ``SessionHub.open`` share, declared once.

One table of bad values drives both constructors (same code, same field named in the
message); the ``TypedDict`` that types ``**options`` lists exactly the option fields; a hub
open checks its options once, before it takes a slot or a lease.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chipi_session import (
    ChipiSessionError,
    ErrorCode,
    MemoryStore,
    RenewalPolicy,
    SessionHub,
    SystemClock,
    validate,
)
from chipi_session.session_options import SessionOptions, SessionParams, SessionRuntime

from .helpers import PIN, World

pytestmark = pytest.mark.anyio

#: (keyword, bad value, text the message must contain)
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("wallet", "0x1", "wallet must be a WalletData"),
    ("encrypt_key", 1234, "encrypt_key must be a str PIN or a HighEntropyKey"),
    ("encrypt_key", "", "encrypt_key must not be empty"),
    ("stored_session", {"public_key": 1}, "stored_session must be a SessionKeyData"),
    ("on_session_created", "print", "on_session_created must be callable"),
    ("default_duration_seconds", 0, "default_duration_seconds"),
    ("default_duration_seconds", 2**64, "default_duration_seconds"),
    ("default_duration_seconds", True, "default_duration_seconds"),
    ("default_max_calls", -1, "default_max_calls"),
    ("default_max_calls", 2**32, "default_max_calls"),
    ("default_max_calls", 1.5, "default_max_calls"),
    ("auto_check_status", 1, "auto_check_status must be a bool"),
    ("renewal", {"min_remaining_calls": 5}, "renewal must be a RenewalPolicy"),
    ("key_source", 42, "key_source must be callable"),
]


def hub_for(world: World, **kwargs: Any) -> SessionHub:
    return SessionHub(backend=world.chain, clock=world.clock, vault=world.vault, **kwargs)


def test_the_typed_keywords_are_exactly_the_option_fields() -> None:
    fields = {f.name: f for f in attrs.fields(SessionOptions)}
    params = SessionParams.__annotations__  # the total base's keys first, as in the class
    assert list(params) == list(fields)
    for name, annotation in params.items():
        assert annotation.__forward_arg__ == fields[name].type, name
        required = fields[name].default is attrs.NOTHING
        assert (name in SessionParams.__required_keys__) is required, name
    assert SessionParams.__required_keys__ == {"wallet", "encrypt_key"}


def test_defaults(world: World) -> None:
    options = SessionOptions(wallet=world.wallet, encrypt_key=PIN)
    assert options.default_duration_seconds == 21600
    assert options.default_max_calls == 1000
    assert options.auto_check_status is True
    assert options.stored_session is None and options.renewal is None
    assert options.key_source is None and options.on_session_created is None


def test_the_pin_is_not_in_the_repr(world: World) -> None:
    options = SessionOptions(wallet=world.wallet, encrypt_key="9876-secret")
    assert "9876-secret" not in repr(options)
    assert "9876-secret" not in str(options)


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
def test_a_session_refuses_a_bad_option(world: World, name: str, value: Any, message: str) -> None:
    with pytest.raises(ChipiSessionError) as info:
        world.session(**{name: value})
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert message in info.value.message


@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES)
async def test_a_hub_refuses_the_same_bad_option_before_taking_the_key(
    world: World, name: str, value: Any, message: str
) -> None:
    store = MemoryStore()
    async with hub_for(world, store=store, lease_owner="me") as hub:
        kwargs: dict[str, Any] = {"wallet": world.wallet, "encrypt_key": PIN, name: value}
        with pytest.raises(ChipiSessionError) as info:
            await hub.open(key="user-1", **kwargs)
        assert info.value.code is ErrorCode.INVALID_INPUT
        assert message in info.value.message
        assert len(hub) == 0
        # nothing was taken: another owner gets the lease at once
        assert store.acquire_lease("user-1", "other", 30.0, world.clock.now()) is not None


def test_unknown_or_missing_keywords_are_type_errors(world: World) -> None:
    with pytest.raises(TypeError, match="max_callz"):
        world.session(max_callz=3)
    with pytest.raises(TypeError, match="wallet"):
        SessionOptions(encrypt_key=PIN)  # type: ignore[call-arg]


async def test_a_hub_open_with_an_unknown_keyword_is_a_type_error(world: World) -> None:
    async with hub_for(world) as hub:
        with pytest.raises(TypeError, match="max_callz"):
            await hub.open(wallet=world.wallet, encrypt_key=PIN, max_callz=3)  # type: ignore[call-arg]
        assert len(hub) == 0


def test_a_renewal_due_at_once_is_refused(world: World) -> None:
    renewal = RenewalPolicy(min_remaining_seconds=600)
    with pytest.raises(ChipiSessionError, match="min_remaining_seconds") as info:
        world.session(renewal=renewal, default_duration_seconds=600)
    assert info.value.code is ErrorCode.INVALID_INPUT
    world.session(renewal=renewal, default_duration_seconds=601)  # one second more is fine


async def test_the_hubs_renewal_is_checked_against_each_opens_defaults(world: World) -> None:
    renewal = RenewalPolicy(min_remaining_calls=50)
    async with hub_for(world, renewal=renewal) as hub:
        with pytest.raises(ChipiSessionError, match="min_remaining_calls"):
            await hub.open(wallet=world.wallet, encrypt_key=PIN, default_max_calls=50)
        assert len(hub) == 0
        session = await hub.open(wallet=world.wallet, encrypt_key=PIN, default_max_calls=51)
        assert len(hub) == 1
        await hub.close(session)


async def test_a_hub_open_checks_its_options_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[object] = []
    real = validate.check_encrypt_key

    def counting(value: Any) -> Any:
        checked.append(value)
        return real(value)

    monkeypatch.setattr(validate, "check_encrypt_key", counting)
    async with hub_for(world) as hub:
        await hub.open(wallet=world.wallet, encrypt_key=PIN)
        assert checked == [PIN]
    checked.clear()
    world.session()
    assert checked == [PIN]


def test_the_runtime_fills_in_its_defaults(world: World) -> None:
    runtime = SessionRuntime.resolve(backend=world.chain)
    assert runtime.clock is world.clock  # the backend's clock, when it has one
    assert runtime.status_interval == 30.0 and runtime.event_buffer_size == 256
    alone = SessionRuntime.resolve(backend=world.chain, clock=SystemClock(), vault=world.vault)
    assert isinstance(alone.clock, SystemClock) and alone.vault is world.vault


@pytest.mark.parametrize(
    ("name", "value"),
    [("status_interval", 0), ("event_buffer_size", 0), ("get_bearer_token", "jwt")],
)
def test_the_runtime_refuses_bad_values(name: str, value: Any) -> None:
    with pytest.raises(ChipiSessionError) as info:
        SessionRuntime.resolve(**{name: value})
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert name in info.value.message
