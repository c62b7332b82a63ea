"""Test helpers: a LocalChain world on a manual clock, with a cheap KDF (the ``world`` fixture
of conftest.py), and a funded wallet on a localnet server (tests over HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import attrs

from chipi_session import Call, ChipiSession, ManualClock, SessionHub, WalletData
from chipi_session.blocking import BlockingChipiSession
from chipi_session.keys import SecretKey, generate_private_key
from chipi_session.localchain import LocalChain
from chipi_session.types import SessionKeyData
from chipi_session.vault import KdfCost, Vault

if TYPE_CHECKING:
    from chipi_session.localnet import LocalnetServer

PIN = "1234"
START = 1_000_000
RECIPIENT = 0xBEEF


@attrs.define
class World:
    clock: ManualClock
    vault: Vault
    chain: LocalChain
    wallet: WalletData
    token: int

    def session(self, **kwargs: Any) -> ChipiSession:
        kwargs.setdefault("wallet", self.wallet)
        kwargs.setdefault("encrypt_key", PIN)
        kwargs.setdefault("backend", self.chain)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("vault", self.vault)
        kwargs.setdefault("auto_check_status", False)
        return ChipiSession(**kwargs)

    def hub(self, **kwargs: Any) -> SessionHub:
        """A ``SessionHub`` on this world (its chain, clock and vault unless given)."""
        kwargs.setdefault("backend", self.chain)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("vault", self.vault)
        return SessionHub(**kwargs)

    def blocking(self, async_backend: str = "asyncio") -> BlockingChipiSession:
        """:meth:`session`'s blocking twin, its event loop on ``async_backend``."""
        return BlockingChipiSession(
            async_backend=async_backend,
            wallet=self.wallet,
            encrypt_key=PIN,
            backend=self.chain,
            clock=self.clock,
            vault=self.vault,
            auto_check_status=False,
        )

    def transfer(self, amount: int = 10, to: int = RECIPIENT) -> Call:
        return Call(to=self.token, selector="transfer", calldata=[to, amount, 0])

    def balance(self, owner: int) -> int:
        return self.chain.balance_of(self.token, owner)

    async def register_key(self, max_calls: int = 5, lifetime: int = 3600) -> SessionKeyData:
        """A new session key registered on the chain by the owner directly (no engine): for
        tests that drive a handler on its own. Sign with :meth:`signer`."""
        key = generate_private_key()
        valid_until = int(self.clock.now()) + lifetime
        await self.chain.add_or_update_session_key(
            self.wallet,
            self.owner,
            session_public_key=SecretKey(key).public_key,
            valid_until=valid_until,
            max_calls=max_calls,
            allowed_entrypoints=[],
        )
        blob = self.vault.encrypt(key, PIN)
        return SessionKeyData(
            public_key=SecretKey(key).public_key,
            encrypted_private_key=blob,
            valid_until=valid_until,
        )

    def signer(self, session: SessionKeyData) -> SecretKey:
        """The private key of a session made by :meth:`register_key`."""
        return self.vault.decrypt(
            session.encrypted_private_key, PIN, expected_public_key=session.public_key
        )

    @property
    def owner(self) -> SecretKey:
        """The wallet's owner key (decrypted on each use: tests that sign as the owner)."""
        return self.vault.decrypt(
            self.wallet.encrypted_private_key, PIN, expected_public_key=self.wallet.owner_public_key
        )


def make_world(start: float = START) -> World:
    clock = ManualClock(start)
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(clock=clock, vault=vault)
    wallet = chain.create_wallet(PIN)
    token = chain.deploy_token("USDC", 6)
    chain.mint(token, wallet.address, 1_000_000)
    return World(clock, vault, chain, wallet, token)


@attrs.define
class Funded:
    """A wallet with a funded token on a localnet server's chain (tests over HTTP)."""

    server: LocalnetServer
    wallet: WalletData
    owner: SecretKey
    token: int

    def balance(self, owner: int) -> int:
        with self.server.locked() as chain:
            return chain.balance_of(self.token, owner)


def fund_wallet(server: LocalnetServer, amount: int = 10**9) -> Funded:
    """A new wallet (owner PIN ``PIN``) holding ``amount`` of a new 6-decimals token."""
    key = generate_private_key()
    with server.locked() as chain:
        wallet = chain.create_wallet(PIN, private_key=key)
        token = chain.deploy_token("TKN", 6)
        chain.mint(token, wallet.address, amount)
    return Funded(server, wallet, SecretKey(key), token)


async def settle() -> None:
    """Let every task that can run, run (time only moves when a test moves it)."""
    await anyio.wait_all_tasks_blocked()


async def eventually(condition: Any, attempts: int = 2000) -> None:
    """Wait until ``condition()`` holds: for work that runs in worker threads (key
    encryption, owner-key decryption), which ``settle`` does not wait for. Bounded."""
    for _ in range(attempts):
        if condition():
            return
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(0.001)
    raise AssertionError("condition never held")


def secret_text_forms(value: int) -> list[str]:
    """Every way a key could be printed, for "no key material here" checks: decimal, and hex
    with and without ``0x``, lower and upper case, unpadded and zero-padded to 64 digits."""
    return [
        str(value),
        hex(value),
        "0x" + format(value, "064x"),
        format(value, "x"),
        format(value, "X"),
        format(value, "064x"),
        format(value, "064X"),
    ]
