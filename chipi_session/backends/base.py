"""The ``SessionBackend`` protocol (engine.md §6).

Owner-signed actions (register, revoke, spending policies) receive the decrypted owner key and
session-signed executes receive the session key; the backend computes what must be signed (for
the Chipi API that is the typed data the paymaster prepares) and signs with the key it is
handed. Keys are :class:`~chipi_session.keys.SecretKey` objects: a backend must not store them.

Every method raises :class:`~chipi_session.errors.ChipiSessionError`; ``BACKEND_UNAVAILABLE`` is
retryable, ``UNKNOWN_OUTCOME`` means a write may or may not have happened (read the chain).
Transaction hashes are ``0x`` hex strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..keys import SecretKey
from ..types import Call, SessionStatus, SpendingPolicy, WalletData

__all__ = ["SessionBackend"]


@runtime_checkable
class SessionBackend(Protocol):
    #: True if actions need a bearer token (remote backends); LocalChain needs none.
    requires_bearer_token: bool

    async def add_or_update_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        valid_until: int,
        max_calls: int,
        allowed_entrypoints: Sequence[int],
        bearer_token: str | None = None,
    ) -> str: ...

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
    ) -> str: ...

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
    ) -> str: ...

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus: ...

    async def set_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        max_per_call: int,
        max_per_window: int,
        window_seconds: int,
        bearer_token: str | None = None,
    ) -> str: ...

    async def remove_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        bearer_token: str | None = None,
    ) -> str: ...

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy: ...
