"""The local session key and the secrets a write needs.

Moved out of ``engine.py`` (docs/architecture.md, "The engine's parts"; the rules:
docs/engine.md). :class:`SessionKeys` holds the local session's public data and, once an
execute needed it, its decrypted key — derived once per session, kept in memory only,
zeroed when the key is replaced, forgotten or the session closes. The owner key and the
bearer token are fetched afresh for each write (``credentials``, stateless); the owner key is
zeroed by the write that asked for it (``handlers.registration.OwnerWrites``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from .. import credentials
from ..errors import ChipiSessionError, ErrorCode
from ..felts import to_hex

if TYPE_CHECKING:
    from ..backends.base import SessionReader
    from ..keys import SecretKey
    from ..types import SessionKeyData, WalletData
    from ..vault import HighEntropyKey, Vault

__all__ = ["SessionKeys"]


class SessionKeys:
    """One session's keys (see the module docstring). Handed what it decrypts with and what
    it asks tokens of by the facade; holds no other session state."""

    __slots__ = (
        "_backend",
        "_encrypt_key",
        "_get_bearer_token",
        "_key",
        "_lock",
        "_vault",
        "_wallet",
        "session",
    )

    def __init__(
        self,
        *,
        wallet: WalletData,
        vault: Vault,
        encrypt_key: str | HighEntropyKey,
        backend: SessionReader,
        get_bearer_token: Callable[[], Awaitable[str | None]] | None,
    ) -> None:
        self._wallet = wallet
        self._vault = vault
        self._encrypt_key = encrypt_key
        self._backend = backend
        self._get_bearer_token = get_bearer_token
        #: the local session's public data (None: no session)
        self.session: SessionKeyData | None = None
        self._key: SecretKey | None = None
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        # never the key itself (a SecretKey's repr hides it too): only whether it is held
        session = None if self.session is None else to_hex(self.session.public_key)
        return f"SessionKeys(session={session}, decrypted={self._key is not None})"

    @property
    def cached(self) -> SecretKey | None:
        """The decrypted key of the local session, if derived (None otherwise)."""
        return self._key

    async def key_for(self, session: SessionKeyData) -> SecretKey:
        """The decrypted key of ``session``: derived once per session (one decryption even
        when many callers ask at once), kept in memory only. ``NO_SESSION`` if the local
        session changed while it was being decrypted (the key is zeroed, never cached)."""
        key = self._key
        if key is not None and not key.is_zeroed and key.public_key == session.public_key:
            return key  # the fast path: no lock, no await
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            key = self._key
            if key is not None and not key.is_zeroed and key.public_key == session.public_key:
                return key
            key = await credentials.decrypt_session_key(self._vault, session, self._encrypt_key)
            if self.session is not session:
                key.zero()
                raise ChipiSessionError(ErrorCode.NO_SESSION, "the session changed meanwhile")
            self._key = key
            return key

    def switch(self, data: SessionKeyData, key: SecretKey | None) -> SecretKey | None:
        """Make ``data`` (with its decrypted ``key``, if known) the local session; returns
        the replaced session's decrypted key (the caller zeroes it)."""
        old_key, self.session, self._key = self._key, data, key
        return old_key

    def zero(self) -> None:
        """Zero and forget the decrypted key (a revoked, replaced or closed session's key
        never signs again)."""
        if self._key is not None:
            self._key.zero()
            self._key = None

    async def owner_key(self) -> SecretKey:
        """The owner key, decrypted for one owner-signed write (the caller zeroes it)."""
        return await credentials.owner_key(self._vault, self._wallet, self._encrypt_key)

    async def bearer_token(self) -> str | None:
        """The token for one write, if the backend needs one (``UNAUTHORIZED`` otherwise)."""
        return await credentials.bearer_token(self._backend, self._get_bearer_token)
