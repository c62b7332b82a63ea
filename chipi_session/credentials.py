"""The secrets an action needs: a new session key, the owner key, the bearer token.

Stateless effects (each call gets what it uses), so the engine keeps only the decrypted session
key it caches. Keys are ``SecretKey``s: never in a repr, zeroed by whoever holds them last
(docs/engine.md). Split from ``engine.py`` so the facade stays thin.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from .backends.base import needs_bearer_token
from .errors import ChipiSessionError, ErrorCode
from .felts import U64_MAX
from .keys import KeySource, SecretKey
from .types import SessionKeyData, WalletData

if TYPE_CHECKING:
    from .backends.base import SessionReader
    from .vault import HighEntropyKey, Vault

__all__ = ["bearer_token", "decrypt_session_key", "new_session_key", "owner_key"]


async def new_session_key(
    *,
    now: int,
    duration: int,
    key_source: KeySource | None,
    vault: Vault,
    encrypt_key: str | HighEntropyKey,
    on_session_created: Callable[[SessionKeyData], Any] | None,
) -> tuple[SessionKeyData, SecretKey]:
    """Generate, encrypt and persist (``on_session_created``) a new session key; a key that
    was not persisted is zeroed and never used."""
    valid_until = now + duration
    if valid_until > U64_MAX:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "duration_seconds too large")
    try:
        key = SecretKey.generate(key_source)
    except ChipiSessionError as exc:
        raise ChipiSessionError(
            ErrorCode.SESSION_CREATION_FAILED, f"key generation failed: {exc.message}"
        ) from None
    try:
        blob = await anyio.to_thread.run_sync(
            lambda: vault.encrypt(key.reveal(), encrypt_key)
        )
        data = SessionKeyData(
            public_key=key.public_key, encrypted_private_key=blob, valid_until=valid_until
        )
        if on_session_created is not None:
            try:
                result = on_session_created(data)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise ChipiSessionError(
                    ErrorCode.SESSION_CREATION_FAILED,
                    f"on_session_created failed ({type(exc).__name__}); "
                    "the new session was discarded",
                ) from None
    except BaseException:
        key.zero()
        raise
    return data, key


async def bearer_token(
    backend: SessionReader, source: Callable[[], Awaitable[str | None]] | None
) -> str | None:
    """The token for one write, if the backend needs one (``UNAUTHORIZED`` otherwise)."""
    needs = needs_bearer_token(backend)
    if source is None:
        if needs:
            raise ChipiSessionError(ErrorCode.UNAUTHORIZED, "this backend needs get_bearer_token")
        return None
    try:
        token = await source()
    except ChipiSessionError:
        raise
    except Exception as exc:
        raise ChipiSessionError(
            ErrorCode.UNAUTHORIZED, f"get_bearer_token failed: {type(exc).__name__}"
        ) from None
    if token is None and needs:
        raise ChipiSessionError(ErrorCode.UNAUTHORIZED, "bearer token is required")
    return token


async def owner_key(
    vault: Vault, wallet: WalletData, encrypt_key: str | HighEntropyKey
) -> SecretKey:
    """Decrypt the owner key for one owner-signed action (the caller zeroes it)."""
    blob = wallet.encrypted_private_key
    expected = wallet.owner_public_key
    return await anyio.to_thread.run_sync(
        lambda: vault.decrypt(blob, encrypt_key, expected_public_key=expected)
    )


async def decrypt_session_key(
    vault: Vault, session: SessionKeyData, encrypt_key: str | HighEntropyKey
) -> SecretKey:
    """Decrypt a session key (checked against its public key)."""
    return await anyio.to_thread.run_sync(
        lambda: vault.decrypt(
            session.encrypted_private_key, encrypt_key, expected_public_key=session.public_key
        )
    )
