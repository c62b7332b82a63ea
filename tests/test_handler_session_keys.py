"""handlers/session_keys.py: the local session key (decrypted once, cached in memory only,
zeroed when replaced or forgotten), the owner key and bearer token of one write; and the
core's ``writing_key`` bracket that marks a write in flight.

``SessionKeys`` is driven directly over the world's real vault (counting its decryptions) on
both anyio backends.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest

from chipi_session import ChipiSessionError, ErrorCode
from chipi_session.handlers.session_keys import SessionKeys
from chipi_session.keys import SecretKey
from chipi_session.session_core import SessionCore
from chipi_session.types import SessionKeyData
from chipi_session.vault import Vault

from .helpers import PIN, World, secret_text_forms

pytestmark = pytest.mark.anyio


class CountingVault:
    """The world's vault, counting session-key decryptions (and optionally acting mid-way)."""

    def __init__(self, inner: Vault) -> None:
        self.inner = inner
        self.decrypted: list[SecretKey] = []
        self.during: Any = None

    def decrypt(self, blob: str, encrypt_key: Any, *, expected_public_key: int) -> SecretKey:
        key = self.inner.decrypt(blob, encrypt_key, expected_public_key=expected_public_key)
        self.decrypted.append(key)
        if self.during is not None:
            self.during()
        return key


def make_keys(world: World, vault: CountingVault, **kwargs: Any) -> SessionKeys:
    kwargs.setdefault("get_bearer_token", None)
    return SessionKeys(
        wallet=world.wallet,
        vault=cast(Vault, vault),
        encrypt_key=PIN,
        backend=world.chain,
        **kwargs,
    )


async def test_the_session_key_is_decrypted_once_even_for_many_callers(world: World) -> None:
    vault = CountingVault(world.vault)
    keys = make_keys(world, vault)
    data = await world.register_key()
    keys.switch(data, None)
    assert keys.cached is None
    got: list[SecretKey] = []

    async def ask() -> None:
        got.append(await keys.key_for(data))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask)
    assert len(vault.decrypted) == 1
    assert all(k is got[0] for k in got) and keys.cached is got[0]
    assert got[0].public_key == data.public_key
    assert got[0].reveal() == world.signer(data).reveal()
    assert await keys.key_for(data) is got[0] and len(vault.decrypted) == 1  # the fast path


async def test_a_zeroed_or_other_sessions_key_is_derived_again(world: World) -> None:
    vault = CountingVault(world.vault)
    keys = make_keys(world, vault)
    first, second = await world.register_key(), await world.register_key()
    keys.switch(first, None)
    key = await keys.key_for(first)
    key.zero()
    again = await keys.key_for(first)
    assert again is not key and not again.is_zeroed and len(vault.decrypted) == 2
    keys.switch(second, None)
    other = await keys.key_for(second)
    assert other.public_key == second.public_key and len(vault.decrypted) == 3


async def test_a_session_changed_while_decrypting_is_no_session_and_the_key_zeroed(
    world: World,
) -> None:
    vault = CountingVault(world.vault)
    keys = make_keys(world, vault)
    old, new = await world.register_key(), await world.register_key()
    keys.switch(old, None)
    vault.during = lambda: keys.switch(new, None)  # e.g. a renewal switched meanwhile
    with pytest.raises(ChipiSessionError) as info:
        await keys.key_for(old)
    assert info.value.code is ErrorCode.NO_SESSION
    assert vault.decrypted[0].is_zeroed and keys.cached is None
    assert keys.session is new


async def test_switch_hands_back_the_replaced_key_and_zero_forgets_it(world: World) -> None:
    keys = make_keys(world, CountingVault(world.vault))
    first, second = await world.register_key(), await world.register_key()
    assert keys.switch(first, None) is None
    key = await keys.key_for(first)
    successor_key = world.signer(second)
    old = keys.switch(second, successor_key)
    assert old is key and not key.is_zeroed  # the caller zeroes it
    assert keys.session is second and keys.cached is successor_key
    keys.zero()
    assert successor_key.is_zeroed and keys.cached is None
    keys.zero()  # nothing held: nothing to do
    assert keys.session is second  # the public data stays


async def test_the_owner_key_is_the_wallets_and_decrypted_per_call(world: World) -> None:
    keys = make_keys(world, CountingVault(world.vault))
    one, two = await keys.owner_key(), await keys.owner_key()
    assert one is not two
    assert one.public_key == world.wallet.owner_public_key
    assert one.reveal() == world.owner.reveal()


async def test_the_bearer_token_comes_from_its_source(world: World) -> None:
    assert await make_keys(world, CountingVault(world.vault)).bearer_token() is None

    async def token() -> str | None:
        return "jwt-1"

    keys = make_keys(world, CountingVault(world.vault), get_bearer_token=token)
    assert await keys.bearer_token() == "jwt-1"

    async def broken() -> str | None:
        raise RuntimeError("secret detail")

    keys = make_keys(world, CountingVault(world.vault), get_bearer_token=broken)
    with pytest.raises(ChipiSessionError) as info:
        await keys.bearer_token()
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert "secret detail" not in str(info.value)


async def test_the_repr_never_shows_the_key(world: World) -> None:
    keys = make_keys(world, CountingVault(world.vault))
    data = await world.register_key()
    keys.switch(data, None)
    key = await keys.key_for(data)
    text = repr(keys)
    assert "decrypted=True" in text
    assert data.encrypted_private_key not in text
    assert all(form not in text for form in secret_text_forms(key.reveal()))


def test_writing_key_marks_a_write_in_flight_until_left_however() -> None:
    core = SessionCore()
    data = SessionKeyData(public_key=7, encrypted_private_key="x", valid_until=1)
    version = core.version
    with core.writing_key(data.public_key):
        assert not core.fresh(core.version, data.public_key)  # a read now is stale
        with core.writing_key(data.public_key):  # nested writes of one key
            pass
        assert not core.fresh(core.version, data.public_key)
    assert core.fresh(core.version, data.public_key) and core.version > version
    with pytest.raises(KeyError), core.writing_key(data.public_key):
        raise KeyError("the write failed")
    assert core.fresh(core.version, data.public_key)
