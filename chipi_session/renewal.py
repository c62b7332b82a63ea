"""Auto-renewal policy: when to replace a session with a successor, and how to back off.

Pure data and arithmetic; the engine performs the steps (create, persist, register, copy
spending policies, switch, revoke the old key) and emits an event for each.

A policy that would make a fresh successor due for renewal at once (``min_remaining_seconds
>= duration_seconds``, ``min_remaining_calls >= max_calls``) renews forever, a transaction pair
per turn of the event loop: such policies are refused when built, and again against the
defaults a session fills in (:meth:`RenewalPolicy.check_successor`).
"""

from __future__ import annotations

from typing import Any

import attrs

from . import validate
from .felts import U32_MAX, U64_MAX

__all__ = ["RenewalPolicy"]


def _count(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.check_int(value, attribute.name, low=0, high=U32_MAX)


def _seconds(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    validate.check_number(value, attribute.name, non_negative=True)


def _optional(high: int) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            validate.check_int(value, attribute.name, low=1, high=high)

    return check


@attrs.frozen
class RenewalPolicy:
    """Renew when ``remaining calls <= min_remaining_calls`` or when
    ``valid_until - now <= min_remaining_seconds`` (0 disables a trigger).

    The successor gets ``duration_seconds`` / ``max_calls`` (default: the session's defaults /
    the current registration) and the current whitelist. Failures retry after
    ``retry_initial`` seconds, doubling up to ``retry_max``, at most ``max_attempts`` times;
    then renewal stops and the failure stays in ``session.error``. Every field is checked
    (``INVALID_INPUT``): finite, non-negative, ints where counts are meant.
    """

    min_remaining_calls: int = attrs.field(default=0, validator=_count)
    min_remaining_seconds: float = attrs.field(default=0.0, validator=_seconds)
    duration_seconds: int | None = attrs.field(default=None, validator=_optional(U64_MAX))
    max_calls: int | None = attrs.field(default=None, validator=_optional(U32_MAX))
    retry_initial: float = attrs.field(default=5.0, validator=_seconds)
    retry_max: float = attrs.field(default=300.0, validator=_seconds)
    max_attempts: int = attrs.field(default=8, validator=_count)

    def __attrs_post_init__(self) -> None:
        self.check_successor(self.duration_seconds, self.max_calls)

    def check_successor(self, duration_seconds: int | None, max_calls: int | None) -> None:
        """Refuse (``INVALID_INPUT``) a successor that would be due for renewal at once."""
        if (
            duration_seconds is not None
            and self.min_remaining_seconds > 0
            and self.min_remaining_seconds >= duration_seconds
        ):
            raise validate.invalid(
                f"min_remaining_seconds ({self.min_remaining_seconds:g}) must be below the "
                f"successor's duration ({duration_seconds} s), or every successor is due for "
                "renewal at once"
            )
        if (
            max_calls is not None
            and self.min_remaining_calls > 0
            and self.min_remaining_calls >= max_calls
        ):
            raise validate.invalid(
                f"min_remaining_calls ({self.min_remaining_calls}) must be below the "
                f"successor's max_calls ({max_calls}), or every successor is due for renewal "
                "at once"
            )

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
