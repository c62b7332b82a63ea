"""Reading a session's status and resolving in-doubt executes early.

Moved out of ``engine.py`` (docs/architecture.md, "Module map"): plain coroutines handed the
core, the backend and the facade's callbacks. Whether a read may be applied is the core's rule
(``SessionCore.fresh``: nothing changed locally since the read started); these functions only
do the reading and hand the result back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..types import SessionKeyData, SessionStatus, SubmitInfo

if TYPE_CHECKING:
    from ..backends.base import SessionReader
    from ..session_core import SessionCore

__all__ = ["read_status", "recheck_doubts"]


async def read_status(
    backend: SessionReader,
    address: int,
    session: SessionKeyData,
    *,
    core: SessionCore,
    current: Callable[[], SessionKeyData | None],
    apply: Callable[[SessionStatus], None],
    attempts: int,
) -> SessionStatus | None:
    """Read ``session``'s status and ``apply`` it; a read made stale by a local write is
    re-read (up to ``attempts`` reads). Stops once ``current()`` is another key: what the old
    key reads is not ours to apply. Returns the last status read (applied or not)."""
    status: SessionStatus | None = None
    for _ in range(attempts):
        version = core.version
        if current() is not session:
            break  # replaced meanwhile
        status = await backend.get_session_status(address, session.public_key)
        if core.fresh(version, session.public_key):
            apply(status)
            break
        # a local write or state change overlapped the read: it may predate it
    return status


async def recheck_doubts(
    core: SessionCore,
    generation: int,
    *,
    resolve: Callable[[SubmitInfo], Awaitable[bool | None]],
    learn: Callable[[SubmitInfo, bool | None, int], None],
    refetch: Callable[[], Awaitable[None]],
) -> None:
    """Resolve in-doubt executes early when their nonces can be read: one the chain
    already counts must not be counted twice until its window closes."""
    resolved = False
    for info in list(core.in_doubt):
        applied = await resolve(info)
        learn(info, applied, generation)
        if applied is not None and core.settle(info, applied):
            resolved = True
    if resolved and generation == core.generation:
        await refetch()  # read after the nonce: calls_used includes it
