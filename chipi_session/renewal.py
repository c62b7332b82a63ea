"""Auto-renewal policy: when to replace a session with a successor, and how to back off.

Pure data and arithmetic; the engine performs the steps (create, register, copy spending
policies, switch, revoke the old key) and emits an event for each.
"""

from __future__ import annotations

from typing import Any

import attrs

from .errors import ChipiSessionError, ErrorCode

__all__ = ["RenewalPolicy"]


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{attribute.name} must be >= 0")


@attrs.frozen
class RenewalPolicy:
    """Renew when ``remaining calls <= min_remaining_calls`` or when
    ``valid_until - now <= min_remaining_seconds`` (0 disables a trigger).

    The successor gets ``duration_seconds`` / ``max_calls`` (default: the session's defaults /
    the current registration) and the current whitelist. Failures retry after
    ``retry_initial`` seconds, doubling up to ``retry_max``, at most ``max_attempts`` times;
    then renewal stops and the failure stays in ``session.error``.
    """

    min_remaining_calls: int = attrs.field(default=0, validator=_non_negative)
    min_remaining_seconds: float = attrs.field(default=0.0, validator=_non_negative)
    duration_seconds: int | None = None
    max_calls: int | None = None
    retry_initial: float = attrs.field(default=5.0, validator=_non_negative)
    retry_max: float = attrs.field(default=300.0, validator=_non_negative)
    max_attempts: int = attrs.field(default=8, validator=_non_negative)

    def due_by_calls(self, remaining_calls: int) -> bool:
        return self.min_remaining_calls > 0 and remaining_calls <= self.min_remaining_calls

    def due_at(self, valid_until: int) -> float | None:
        """Clock time at which the time trigger fires (None if disabled)."""
        if self.min_remaining_seconds <= 0:
            return None
        return valid_until - self.min_remaining_seconds

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        return float(min(self.retry_max, self.retry_initial * 2 ** max(attempt - 1, 0)))
