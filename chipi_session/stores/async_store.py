"""The hub's view of a store: every call awaitable, no store I/O on the event loop.

The stores themselves (``MemoryStore``, ``JsonFileStore``, ``SqliteStore``, ``PostgresStore``)
are synchronous and thread-safe: SQLite fsyncs and a network database would stall every
session of the process if they ran on the loop. :func:`as_async_store` puts a store behind
:class:`ThreadedStore`, which runs each call in a worker thread (``anyio.to_thread``, so on
asyncio and trio alike) under a limiter of its own: a burst of journal writes cannot take every
thread of the process (key encryption and KDFs use anyio's default pool), and a store with one
connection does not park forty threads on its lock. A store that is already async (an
:class:`AsyncSessionStore`, e.g. one written on an async driver) is used as it is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.lowlevel
import anyio.to_thread

from .journal import JournalEntry
from .memory import MemoryStore
from .protocol import SessionStore
from .records import SessionRecord

__all__ = ["AsyncSessionStore", "ThreadedStore", "as_async_store"]

_T = TypeVar("_T")


@runtime_checkable
class AsyncSessionStore(Protocol):
    """:class:`~chipi_session.stores.protocol.SessionStore`, awaitable (same semantics and errors)."""

    async def load(self, key: str) -> SessionRecord | None: ...

    async def load_all(self) -> list[SessionRecord]: ...

    async def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None: ...

    async def delete(self, key: str, *, fencing_token: int | None = None) -> None: ...

    async def journal_append(
        self, entry: JournalEntry, *, fencing_token: int | None = None
    ) -> None: ...

    async def journal_update(
        self, entry: JournalEntry, *, fencing_token: int | None = None
    ) -> None: ...

    async def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None: ...

    async def journal_pending(self, key: str | None = None) -> list[JournalEntry]: ...

    async def acquire_lease(
        self, key: str, owner: str, ttl_seconds: float, now: float
    ) -> int | None: ...

    async def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool: ...

    async def renew_leases(
        self, keys: Iterable[str], owner: str, ttl_seconds: float, now: float
    ) -> set[str]: ...

    async def release_lease(self, key: str, owner: str) -> None: ...

    async def aclose(self) -> None: ...


def _default_threads(store: object) -> int:
    """As many threads as the store can use at once: one per pooled connection."""
    pool_size = getattr(store, "max_connections", None)
    return pool_size if isinstance(pool_size, int) and pool_size > 0 else 4


class ThreadedStore:
    """A synchronous store run in worker threads (at most ``max_threads`` at a time).

    ``MemoryStore`` does no I/O, so its calls run inline (a thread hop would cost more than the
    call). ``renew_leases`` uses the store's batched form when it has one (one statement for
    all keys), else renews key by key in one thread hop.
    """

    def __init__(
        self, store: SessionStore, *, max_threads: int | None = None, inline: bool | None = None
    ) -> None:
        """``inline``: run calls on the loop (only for stores without I/O; default: only
        ``MemoryStore``)."""
        if max_threads is not None and (
            isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1
        ):
            from ..errors import ChipiSessionError, ErrorCode

            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "max_threads must be an int >= 1")
        self._store = store
        self._threads = max_threads or _default_threads(store)
        self._limiter: anyio.CapacityLimiter | None = None
        self._inline = type(store) is MemoryStore if inline is None else bool(inline)

    @property
    def store(self) -> SessionStore:
        """The synchronous store underneath (for diagnostics and tests)."""
        return self._store

    def __repr__(self) -> str:
        return f"ThreadedStore({self._store!r})"

    async def _run(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self._inline:
            await anyio.lowlevel.checkpoint()
            return func(*args, **kwargs)
        if self._limiter is None:  # made lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self._threads)
        call = functools.partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def load(self, key: str) -> SessionRecord | None:
        return await self._run(self._store.load, key)

    async def load_all(self) -> list[SessionRecord]:
        return await self._run(self._store.load_all)

    async def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None:
        await self._run(self._store.save, record, fencing_token=fencing_token)

    async def delete(self, key: str, *, fencing_token: int | None = None) -> None:
        await self._run(self._store.delete, key, fencing_token=fencing_token)

    async def journal_append(
        self, entry: JournalEntry, *, fencing_token: int | None = None
    ) -> None:
        await self._run(self._store.journal_append, entry, fencing_token=fencing_token)

    async def journal_update(
        self, entry: JournalEntry, *, fencing_token: int | None = None
    ) -> None:
        await self._run(self._store.journal_update, entry, fencing_token=fencing_token)

    async def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        await self._run(self._store.journal_remove, entry_id, fencing_token=fencing_token)

    async def journal_pending(self, key: str | None = None) -> list[JournalEntry]:
        return await self._run(self._store.journal_pending, key)

    async def acquire_lease(
        self, key: str, owner: str, ttl_seconds: float, now: float
    ) -> int | None:
        return await self._run(self._store.acquire_lease, key, owner, ttl_seconds, now)

    async def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        return await self._run(self._store.renew_lease, key, owner, ttl_seconds, now)

    async def renew_leases(
        self, keys: Iterable[str], owner: str, ttl_seconds: float, now: float
    ) -> set[str]:
        wanted = list(keys)
        batch = getattr(self._store, "renew_leases", None)
        if callable(batch):
            kept: set[str] = await self._run(batch, wanted, owner, ttl_seconds, now)
            return kept

        def one_by_one() -> set[str]:
            renew = self._store.renew_lease
            return {k for k in wanted if renew(k, owner, ttl_seconds, now)}

        return await self._run(one_by_one)

    async def release_lease(self, key: str, owner: str) -> None:
        await self._run(self._store.release_lease, key, owner)

    async def aclose(self) -> None:
        await self._run(self._store.close)


def as_async_store(store: SessionStore | AsyncSessionStore) -> AsyncSessionStore:
    """The async view the hub uses: an async store as it is, a sync one behind threads."""
    if isinstance(store, AsyncSessionStore) and inspect.iscoroutinefunction(store.load):
        return store
    return ThreadedStore(store)  # type: ignore[arg-type]  # a SessionStore, then
