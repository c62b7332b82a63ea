"""``MemoryStore``, and the dict-backed store logic ``JsonFileStore`` commits to a file."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Self, TypeVar

from .codec import _check_fence, _check_number, _check_text, _check_ttl, _closed
from .journal import JournalEntry, _check_entry, _duplicate_entry, _key_changed, _no_entry
from .leases import Lease, _acquire, _fence_ok, _lease_lost, _release, _renew
from .records import SessionRecord, _check_record

__all__ = ["MemoryStore"]

_T = TypeVar("_T")


class _State:
    """Plain dicts; ``journal`` keeps insertion order, which is the append order."""

    __slots__ = ("sessions", "journal", "leases")

    def __init__(
        self,
        sessions: dict[str, SessionRecord] | None = None,
        journal: dict[str, JournalEntry] | None = None,
        leases: dict[str, Lease] | None = None,
    ) -> None:
        self.sessions: dict[str, SessionRecord] = {} if sessions is None else sessions
        self.journal: dict[str, JournalEntry] = {} if journal is None else journal
        self.leases: dict[str, Lease] = {} if leases is None else leases

    def copy(self) -> _State:
        # Values are immutable, so shallow copies are independent snapshots.
        return _State(dict(self.sessions), dict(self.journal), dict(self.leases))

    def fence(self, key: str, token: int | None) -> None:
        if not _fence_ok(self.leases.get(key), token):
            assert token is not None
            raise _lease_lost(key, token)


class _DictStore:
    """The store logic over a :class:`_State`; subclasses decide how a mutation is committed.

    Every mutation is a function of the state that validates before it changes anything and
    returns ``(result, changed)``.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._closed = False

    def _mutate(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        with self._lock:
            if self._closed:
                raise _closed()
            return self._commit(op)

    def _commit(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        return op(self._state)[0]

    def _read(self) -> _State:
        if self._closed:
            raise _closed()
        return self._state

    # -- records

    def load(self, key: str) -> SessionRecord | None:
        _check_text(key, "key")
        with self._lock:
            return self._read().sessions.get(key)

    def load_all(self) -> list[SessionRecord]:
        with self._lock:
            return list(self._read().sessions.values())

    def save(self, record: SessionRecord, *, fencing_token: int | None = None) -> None:
        _check_record(record)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(record.key, fence)
            state.sessions[record.key] = record
            return None, True

        self._mutate(op)

    def delete(self, key: str, *, fencing_token: int | None = None) -> None:
        _check_text(key, "key")
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(key, fence)
            doomed = [i for i, e in state.journal.items() if e.key == key]
            changed = state.sessions.pop(key, None) is not None or bool(doomed)
            for entry_id in doomed:
                del state.journal[entry_id]
            return None, changed

        self._mutate(op)

    # -- journal

    def journal_append(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            state.fence(entry.key, fence)
            if entry.entry_id in state.journal:
                raise _duplicate_entry(entry.entry_id)
            state.journal[entry.entry_id] = entry
            return None, True

        self._mutate(op)

    def journal_update(self, entry: JournalEntry, *, fencing_token: int | None = None) -> None:
        _check_entry(entry)
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            old = state.journal.get(entry.entry_id)
            if old is None:
                raise _no_entry(entry.entry_id)
            if old.key != entry.key:
                raise _key_changed()
            state.fence(entry.key, fence)
            state.journal[entry.entry_id] = entry  # an existing dict key keeps its position
            return None, old != entry

        self._mutate(op)

    def journal_remove(self, entry_id: str, *, fencing_token: int | None = None) -> None:
        _check_text(entry_id, "entry_id")
        fence = _check_fence(fencing_token)

        def op(state: _State) -> tuple[None, bool]:
            old = state.journal.get(entry_id)
            if old is None:
                return None, False
            state.fence(old.key, fence)
            del state.journal[entry_id]
            return None, True

        self._mutate(op)

    def journal_pending(self, key: str | None = None) -> list[JournalEntry]:
        if key is not None:
            _check_text(key, "key")
        with self._lock:
            entries = self._read().journal.values()
            return [e for e in entries if key is None or e.key == key]

    # -- leases

    def acquire_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> int | None:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")

        def op(state: _State) -> tuple[int | None, bool]:
            lease = _acquire(state.leases.get(key), owner, ttl, at)
            if lease is None:
                return None, False
            state.leases[key] = lease
            return lease.token, True

        return self._mutate(op)

    def renew_lease(self, key: str, owner: str, ttl_seconds: float, now: float) -> bool:
        _check_text(key, "key")
        _check_text(owner, "owner")
        ttl, at = _check_ttl(ttl_seconds), _check_number(now, "now")

        def op(state: _State) -> tuple[bool, bool]:
            lease = _renew(state.leases.get(key), owner, ttl, at)
            if lease is None:
                return False, False
            state.leases[key] = lease
            return True, True

        return self._mutate(op)

    def release_lease(self, key: str, owner: str) -> None:
        _check_text(key, "key")
        _check_text(owner, "owner")

        def op(state: _State) -> tuple[None, bool]:
            lease = _release(state.leases.get(key), owner)
            if lease is None:
                return None, False
            state.leases[key] = lease
            return None, True

        self._mutate(op)

    def get_lease(self, key: str) -> Lease | None:
        """The key's lease row (for diagnostics and tests; not part of the protocol)."""
        _check_text(key, "key")
        with self._lock:
            return self._read().leases.get(key)

    # -- lifecycle

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryStore(_DictStore):
    """Dicts in one process: for tests and for bots that need no persistence."""

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._state.sessions)} sessions>)"
