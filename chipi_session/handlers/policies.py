"""Spending policies: the contract's per-token caps for the session key, as last known, and
the owner-signed writes that set and remove them (docs/engine.md, "Actions"; the rules
themselves are in ``policy``).

Moved out of ``engine.py`` / ``policy_actions.py`` (docs/architecture.md, "Module map"): a
plain object the session holds, handed the session as a
:class:`~chipi_session.handlers.context.SessionContext`. Owner-signed writes run one at a time
under the session's owner lock, each marked in flight (status reads overlapping it are stale).
The execute path checks the caps kept here (:meth:`SpendingPolicies.check`) and counts what an
accepted execute spent (:meth:`SpendingPolicies.spent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from .. import policy
from ..backends.base import require_writer
from ..events import TransactionSubmitted
from ..session_inputs import AppliedHashLost, check_policy, hash_lost_error, parse_token
from ..types import SpendingPolicy

if TYPE_CHECKING:
    from ..types import Call
    from .context import SessionContext

__all__ = ["SpendingPolicies"]


class SpendingPolicies:
    """The caps as last known, by token (unknown until set or read), and the actions on
    them. ``ctx`` is the session."""

    __slots__ = ("_caps", "_ctx")

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx
        self._caps: dict[int, SpendingPolicy] | None = None

    # ------------------------------------------------------------- local view
    @property
    def known(self) -> Mapping[int, SpendingPolicy]:
        """The caps we hold, by token (empty when none is known)."""
        return self._caps or {}

    def forget(self) -> None:
        """A new or cleared session: nothing is known about its caps."""
        self._caps = None

    def reset_windows(self, now: int) -> None:
        """A renewal's successor starts its spending windows afresh at ``now``."""
        if self._caps is not None:
            self._caps = {
                t: attrs.evolve(p, spent_in_window=0, window_start=now)
                for t, p in self._caps.items()
            }

    def check(self, calls: tuple[Call, ...], now: int) -> None:
        """Pre-flight: raise the contract's error if ``calls`` would break a known cap."""
        if self._caps:
            try:
                policy.apply_spending(self._caps, calls, now)
            except policy.SpendingViolation as violation:
                raise violation.to_error() from None

    def spent(self, calls: tuple[Call, ...], now: int) -> None:
        """The chain accepted ``calls``: count what they spent (a cap they break means our
        view is stale, so it is forgotten)."""
        if self._caps:
            try:
                self._caps.update(policy.apply_spending(self._caps, calls, now))
            except policy.SpendingViolation:
                self._caps = None

    # ---------------------------------------------------------------- actions
    async def set(
        self, token: int | str, max_per_call: int, max_per_window: int, window_seconds: int
    ) -> str:
        """``set_spending_policy``: owner-signed; the cap is known once it executed."""
        ctx = self._ctx
        token_addr = parse_token(token)
        check_policy(max_per_call, max_per_window, window_seconds)
        ctx.require_supported()
        async with ctx.owner_writes.guard():
            session = ctx.require_session()
            generation = ctx.core.generation
            with ctx.core.writing_key(session.public_key):
                try:
                    tx = await self.send_set(
                        session.public_key, token_addr, max_per_call, max_per_window,
                        window_seconds,
                    )  # fmt: skip
                except AppliedHashLost:
                    tx = ""
        if generation == ctx.core.generation:
            if self._caps is None:
                self._caps = {}
            self._caps[token_addr] = SpendingPolicy(
                max_per_call, max_per_window, window_seconds, 0, int(ctx.clock.now())
            )
            if tx:
                ctx.publish(TransactionSubmitted, action="set_spending_policy", tx_hash=tx)
        if not tx:
            raise hash_lost_error("set_spending_policy")
        return tx

    async def send_set(
        self,
        public_key: int,
        token: int,
        max_per_call: int,
        max_per_window: int,
        window_seconds: int,
    ) -> str:
        """Send one ``set_spending_policy`` for ``public_key`` (also a renewal's successor)
        without touching the local view."""
        ctx = self._ctx
        return await ctx.owner_writes.write(
            "set_spending_policy",
            public_key,
            lambda owner, bearer, on_submit: require_writer(
                ctx.backend, "set a spending policy"
            ).set_spending_policy(
                ctx.wallet,
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

    async def get(self, token: int | str) -> SpendingPolicy | None:
        """``get_spending_policy``: read from the chain; a fresh read updates the view."""
        ctx = self._ctx
        token_addr = parse_token(token)
        ctx.require_supported()
        session = ctx.require_session()
        version = ctx.core.version
        found = await ctx.backend.get_spending_policy(
            ctx.wallet.address, session.public_key, token_addr
        )
        if ctx.core.fresh(version, session.public_key):
            ctx.core.local_read()
            if found.exists:
                if self._caps is None:
                    self._caps = {}
                self._caps[token_addr] = found
            elif self._caps is not None:
                self._caps.pop(token_addr, None)
        return found if found.exists else None

    async def remove(self, token: int | str) -> str:
        """``remove_spending_policy``: owner-signed; the cap is dropped once it executed."""
        ctx = self._ctx
        token_addr = parse_token(token)
        ctx.require_supported()
        async with ctx.owner_writes.guard():
            session = ctx.require_session()
            generation = ctx.core.generation
            with ctx.core.writing_key(session.public_key):
                try:
                    tx = await ctx.owner_writes.write(
                        "remove_spending_policy",
                        session.public_key,
                        lambda owner, bearer, on_submit: require_writer(
                            ctx.backend, "remove a spending policy"
                        ).remove_spending_policy(
                            ctx.wallet,
                            owner,
                            session_public_key=session.public_key,
                            token=token_addr,
                            bearer_token=bearer,
                            on_submit=on_submit,
                        ),
                    )
                except AppliedHashLost:
                    tx = ""
        if generation == ctx.core.generation:
            if self._caps is not None:
                self._caps.pop(token_addr, None)
            if tx:
                ctx.publish(TransactionSubmitted, action="remove_spending_policy", tx_hash=tx)
        if not tx:
            raise hash_lost_error("remove_spending_policy")
        return tx
