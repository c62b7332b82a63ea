"""Typed events a session publishes to its subscribers.

Frozen attrs classes with a ``timestamp`` (the injected clock's time). None carries key
material: errors are :class:`~chipi_session.errors.ChipiSessionError` (messages are secret-free)
and statuses are public on-chain data.
"""

from __future__ import annotations

import attrs

from .errors import ChipiSessionError
from .types import SessionState, SessionStatus

__all__ = [
    "Event",
    "StateChanged",
    "TransactionSubmitted",
    "StatusRefreshed",
    "ActionFailed",
    "SessionRenewed",
]


@attrs.frozen(kw_only=True)
class Event:
    timestamp: float
    #: The session's public key (hex), so a stream mixing several sessions stays readable.
    session_public_key: str | None = None


@attrs.frozen(kw_only=True)
class StateChanged(Event):
    previous: SessionState
    current: SessionState
    #: Why: the trigger (``create``, ``register``...) or for expiry ``time`` / ``calls``.
    reason: str


@attrs.frozen(kw_only=True)
class TransactionSubmitted(Event):
    action: str
    tx_hash: str


@attrs.frozen(kw_only=True)
class StatusRefreshed(Event):
    status: SessionStatus | None


@attrs.frozen(kw_only=True)
class ActionFailed(Event):
    action: str
    error: ChipiSessionError


@attrs.frozen(kw_only=True)
class SessionRenewed(Event):
    """Auto-renewal switched executes to a registered successor (the old key is revoked next)."""

    previous_public_key: str
    new_public_key: str
