"""The ``SessionStore`` protocol every store implements (memory, JSON file, SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .journal import JournalEntry
from .records import SessionRecord

__all__ = ["SessionStore"]


@runtime_checkable
class SessionStore(Protocol):
    """Synchronous, thread-safe persistence for a SessionHub (called from a worker thread).

    Mutations are atomic and durable when they return. Those that take ``fencing_token`` refuse
    (:class:`LeaseLostError`) when it is not the key's current lease token; ``None`` skips the
    check. Malformed stored data raises ``INVALID_STORED_DATA``; bad arguments ``INVALID_INPUT``;
    I/O failures ``BACKEND_UNAVAILABLE`` (retryable: a failed mutation changed nothing);
    any call after :meth:`close` raises ``CLOSED``.
    """

    def load(self, key: str) -> SessionRecord | None: ...

    def load_all(self) -> list[SessionRecord]: ...

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None: ...

    def delete(self, key: str, *, fencing_token: int | None = None) -> None: ...

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None: ...

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None: ...

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None: ...

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]: ...

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None: ...

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool: ...

    def release_lease(self, key: str, owner: str) -> None: ...

    def close(self) -> None: ...
