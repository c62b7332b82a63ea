"""Typed events a session publishes to its subscribers.

Frozen attrs classes with a ``timestamp`` (the injected clock's time). None carries key
material: errors are :class:`~chipi_session.errors.ChipiSessionError` (messages are secret-free)
and statuses are public on-chain data.
"""

from __future__ import annotations

import attrs

from .errors import ChipiSessionError
from .types import ExecutionResult, SessionState, SessionStatus

__all__ = [
    "Event",
    "StateChanged",
    "TransactionSubmitted",
    "StatusRefreshed",
    "ActionFailed",
    "SessionRenewed",
    "TransactionConfirmed",
    "TransactionFailed",
]


@attrs.frozen(kw_only=True)
class Event:
    """What every event carries: when (the session's clock) and whose session."""

    timestamp: float
    #: The session's public key (hex), so a stream mixing several sessions stays readable.
    session_public_key: str | None = None


@attrs.frozen(kw_only=True)
class StateChanged(Event):
    """The session moved from ``previous`` to ``current`` in its lifecycle."""

    previous: SessionState
    current: SessionState
    #: Why: the trigger (``create``, ``register``...) or for expiry ``time`` / ``calls``.
    reason: str


@attrs.frozen(kw_only=True)
class TransactionSubmitted(Event):
    """A write (``action``: register, execute, revoke...) was accepted as ``tx_hash``."""

    action: str
    tx_hash: str


@attrs.frozen(kw_only=True)
class StatusRefreshed(Event):
    """The session's on-chain status was read (None: not on chain)."""

    status: SessionStatus | None


@attrs.frozen(kw_only=True)
class ActionFailed(Event):
    """An action raised ``error`` (also kept in ``session.error``)."""

    action: str
    error: ChipiSessionError


@attrs.frozen(kw_only=True)
class SessionRenewed(Event):
    """Auto-renewal switched executes to a registered successor (the old key is revoked next)."""

    previous_public_key: str
    new_public_key: str


@attrs.frozen(kw_only=True)
class TransactionConfirmed(Event):
    """An execute was read back from the chain and no call of it is known to have failed:
    ``result.status`` is ``SUCCEEDED``, or ``UNKNOWN`` when the backend cannot tell per-call
    outcomes (docs/execution-results.md)."""

    action: str
    tx_hash: str
    result: ExecutionResult


@attrs.frozen(kw_only=True)
class TransactionFailed(Event):
    """An execute failed on chain: an inner call failed or it reverted (``error`` is
    ``CALL_FAILED``, ``result`` says which call and why), or it was rejected and never ran
    (``TRANSACTION_REJECTED``, ``applied=False``, ``result`` None). The error is also kept in
    ``session.error``."""

    action: str
    tx_hash: str
    result: ExecutionResult | None
    error: ChipiSessionError
