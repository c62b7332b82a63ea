"""Compatibility module: the stores live in the ``chipi_session.stores`` package.

Kept only so that existing imports (``from chipi_session.store import SqliteStore``) still work;
import from ``chipi_session`` or ``chipi_session.stores`` instead (docs/architecture.md).
"""

from .stores.codec import STORE_FORMAT, STORE_VERSION
from .stores.journal import JOURNAL_ACTIONS, JournalEntry
from .stores.json_file import JsonFileStore
from .stores.leases import Lease, LeaseLostError
from .stores.memory import MemoryStore
from .stores.protocol import SessionStore
from .stores.records import SessionRecord
from .stores.sqlite import SqliteStore

__all__ = [
    "STORE_FORMAT", "STORE_VERSION", "JOURNAL_ACTIONS", "SessionRecord", "JournalEntry",
    "Lease", "LeaseLostError", "SessionStore", "MemoryStore", "JsonFileStore", "SqliteStore",
]  # fmt: skip
