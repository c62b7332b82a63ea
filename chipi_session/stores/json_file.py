"""``JsonFileStore``: one JSON document, rewritten atomically, for a single bot process."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from typing import Final, TypeVar

from ..errors import ChipiSessionError, ErrorCode
from .codec import STORE_FORMAT, STORE_VERSION, _loads, _parse, _show, _stored_error
from .files import _fsync_dir, _io_error, _store_file
from .journal import JournalEntry
from .leases import Lease
from .memory import _DictStore, _State
from .records import SessionRecord

if sys.platform != "win32":
    import fcntl

__all__ = ["JsonFileStore"]

_T = TypeVar("_T")


def _encode_document(state: _State) -> bytes:
    doc = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "sessions": {key: record.to_json() for key, record in state.sessions.items()},
        "journal": [entry.to_json() for entry in state.journal.values()],
        "leases": {key: lease.to_json() for key, lease in state.leases.items()},
    }
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")


_DOC_FIELDS: Final = frozenset({"format", "version", "sessions", "journal", "leases"})


def _decode_document(raw: bytes, where: str) -> _State:
    """Parse and validate a whole document; the first problem found is reported."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _stored_error(where, "not UTF-8 text (not a session store file?)") from None
    try:
        doc = _loads(text)
    except (ValueError, RecursionError) as exc:
        detail = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise _stored_error(where, f"not valid JSON ({detail}; truncated?)") from None
    if not isinstance(doc, dict) or doc.get("format") != STORE_FORMAT:
        raise _stored_error(where, f"not a {STORE_FORMAT} document")
    version = doc.get("version")
    if version != STORE_VERSION or isinstance(version, bool):
        shown = str(version) if isinstance(version, int) else "(not a number)"
        raise _stored_error(where, f"unsupported store version {shown}, expected {STORE_VERSION}")
    unknown = sorted(set(doc) - _DOC_FIELDS)
    if unknown:
        raise _stored_error(where, f"unknown top-level field {_show(unknown[0])}")
    sessions, journal, leases = doc.get("sessions"), doc.get("journal"), doc.get("leases")
    if not isinstance(sessions, dict):
        raise _stored_error(where, "'sessions' must be an object")
    if not isinstance(journal, list):
        raise _stored_error(where, "'journal' must be a list")
    if not isinstance(leases, dict):
        raise _stored_error(where, "'leases' must be an object")
    state = _State()
    for key, data in sessions.items():
        record = _parse(SessionRecord.from_json, data, f"{where}: session {_show(key)}")
        if record.key != key:
            raise _stored_error(where, f"session {_show(key)}: the record's key differs")
        state.sessions[key] = record
    for index, data in enumerate(journal):
        entry = _parse(JournalEntry.from_json, data, f"{where}: journal[{index}]")
        if entry.entry_id in state.journal:
            raise _stored_error(where, f"journal[{index}]: duplicate entry id")
        state.journal[entry.entry_id] = entry
    for key, data in leases.items():
        if not isinstance(key, str) or not key:
            raise _stored_error(where, "a lease has an empty key")
        try:
            state.leases[key] = Lease.from_json(data)
        except ChipiSessionError as exc:
            raise _stored_error(where, f"leases[{_show(key)}]: {exc.message}") from None
    return state


class JsonFileStore(_DictStore):
    """One JSON document, rewritten atomically on every mutation; for a single bot process.

    Each mutation writes the whole document to a temporary file in the same directory (mode
    0600), fsyncs it, ``os.replace``-s it over the store and fsyncs the directory: after a crash
    the file holds either the old or the new document, never a mix. The in-memory copy changes
    only once the file has. Cost grows with the store (every write rewrites it): fine for
    hundreds of sessions; use :class:`SqliteStore` beyond that.

    One user at a time: an exclusive lock on ``<path>.lock`` (POSIX ``flock``) makes a second
    ``JsonFileStore`` on the same file fail. Leases therefore only arbitrate between the threads
    and tasks of one process; use :class:`SqliteStore` to share sessions between processes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._path = _store_file(path, "JsonFileStore path")
        self._dir, self._name = os.path.split(self._path)
        self._lock_fd = self._take_file_lock()
        try:
            self._remove_stale_temps()
            raw = self._read_file()
            if raw is None:
                self._write(self._state)  # create it now: fail early if the directory is bad
            else:
                self._state = _decode_document(raw, f"session store {self._path}")
        except BaseException:
            self._drop_file_lock()
            raise

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"JsonFileStore({self._path!r})"

    def _take_file_lock(self) -> int | None:
        if sys.platform == "win32":  # pragma: no cover - no flock: documented single-process
            return None
        lock_path = self._path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _io_error("create its lock file", self._path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                f"session store {self._path} is already open (in this or another process); "
                "a JsonFileStore has one user at a time: use SqliteStore to share sessions",
            ) from None
        return fd

    def _drop_file_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def _temp_prefix(self) -> str:
        return f".{self._name}.tmp-"

    def _remove_stale_temps(self) -> None:
        """Temporary files left by a crash mid-write hold nothing the store still needs."""
        if self._lock_fd is None:  # pragma: no cover - without a lock, they may be another's
            return
        prefix = self._temp_prefix()
        with contextlib.suppress(OSError):
            for name in os.listdir(self._dir):
                if name.startswith(prefix):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self._dir, name))

    def _read_file(self) -> bytes | None:
        try:
            fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error("open it", self._path, exc) from exc
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise _io_error("read it", self._path, exc) from exc
        finally:
            os.close(fd)

    def _write(self, state: _State) -> None:
        data = _encode_document(state)
        tmp = os.path.join(self._dir, self._temp_prefix() + secrets.token_hex(8))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o600)
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
                view = memoryview(data)
                while view:  # os.write: no user-space buffer to flush, short writes retried
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _io_error("write it", self._path, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            _fsync_dir(self._dir)
        except OSError as exc:
            # The new file is in place but maybe not durable; memory keeps the old state and the
            # next successful write rewrites everything from it.
            raise _io_error("sync its directory", self._path, exc) from exc

    def _commit(self, op: Callable[[_State], tuple[_T, bool]]) -> _T:
        new = self._state.copy()
        result, changed = op(new)
        if changed:
            self._write(new)
            self._state = new
        return result

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._drop_file_lock()
