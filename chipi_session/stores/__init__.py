"""Crash-safe persistence for bots: session records, an in-flight journal and leases.

A bot that runs many sessions must survive a crash at any instant without losing a session key,
spending a call twice or forgetting a transaction it sent. Three pieces make that possible:

* **Records** (``records``): per hub slot, the wallet and the current session as vault blobs,
  plus what the process learned about the chain (``seen_registered`` tells "revoked" from
  "never registered" after a restart).
* **The journal** (``journal``): a write is appended *before* its request is sent and removed
  once its outcome is known; after a crash every pending entry is resolved from the chain.
* **Leases** (``leases``): a session's call budget lives in one process at a time; fencing
  tokens make the store refuse writes from a holder that lost the lease (docs/scaling.md).

One module per implementation of the ``SessionStore`` protocol (``protocol``): ``memory``
(tests), ``json_file`` (one small bot process), ``sqlite`` (many sessions, several processes on
one host), ``postgres`` (a fleet on several hosts; the ``postgres`` extra); the two SQL stores share their
flows through ``sql``. ``codec`` and ``files`` hold what they share; ``async_store`` is the hub's awaitable view of any store. Names load on first use (PEP 562), so
``MemoryStore`` does not import ``sqlite3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "STORE_FORMAT": "codec",
    "STORE_VERSION": "codec",
    "JOURNAL_ACTIONS": "journal",
    "SessionRecord": "records",
    "JournalEntry": "journal",
    "Lease": "leases",
    "LeaseLostError": "leases",
    "SessionStore": "protocol",
    "MemoryStore": "memory",
    "JsonFileStore": "json_file",
    "SqliteStore": "sqlite",
    "PostgresStore": "postgres",
    "AsyncSessionStore": "async_store",
    "ThreadedStore": "async_store",
    "as_async_store": "async_store",
}

#: ``PostgresStore`` needs the ``postgres`` extra, so it is not part of ``import *``.
__all__ = [
    "STORE_FORMAT",
    "STORE_VERSION",
    "JOURNAL_ACTIONS",
    "SessionRecord",
    "JournalEntry",
    "Lease",
    "LeaseLostError",
    "SessionStore",
    "MemoryStore",
    "JsonFileStore",
    "SqliteStore",
    "AsyncSessionStore",
    "ThreadedStore",
    "as_async_store",
]

if TYPE_CHECKING:  # pragma: no cover
    from .async_store import AsyncSessionStore, ThreadedStore, as_async_store
    from .codec import STORE_FORMAT, STORE_VERSION
    from .journal import JOURNAL_ACTIONS, JournalEntry
    from .json_file import JsonFileStore
    from .leases import Lease, LeaseLostError
    from .memory import MemoryStore
    from .postgres import PostgresStore as PostgresStore
    from .protocol import SessionStore
    from .records import SessionRecord
    from .sqlite import SqliteStore


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
