"""The ``SessionBackend`` protocol (engine.md §6).

Owner-signed actions (register, revoke, spending policies) receive the decrypted owner key and
session-signed executes receive the session key; the backend computes what must be signed (for
the Chipi API that is the typed data the paymaster prepares) and signs with the key it is
handed. Keys are :class:`~chipi_session.keys.SecretKey` objects: a backend must not store them.

Every method raises :class:`~chipi_session.errors.ChipiSessionError`; ``BACKEND_UNAVAILABLE`` is
retryable, ``UNKNOWN_OUTCOME`` means a write may or may not have happened (read the chain).
Transaction hashes are ``0x`` hex strings. Write methods call ``on_submit`` (if given) with a
:class:`SubmitInfo` after signing and right before sending.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from ..keys import SecretKey
from ..types import Call, ExecutionResult, SessionStatus, SpendingPolicy, WalletData

__all__ = [
    "SessionBackend",
    "SubmitInfo",
    "OnSubmit",
    "notify_submit",
    "NonceReader",
    "TransactionConfirmer",
    "ExecutionResultReader",
]


@attrs.frozen
class SubmitInfo:
    """What a backend is about to send, reported through ``on_submit`` before it sends.

    The SNIP-9 nonce is single-use on chain, so "is this nonce used?" answers exactly whether
    the transaction executed: the engine journals it to resolve an unknown outcome (a timeout
    after sending, a crash) without ever sending twice.
    """

    action: str
    wallet_address: int
    outside_nonce: int
    message_hash: int
    #: End of the SNIP-9 window: after it an unused nonce can never be used, so "not executed"
    #: is only certain once the chain's time has passed it.
    execute_before: int


OnSubmit = Callable[[SubmitInfo], "Awaitable[None] | None"]


async def notify_submit(on_submit: OnSubmit | None, info: SubmitInfo) -> None:
    """Call a sync or async ``on_submit`` hook (backends call this right before sending)."""
    if on_submit is None:
        return
    result = on_submit(info)
    if inspect.isawaitable(result):
        await result


@runtime_checkable
class NonceReader(Protocol):
    """Optional backend capability: read whether a SNIP-9 nonce was used on chain."""

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool: ...


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
        on_submit: OnSubmit | None = None,
    ) -> str: ...

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str: ...

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
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
        on_submit: OnSubmit | None = None,
    ) -> str: ...

    async def remove_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str: ...

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy: ...


@runtime_checkable
class TransactionConfirmer(Protocol):
    """Optional backend capability: wait until a transaction is accepted on chain.

    The engine reports a registration ``active`` (and a revoke ``revoked``) only once the
    backend confirms it, so a status read racing the transaction cannot mislabel the session.
    Raises ``TRANSACTION_REJECTED`` if it reverted, ``UNKNOWN_OUTCOME`` if it cannot tell.
    """

    async def confirm_transaction(self, tx_hash: str) -> None: ...


@runtime_checkable
class ExecutionResultReader(Protocol):
    """Optional backend capability: what an executed transaction did, call by call.

    Waits, like ``confirm_transaction``, until the transaction is accepted, then reads its
    status and per-call outcomes (docs/execution-results.md). A reverted transaction is a
    ``REVERTED`` result, not an error; what the backend cannot tell is ``UNKNOWN`` (never
    success). Raises ``UNKNOWN_OUTCOME`` if the transaction is not settled in time.
    """

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult: ...
