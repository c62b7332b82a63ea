"""The engine's view of a write-ahead journal (the hub backs it with a ``SessionStore``).

Before a write is sent the engine records it; the backend reports the SNIP-9 nonce it is about
to use; once the outcome is known the entry is dropped. An entry left behind (a crash, a lost
response) is resolved later from the chain: a used nonce means it executed, an unused one past
its window means it never will. So nothing is applied twice and nothing is silently lost.
"""

from __future__ import annotations

from typing import Protocol

from .types import SubmitInfo

__all__ = ["ActionJournal"]


class ActionJournal(Protocol):
    async def begin(self, action: str, session_public_key: int) -> object:
        """Record an intent (durably) before anything is sent; returns a token."""
        ...

    async def submitted(self, token: object, info: SubmitInfo) -> None:
        """The backend is about to send: remember the nonce that decides the outcome."""
        ...

    async def finish(self, token: object) -> None:
        """The outcome is known (applied or definitely not): forget the intent."""
        ...

    def mark_dirty(self) -> None:
        """The session's record changed (session data, registered flag): it must be saved.
        Synchronous, so a graceful close flushes it even if the background save is cancelled."""
        ...

    async def flush(self) -> None:
        """Save the record if it is dirty."""
        ...
