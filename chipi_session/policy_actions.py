"""Spending policies: the part of ``ChipiSession`` that sets, reads and removes the
contract's per-token caps for the session key (docs/engine.md, "Actions"; the
rules themselves are in ``policy``).

Owner-signed writes run one at a time under the session's owner lock, each marked in flight
(status reads overlapping it are stale). The engine's pre-flight checks the caps kept here
(``_policies``: None while unknown). A mixin of :class:`~chipi_session.engine.ChipiSession`
(its ``self``), kept apart so the engine module stays readable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .backends.base import require_writer
from .events import Event, TransactionSubmitted
from .session_inputs import AppliedHashLost as _AppliedHashLost
from .session_inputs import check_policy as _check_policy
from .session_inputs import hash_lost_error as _hash_lost_error
from .session_inputs import parse_token as _parse_token
from .types import SessionKeyData, SpendingPolicy

if TYPE_CHECKING:
    from typing import Any

    import anyio

    from .backends.base import OnSubmit, SessionReader
    from .clock import Clock
    from .keys import SecretKey
    from .session_core import SessionCore
    from .types import WalletData

__all__ = ["SpendingPolicyMixin"]


class SpendingPolicyMixin:
    """Spending-policy actions on a ``ChipiSession`` (the attributes below are the
    session's)."""

    #: the caps as last known, by token (None: not known)
    __slots__ = ("_policies",)
    _policies: dict[int, SpendingPolicy] | None

    if TYPE_CHECKING:
        _core: SessionCore
        _wallet: WalletData
        _backend: SessionReader
        _clock: Clock

        def _require_supported(self) -> None: ...
        def _require_session(self) -> SessionKeyData: ...
        def _publish(self, cls: type[Event], **fields: Any) -> None: ...
        def _owner_guard(self) -> anyio.Lock: ...
        def _in_flight(self, public_key: int) -> AbstractContextManager[None]: ...
        async def _owner_write(
            self,
            action: str,
            public_key: int,
            send: Callable[[SecretKey, str | None, OnSubmit], Awaitable[str]],
        ) -> str: ...

    async def _do_set_policy(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        token_addr = _parse_token(token)
        _check_policy(max_per_call, max_per_window, window_seconds)
        self._require_supported()
        async with self._owner_guard():
            session = self._require_session()
            generation = self._core.generation
            with self._in_flight(session.public_key):
                try:
                    tx = await self._set_policy_for(
                        session.public_key, token_addr, max_per_call, max_per_window,
                        window_seconds,
                    )
                except _AppliedHashLost:
                    tx = ""
        if generation == self._core.generation:
            if self._policies is None:
                self._policies = {}
            self._policies[token_addr] = SpendingPolicy(
                max_per_call, max_per_window, window_seconds, 0, int(self._clock.now())
            )
            if tx:
                self._publish(TransactionSubmitted, action="set_spending_policy", tx_hash=tx)
        if not tx:
            raise _hash_lost_error("set_spending_policy")
        return tx

    async def _set_policy_for(
        self,
        public_key: int,
        token: int,
        max_per_call: int,
        max_per_window: int,
        window_seconds: int,
    ) -> str:
        return await self._owner_write(
            "set_spending_policy",
            public_key,
            lambda owner, bearer, on_submit: require_writer(
                self._backend, "set a spending policy"
            ).set_spending_policy(
                self._wallet,
                owner,
                session_public_key=public_key,
                token=token,
                max_per_call=max_per_call,
                max_per_window=max_per_window,
                window_seconds=window_seconds,
                bearer_token=bearer,
                on_submit=on_submit,
            ),
        )

    async def _do_get_policy(self, token: int | str) -> SpendingPolicy | None:
        token_addr = _parse_token(token)
        self._require_supported()
        session = self._require_session()
        version = self._core.version
        found = await self._backend.get_spending_policy(
            self._wallet.address, session.public_key, token_addr
        )
        if self._core.fresh(version, session.public_key):
            self._core.local_read()
            if found.exists:
                if self._policies is None:
                    self._policies = {}
                self._policies[token_addr] = found
            elif self._policies is not None:
                self._policies.pop(token_addr, None)
        return found if found.exists else None

    async def _do_remove_policy(self, token: int | str) -> str:
        token_addr = _parse_token(token)
        self._require_supported()
        async with self._owner_guard():
            session = self._require_session()
            generation = self._core.generation
            with self._in_flight(session.public_key):
                try:
                    tx = await self._owner_write(
                        "remove_spending_policy",
                        session.public_key,
                        lambda owner, bearer, on_submit: require_writer(
                            self._backend, "remove a spending policy"
                        ).remove_spending_policy(
                            self._wallet,
                            owner,
                            session_public_key=session.public_key,
                            token=token_addr,
                            bearer_token=bearer,
                            on_submit=on_submit,
                        ),
                    )
                except _AppliedHashLost:
                    tx = ""
        if generation == self._core.generation:
            if self._policies is not None:
                self._policies.pop(token_addr, None)
            if tx:
                self._publish(TransactionSubmitted, action="remove_spending_policy", tx_hash=tx)
        if not tx:
            raise _hash_lost_error("remove_spending_policy")
        return tx
