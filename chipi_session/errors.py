"""Typed errors with stable codes.

Every failure a caller can act on is a :class:`ChipiSessionError` carrying an :class:`ErrorCode`
(a ``str`` enum, so codes compare and serialise as plain strings) and a ``retryable`` flag that
says whether sending the same request again may succeed. Messages never contain key material.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import ExecutionResult

__all__ = ["ChipiSessionError", "ErrorCode"]


class ErrorCode(enum.StrEnum):
    """Stable error codes; the first group are Chipi's own session codes."""

    INVALID_WALLET_TYPE_FOR_SESSION = "INVALID_WALLET_TYPE_FOR_SESSION"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    SESSION_NOT_REGISTERED = "SESSION_NOT_REGISTERED"
    SESSION_REVOKED = "SESSION_REVOKED"
    SESSION_MAX_CALLS_EXCEEDED = "SESSION_MAX_CALLS_EXCEEDED"
    SESSION_ENTRYPOINT_NOT_ALLOWED = "SESSION_ENTRYPOINT_NOT_ALLOWED"
    SESSION_DECRYPTION_FAILED = "SESSION_DECRYPTION_FAILED"
    SESSION_CREATION_FAILED = "SESSION_CREATION_FAILED"
    SESSION_INVALID_RESPONSE = "SESSION_INVALID_RESPONSE"
    INVALID_SPENDING_POLICY = "INVALID_SPENDING_POLICY"
    # ours
    NO_SESSION = "NO_SESSION"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_STORED_DATA = "INVALID_STORED_DATA"
    SESSION_SPENDING_LIMIT_EXCEEDED = "SESSION_SPENDING_LIMIT_EXCEEDED"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    UNAUTHORIZED = "UNAUTHORIZED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"
    TRANSACTION_REJECTED = "TRANSACTION_REJECTED"
    #: The execute was included and consumed a call of the budget (``applied=True``), but an
    #: inner call failed or the transaction reverted; ``error.result`` says which call and
    #: why. Not retryable: sending it again would execute (and spend) again.
    CALL_FAILED = "CALL_FAILED"
    ACTION_IN_PROGRESS = "ACTION_IN_PROGRESS"
    NOT_SUPPORTED = "NOT_SUPPORTED"  # the backend cannot do this (e.g. a read-only RPC backend)
    CLOSED = "CLOSED"

    def __str__(self) -> str:
        return self.value


#: Codes for which retrying the same request can succeed without changing anything.
RETRYABLE_CODES = frozenset({ErrorCode.BACKEND_UNAVAILABLE})


class ChipiSessionError(Exception):
    """The one exception type of chipi_session.

    ``code`` is stable and machine-readable; ``message`` is for humans and never holds secrets.
    """

    code: ErrorCode
    message: str
    retryable: bool
    #: For writes whose outcome was in doubt: True = it executed on chain, False = it did not
    #: and never will, None = not known (the default for every other error).
    applied: bool | None
    #: For ``CALL_FAILED``: the execution result read from the chain (None otherwise).
    result: ExecutionResult | None

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        retryable: bool | None = None,
        *,
        applied: bool | None = None,
        result: ExecutionResult | None = None,
    ) -> None:
        self.code = ErrorCode(code)
        self.message = message
        self.retryable = (self.code in RETRYABLE_CODES) if retryable is None else retryable
        self.applied = applied
        self.result = result
        super().__init__(f"[{self.code.value}] {message}")

    def __repr__(self) -> str:
        return (
            f"ChipiSessionError(code={self.code.value!r}, message={self.message!r}, "
            f"retryable={self.retryable!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChipiSessionError):
            return NotImplemented
        return (self.code, self.message, self.retryable) == (
            other.code,
            other.message,
            other.retryable,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.retryable))

    def __reduce__(self) -> tuple[object, tuple[ErrorCode, str, bool]]:
        return (type(self), (self.code, self.message, self.retryable))  # applied: not pickled
