"""Leases: a session's call budget lives in one process at a time.

``acquire_lease`` returns a fencing token that grows with every new holder; passing it as
``fencing_token=`` to a mutation makes the store refuse writes from a holder that lost the
lease (docs/scaling.md). The rules are functions here, shared by every store, so they cannot
drift apart.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..errors import ChipiSessionError, ErrorCode
from .codec import _check_fields, _Corrupt, _field, _show, _stored_error

__all__ = ["Lease", "LeaseLostError"]


@attrs.frozen
class Lease:
    """The lease row of one key. ``owner is None`` once released; the row (and its ``token``)
    stays so the next holder's token is still larger."""

    owner: str | None
    token: int
    expires_at: float

    def held_by(self, owner: str, now: float) -> bool:
        """Held by ``owner`` at ``now`` (the lease ends *at* ``expires_at``)."""
        return self.owner == owner and now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "token": self.token, "expiresAt": self.expires_at}

    @classmethod
    def from_json(cls, data: object) -> Lease:
        try:
            obj = _check_fields(data, frozenset({"owner", "token", "expiresAt"}))
            owner = _field(obj, "owner", (str, type(None)))
            token = _field(obj, "token", (int,))
            expires_at = _field(obj, "expiresAt", (int, float))
            return cls._checked(owner, token, expires_at)
        except _Corrupt as exc:
            raise _stored_error("lease", str(exc)) from None

    @classmethod
    def _checked(cls, owner: object, token: object, expires_at: object) -> Lease:
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise _Corrupt("owner must be a non-empty string or null")
        if isinstance(token, bool) or not isinstance(token, int) or token < 1:
            raise _Corrupt("token must be a positive integer")
        if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
            raise _Corrupt("expiresAt must be a number")
        if not math.isfinite(expires_at):
            raise _Corrupt("expiresAt must be finite")
        return cls(owner, token, float(expires_at))


class LeaseLostError(ChipiSessionError):
    """A mutation carried a fencing token that is no longer the key's current lease.

    Another owner acquired the key (or this owner released it): the caller must stop acting on
    this session. Code ``ACTION_IN_PROGRESS`` (another process is acting on it), not retryable.
    """


def _row_lease(owner: object, token: object, expires_at: object) -> Lease:
    """A lease read from a database row (``_Corrupt`` if the row is malformed)."""
    return Lease._checked(owner, token, expires_at)


def _lease_lost(key: str, token: int) -> LeaseLostError:
    return LeaseLostError(
        ErrorCode.ACTION_IN_PROGRESS,
        f"fencing token {token} for session {_show(key)} is stale: another owner holds the lease",
        False,
    )


def _acquire(current: Lease | None, owner: str, ttl: float, now: float) -> Lease | None:
    """The new lease row, or None if another owner holds an unexpired lease.

    Re-acquiring a lease one still holds keeps its token; any other grant gets a larger token.
    Expiry never moves backwards (a renewal with an older ``now`` cannot shorten a lease).
    """
    if current is not None and current.owner is not None and now < current.expires_at:
        if current.owner != owner:
            return None
        return Lease(owner, current.token, max(current.expires_at, now + ttl))
    token = 1 if current is None else current.token + 1
    return Lease(owner, token, now + ttl)


def _renew(current: Lease | None, owner: str, ttl: float, now: float) -> Lease | None:
    """Extended lease, or None if ``owner`` does not hold an unexpired lease (then it must
    ``acquire_lease`` again and take the new token: someone may have held it in between)."""
    if current is None or not current.held_by(owner, now):
        return None
    return Lease(owner, current.token, max(current.expires_at, now + ttl))


def _release(current: Lease | None, owner: str) -> Lease | None:
    if current is None or current.owner != owner:
        return None
    return Lease(None, current.token, 0.0)


def _fence_ok(current: Lease | None, token: int | None) -> bool:
    """Classic fencing: a write with a token passes only while that token is the key's current,
    unreleased lease. Expiry alone does not fail it: until someone else acquires the key,
    nobody else can act on it, and acquiring bumps the token."""
    return token is None or (
        current is not None and current.owner is not None and current.token == token
    )
