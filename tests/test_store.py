"""SessionStore: round trips, crash safety, corrupt data, leases (also across processes), and a
stateful model test, over MemoryStore, JsonFileStore and SqliteStore."""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.keys import generate_private_key, public_key_of
from chipi_session.localchain import LocalChain
from chipi_session.stores import (
    JOURNAL_ACTIONS,
    JournalEntry,
    JsonFileStore,
    Lease,
    LeaseLostError,
    MemoryStore,
    SessionRecord,
    SessionStore,
    SqliteStore,
)
from chipi_session.types import SessionKeyData, SubmitInfo, WalletData
from chipi_session.vault import KdfCost, Vault

from .helpers import secret_text_forms
from .lease_race import check_lease_race

PIN = "1234"
KINDS = ["memory", "json", "sqlite"]
FILE_KINDS = ["json", "sqlite"]


# -- material: real wallets and sessions, with their private keys known ----------------------


@attrs.frozen
class Material:
    wallets: tuple[WalletData, ...]
    sessions: tuple[SessionKeyData, ...]
    private_keys: tuple[int, ...]


@functools.cache
def material() -> Material:
    vault = Vault(KdfCost.FAST_FOR_TESTS)
    chain = LocalChain(vault=vault)
    owner_keys = [generate_private_key() for _ in range(2)]
    wallets = tuple(chain.create_wallet(PIN, private_key=k) for k in owner_keys)
    session_keys = [generate_private_key() for _ in range(3)]
    sessions = tuple(
        SessionKeyData(
            public_key=public_key_of(k),
            encrypted_private_key=vault.encrypt(k, PIN),
            valid_until=2_000_000 + i,
        )
        for i, k in enumerate(session_keys)
    )
    return Material(wallets, sessions, tuple(owner_keys + session_keys))


def make_record(key: str, variant: int = 0, **changes: Any) -> SessionRecord:
    m = material()
    session = None if variant % 4 == 3 else m.sessions[variant % 4]
    record = SessionRecord(key=key, wallet=m.wallets[variant % 2], session=session)
    return attrs.evolve(record, **changes)


def make_entry(key: str, action: str = "execute", t: float = 1.0, **kw: Any) -> JournalEntry:
    entry = JournalEntry.new(key, action, material().sessions[0].public_key, created_at=t)
    return attrs.evolve(entry, **kw)


# -- stores --------------------------------------------------------------------------------


class Opener:
    """Opens (and reopens from disk) one kind of store in a directory."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.path = directory / ("store.json" if kind == "json" else "store.sqlite3")
        self._memory: MemoryStore | None = None

    def open(self) -> Any:
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryStore()
            return self._memory
        if self.kind == "json":
            return JsonFileStore(self.path)
        return SqliteStore(self.path)

    def reopen(self, store: Any) -> Any:
        """A fresh instance reading what is on disk (the same instance for MemoryStore)."""
        if self.kind == "memory":
            return store
        store.close()
        return self.open()


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return Opener(str(request.param), tmp_path)


@pytest.fixture(params=FILE_KINDS)
def file_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return Opener(str(request.param), tmp_path)


@pytest.fixture
def store(opener: Opener) -> Iterator[Any]:
    s = opener.open()
    yield s
    s.close()


def code_of(exc: pytest.ExceptionInfo[ChipiSessionError]) -> ErrorCode:
    return exc.value.code


# -- value types ---------------------------------------------------------------------------


def test_record_json_round_trip_and_shape() -> None:
    record = make_record(
        "user-1",
        seen_registered=True,
        registered_max_calls=10,
        registered_allowed_entrypoints=[0x1234, "0xabc"],
        updated_at=123.5,
    )
    data = record.to_json()
    assert set(data) == {
        "key",
        "wallet",
        "session",
        "seenRegistered",
        "registeredMaxCalls",
        "registeredAllowedEntrypoints",
        "updatedAt",
    }
    assert data["wallet"] == record.wallet.to_json()
    assert data["session"] == record.session.to_json()  # type: ignore[union-attr]
    assert data["registeredAllowedEntrypoints"] == ["0x1234", "0xabc"]
    assert SessionRecord.from_json(json.loads(json.dumps(data))) == record
    assert record.registered_allowed_entrypoints == (0x1234, 0xABC)
    assert "chipi-vault" not in repr(record)  # the blobs stay out of repr


def test_entry_json_round_trip_and_submit() -> None:
    entry = make_entry("user-1", "register", 5.0)
    assert len(entry.entry_id) == 32 and int(entry.entry_id, 16) >= 0
    info = SubmitInfo("register", 0x1, outside_nonce=0x99, message_hash=0x77, execute_before=600)
    sent = entry.with_submit(info)
    assert (sent.outside_nonce, sent.message_hash, sent.execute_before) == (0x99, 0x77, 600)
    for e in (entry, sent):
        data = json.loads(json.dumps(e.to_json()))
        assert JournalEntry.from_json(data) == e
    assert sent.to_json()["outsideNonce"] == "0x99"


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_record(""),
        lambda: make_record(123),  # type: ignore[arg-type]
        lambda: make_record("k", seen_registered=1),
        lambda: make_record("k", registered_max_calls=-1),
        lambda: make_record("k", registered_max_calls=True),
        lambda: make_record("k", registered_allowed_entrypoints="0x1"),
        lambda: make_record("k", updated_at=float("nan")),
        lambda: make_record("k", wallet={"publicKey": "0x1"}),
        lambda: make_record("k", session="blob"),
        lambda: make_record("bad\udc80key"),
        lambda: make_entry("k", "transfer"),
        lambda: make_entry(""),
        lambda: make_entry("k", execute_before=2**64),
        lambda: JournalEntry("", "k", "execute", 1, 0.0),
    ],
)
def test_value_types_refuse_bad_input(build: Callable[[], object]) -> None:
    with pytest.raises(ChipiSessionError) as exc:
        build()
    assert code_of(exc) is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.pop("wallet"), "wallet"),
        (lambda d: d.update(key=""), "key"),
        (lambda d: d.update(seenRegistered="yes"), "seenRegistered"),
        (lambda d: d.update(registeredMaxCalls=2**40), "registered_max_calls"),
        (lambda d: d["wallet"].update(publicKey="zz"), "wallet"),
        (lambda d: d["session"].pop("encryptedPrivateKey"), "session"),
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.update(registeredAllowedEntrypoints=["nope"]), "registered_allowed"),
    ],
)
def test_record_from_json_reports_stored_data(
    mutate: Callable[[dict[str, Any]], Any], needle: str
) -> None:
    data = json.loads(json.dumps(make_record("k").to_json()))
    mutate(data)
    with pytest.raises(ChipiSessionError) as exc:
        SessionRecord.from_json(data)
    assert code_of(exc) is ErrorCode.INVALID_STORED_DATA
    assert needle in exc.value.message


def test_entry_from_json_reports_stored_data() -> None:
    data = make_entry("k").to_json()
    for broken in ({**data, "action": "mint"}, {**data, "createdAt": "now"}, [1, 2], {}):
        with pytest.raises(ChipiSessionError) as exc:
            JournalEntry.from_json(broken)  # type: ignore[arg-type]
        assert code_of(exc) is ErrorCode.INVALID_STORED_DATA


@given(
    key=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
    variant=st.integers(0, 7),
    seen=st.booleans(),
    max_calls=st.none() | st.integers(0, 2**32 - 1),
    entrypoints=st.lists(st.integers(0, 2**251), max_size=3),
    updated=st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
)
@settings(max_examples=30, deadline=None)
def test_record_json_property(
    key: str,
    variant: int,
    seen: bool,
    max_calls: int | None,
    entrypoints: list[int],
    updated: float,
) -> None:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return
    record = make_record(
        key,
        variant,
        seen_registered=seen,
        registered_max_calls=max_calls,
        registered_allowed_entrypoints=entrypoints,
        updated_at=updated,
    )
    text = json.dumps(record.to_json(), allow_nan=False)
    assert SessionRecord.from_json(json.loads(text)) == record


# -- round trips ---------------------------------------------------------------------------


def test_protocol_is_satisfied(store: Any) -> None:
    assert isinstance(store, SessionStore)


def test_records_round_trip(opener: Opener) -> None:
    store = opener.open()
    a, b = make_record("alice", 0, updated_at=1.0), make_record("bob", 3, seen_registered=True)
    assert store.load("alice") is None and store.load_all() == []
    store.save(a)
    store.save(b)
    assert store.load("alice") == a and store.load("bob") == b
    a2 = attrs.evolve(a, registered_max_calls=7, registered_allowed_entrypoints=(1, 2))
    store.save(a2)
    assert store.load("alice") == a2
    assert sorted(store.load_all(), key=lambda r: r.key) == [a2, b]
    store = opener.reopen(store)
    assert sorted(store.load_all(), key=lambda r: r.key) == [a2, b]
    store.delete("bob")
    store.delete("nobody")  # absent: a no-op
    assert store.load("bob") is None
    store = opener.reopen(store)
    assert store.load_all() == [a2]
    store.close()


def test_journal_round_trip_and_order(opener: Opener) -> None:
    store = opener.open()
    e1, e2, e3 = make_entry("alice", t=3.0), make_entry("bob", t=2.0), make_entry("alice", t=1.0)
    for e in (e1, e2, e3):
        store.journal_append(e)
    # append order, not created_at order (a clock may step back)
    assert store.journal_pending() == [e1, e2, e3]
    assert store.journal_pending("alice") == [e1, e3]
    assert store.journal_pending("carol") == []
    e1b = attrs.evolve(e1, outside_nonce=42, execute_before=1000, message_hash=7)
    store.journal_update(e1b)
    assert store.journal_pending() == [e1b, e2, e3]  # an update keeps its place
    store = opener.reopen(store)
    assert store.journal_pending() == [e1b, e2, e3]
    store.journal_remove(e2.entry_id)
    store.journal_remove(e2.entry_id)  # idempotent
    e4 = make_entry("bob")
    store.journal_append(e4)
    assert store.journal_pending() == [e1b, e3, e4]
    store = opener.reopen(store)
    assert store.journal_pending() == [e1b, e3, e4]
    assert store.journal_pending("bob") == [e4]
    store.close()


def test_delete_drops_the_keys_journal(opener: Opener) -> None:
    store = opener.open()
    store.save(make_record("alice"))
    store.save(make_record("bob"))
    ea, eb = make_entry("alice"), make_entry("bob")
    store.journal_append(ea)
    store.journal_append(eb)
    store.delete("alice")
    assert store.journal_pending() == [eb]
    store.journal_append(make_entry("ghost"))  # entries without a record are kept...
    store.delete("ghost")  # ...and dropped with their key
    store = opener.reopen(store)
    assert store.journal_pending() == [eb]
    assert [r.key for r in store.load_all()] == ["bob"]
    store.close()


def test_journal_misuse(store: Any) -> None:
    entry = make_entry("alice")
    store.journal_append(entry)
    with pytest.raises(ChipiSessionError) as exc:
        store.journal_append(entry)
    assert code_of(exc) is ErrorCode.INVALID_INPUT and "already exists" in exc.value.message
    with pytest.raises(ChipiSessionError) as exc:
        store.journal_update(make_entry("alice"))
    assert code_of(exc) is ErrorCode.INVALID_INPUT and "no pending" in exc.value.message
    with pytest.raises(ChipiSessionError) as exc:
        store.journal_update(attrs.evolve(entry, key="bob"))
    assert code_of(exc) is ErrorCode.INVALID_INPUT
    assert store.journal_pending() == [entry]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.load(""),
        lambda s: s.load(None),
        lambda s: s.save({"key": "x"}),
        lambda s: s.save(make_record("k"), fencing_token=0),
        lambda s: s.save(make_record("k"), fencing_token=True),
        lambda s: s.delete(5),
        lambda s: s.journal_append(make_record("k")),
        lambda s: s.journal_update("id"),
        lambda s: s.journal_remove(""),
        lambda s: s.journal_pending(""),
        lambda s: s.acquire_lease("", "me", 1, 0),
        lambda s: s.acquire_lease("k", "", 1, 0),
        lambda s: s.acquire_lease("k", "me", 0, 0),
        lambda s: s.acquire_lease("k", "me", -5, 0),
        lambda s: s.acquire_lease("k", "me", 1, float("nan")),
        lambda s: s.acquire_lease("k", "me", float("inf"), 0),
        lambda s: s.renew_lease("k", "me", "1", 0),
        lambda s: s.release_lease("k", None),
        lambda s: s.load("nul\x00key"),
    ],
)
def test_bad_arguments_are_invalid_input(store: Any, call: Callable[[Any], object]) -> None:
    with pytest.raises(ChipiSessionError) as exc:
        call(store)
    assert code_of(exc) is ErrorCode.INVALID_INPUT
    assert store.load_all() == [] and store.journal_pending() == []


def test_closed_store_refuses(opener: Opener) -> None:
    store = opener.open()
    store.close()
    store.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: store.load("k"),
        lambda: store.load_all(),
        lambda: store.save(make_record("k")),
        lambda: store.journal_pending(),
        lambda: store.acquire_lease("k", "me", 1, 0),
    ]
    for call in calls:
        with pytest.raises(ChipiSessionError) as exc:
            call()
        assert code_of(exc) is ErrorCode.CLOSED


def test_context_manager(opener: Opener) -> None:
    with opener.open() as store:
        store.save(make_record("k"))
    with pytest.raises(ChipiSessionError):
        store.load("k")


# -- leases and fencing --------------------------------------------------------------------


def test_leases(opener: Opener) -> None:
    store = opener.open()
    t1 = store.acquire_lease("k", "A", 10, now=100)
    assert t1 == 1
    assert store.acquire_lease("k", "B", 10, now=105) is None  # exclusive
    assert store.acquire_lease("k", "A", 10, now=105) == t1  # re-acquire by holder: same token
    assert store.acquire_lease("other", "B", 10, now=105) == 1  # tokens are per key
    assert not store.renew_lease("k", "B", 10, now=106)  # only the owner renews
    assert store.renew_lease("k", "A", 10, now=110)
    assert store.get_lease("k") == Lease("A", 1, 120.0)
    assert store.renew_lease("k", "A", 1, now=111)  # a renewal never shortens the lease
    assert store.get_lease("k").expires_at == 120.0
    assert store.acquire_lease("k", "B", 10, now=119.999) is None
    t2 = store.acquire_lease("k", "B", 10, now=120)  # expired exactly at expires_at
    assert t2 is not None and t2 > t1
    assert not store.renew_lease("k", "A", 10, now=121)  # A lost it
    store.release_lease("k", "A")  # not A's: a no-op
    assert store.get_lease("k").owner == "B"
    store.release_lease("k", "B")
    assert store.get_lease("k") == Lease(None, t2, 0.0)
    assert not store.renew_lease("k", "B", 10, now=122)  # released: must acquire again
    store = opener.reopen(store)
    t3 = store.acquire_lease("k", "A", 10, now=122)  # released: free at once
    assert t3 is not None and t3 > t2  # monotonic across release and reopen
    # an expired holder that re-acquires gets a new token too (someone may have held it)
    t4 = store.acquire_lease("k", "A", 10, now=500)
    assert t4 is not None and t4 > t3
    store.close()


def test_fencing_token_refuses_writes_from_a_lost_lease(opener: Opener) -> None:
    store = opener.open()
    record = make_record("k")
    old = store.acquire_lease("k", "A", 10, now=0)
    store.save(record, fencing_token=old)
    entry = make_entry("k")
    store.journal_append(entry, fencing_token=old)
    # A pauses past its TTL; B takes over.
    new = store.acquire_lease("k", "B", 10, now=50)
    assert new is not None and old is not None and new > old
    stale: list[Callable[[], object]] = [
        lambda: store.save(attrs.evolve(record, seen_registered=True), fencing_token=old),
        lambda: store.journal_append(make_entry("k"), fencing_token=old),
        lambda: store.journal_update(attrs.evolve(entry, outside_nonce=1), fencing_token=old),
        lambda: store.journal_remove(entry.entry_id, fencing_token=old),
        lambda: store.delete("k", fencing_token=old),
    ]
    for call in stale:
        with pytest.raises(LeaseLostError) as exc:
            call()
        assert exc.value.code is ErrorCode.ACTION_IN_PROGRESS and not exc.value.retryable
    assert store.load("k") == record and store.journal_pending() == [entry]
    store.journal_update(attrs.evolve(entry, outside_nonce=1), fencing_token=new)
    store.journal_remove(entry.entry_id, fencing_token=new)
    store.save(attrs.evolve(record, seen_registered=True), fencing_token=new)
    store.release_lease("k", "B")
    with pytest.raises(LeaseLostError):  # a released lease fences its holder out too
        store.save(record, fencing_token=new)
    with pytest.raises(LeaseLostError):  # a token for a key without a lease
        store.save(make_record("free"), fencing_token=1)
    store.close()


# -- files: secrecy, permissions, atomicity, corruption ------------------------------------


def _secret_forms(private_key: int) -> list[bytes]:
    forms = secret_text_forms(private_key)
    return [f.encode() for f in forms] + [private_key.to_bytes(32, "big")]


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


def test_files_never_hold_private_keys(file_opener: Opener) -> None:
    store = file_opener.open()
    m = material()
    for i in range(4):
        store.save(make_record(f"user-{i}", i, seen_registered=True))
        store.journal_append(make_entry(f"user-{i}"))
    store.acquire_lease("user-0", "me", 10, 0)
    snapshots = [_all_bytes(file_opener.directory)]  # open (SQLite: data still in the WAL)
    store.close()
    snapshots.append(_all_bytes(file_opener.directory))
    for data in snapshots:
        assert b"chipi-vault$1$argon2id" in data  # the blobs are there...
        for key in m.private_keys:  # ...the keys are not, in any spelling
            for form in _secret_forms(key):
                assert form not in data


def test_files_are_private(file_opener: Opener) -> None:
    old = os.umask(0)  # even a permissive umask gives 0600
    try:
        store = file_opener.open()
        store.save(make_record("k"))
        store.acquire_lease("k", "me", 10, 0)
        files = [p for p in file_opener.directory.iterdir() if p.is_file()]
        assert file_opener.path in files
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        store.close()
    finally:
        os.umask(old)


def _no_temp_files(directory: Path) -> bool:
    return not any(".tmp-" in p.name for p in directory.iterdir())


@pytest.mark.parametrize("failure", ["replace", "write", "fsync"])
def test_json_write_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = tmp_path / "store.json"
    store = JsonFileStore(path)
    first = make_record("alice")
    store.save(first)
    store.journal_append(make_entry("alice"))
    before = path.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    real_write = os.write

    def half_write(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: max(1, len(data) // 2)]))
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"replace": boom, "write": half_write, "fsync": boom}[failure]
    monkeypatch.setattr(os, failure, target)
    calls: list[Callable[[], object]] = [
        lambda: store.save(make_record("bob")),
        lambda: store.delete("alice"),
        lambda: store.journal_append(make_entry("bob")),
        lambda: store.acquire_lease("alice", "me", 10, 0),
    ]
    for call in calls:
        with pytest.raises(ChipiSessionError) as exc:
            call()
        assert exc.value.code is ErrorCode.BACKEND_UNAVAILABLE and exc.value.retryable
        assert isinstance(exc.value.__cause__, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old document, untouched
    assert _no_temp_files(tmp_path)
    assert store.load_all() == [first] and store.load("bob") is None  # memory unchanged too
    assert store.get_lease("alice") is None
    store.close()
    reopened = JsonFileStore(path)
    assert reopened.load_all() == [first] and len(reopened.journal_pending()) == 1
    reopened.save(make_record("bob"))  # and it still works
    assert len(reopened.load_all()) == 2
    reopened.close()


def test_json_leftover_temp_files_are_ignored_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    with JsonFileStore(path) as store:
        store.save(make_record("alice"))
    # a crash mid-write leaves a partial temporary file next to the intact store
    stale = tmp_path / ".store.json.tmp-deadbeef"
    stale.write_bytes(path.read_bytes()[:10])
    with JsonFileStore(path) as store:
        assert [r.key for r in store.load_all()] == ["alice"]
    assert not stale.exists()


def test_json_store_has_one_user(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    first = JsonFileStore(path)
    with pytest.raises(ChipiSessionError) as exc:
        JsonFileStore(path)
    assert exc.value.code is ErrorCode.INVALID_INPUT and "SqliteStore" in exc.value.message
    first.close()
    JsonFileStore(path).close()


def test_json_document_format(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    with JsonFileStore(path) as store:
        store.save(make_record("alice"))
        entry = make_entry("alice")
        store.journal_append(entry)
        store.acquire_lease("alice", "me", 10, 5)
    doc = json.loads(path.read_text())
    assert doc["format"] == "chipi-session-store" and doc["version"] == 1
    assert doc["sessions"]["alice"] == make_record("alice").to_json()
    assert doc["journal"] == [entry.to_json()]
    assert doc["leases"] == {"alice": {"owner": "me", "token": 1, "expiresAt": 15.0}}


def _valid_document(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "seed.json"
    with JsonFileStore(path) as store:
        store.save(make_record("alice"))
        store.journal_append(make_entry("alice"))
        store.acquire_lease("alice", "me", 10, 5)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return apply


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "not valid JSON"),
        (b"\x00\xff garbage \x80", "not UTF-8"),
        (b'{"format": "chipi-session-store", "version": 1, "sessions": {', "not valid JSON"),
        (b"[]", "not a chipi-session-store"),
        (b'{"format": "other"}', "not a chipi-session-store"),
        (b'{"a": 1, "a": 2}', "not valid JSON"),
        (b'{"format": "chipi-session-store", "version": NaN}', "not valid JSON"),
    ],
)
def test_json_garbage_is_invalid_stored_data(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "store.json"
    path.write_bytes(content)
    with pytest.raises(ChipiSessionError) as exc:
        JsonFileStore(path)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA
    assert needle in exc.value.message and str(path) in exc.value.message
    assert path.read_bytes() == content  # never "repaired" by overwriting
    JsonFileStore(tmp_path / "fine.json").close()  # the failed open released its lock


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (_set(["version"], 2), "unsupported store version 2"),
        (_set(["version"], "1"), "unsupported store version"),
        (_set(["extra"], {}), "unknown top-level field"),
        (_set(["sessions"], []), "'sessions' must be an object"),
        (_set(["journal"], {}), "'journal' must be a list"),
        (_set(["sessions", "alice", "wallet", "publicKey"], "0xzz"), "session 'alice'"),
        (_set(["sessions", "alice", "session", "validUntil"], -1), "session 'alice'"),
        (_set(["sessions", "alice", "key"], "bob"), "record's key differs"),
        (_set(["sessions", "alice"], "oops"), "session 'alice'"),
        (_set(["journal", 0, "action"], "steal"), "journal[0]"),
        (_set(["journal", 0, "outsideNonce"], 5), "journal[0]"),
        (_set(["leases", "alice", "token"], 0), "leases['alice']"),
        (_set(["leases", "alice", "owner"], 3), "leases['alice']"),
    ],
)
def test_json_broken_content_is_invalid_stored_data(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], needle: str
) -> None:
    doc = _valid_document(tmp_path)
    mutate(doc)
    path = tmp_path / "store.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ChipiSessionError) as exc:
        JsonFileStore(path)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA
    assert needle in exc.value.message
    assert "chipi-vault$" not in exc.value.message  # names the problem, never the contents


def test_json_duplicate_journal_ids(tmp_path: Path) -> None:
    doc = _valid_document(tmp_path)
    doc["journal"].append(doc["journal"][0])
    path = tmp_path / "store.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ChipiSessionError) as exc:
        JsonFileStore(path)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA and "duplicate" in exc.value.message


def test_sqlite_garbage_and_foreign_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 200)
    with pytest.raises(ChipiSessionError) as exc:
        SqliteStore(garbage)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ChipiSessionError) as exc:
        SqliteStore(foreign)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA
    assert "not a chipi-session-store database" in exc.value.message


def test_sqlite_wrong_version(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE name = 'version'")
    conn.close()
    with pytest.raises(ChipiSessionError) as exc:
        SqliteStore(path)
    assert exc.value.code is ErrorCode.INVALID_STORED_DATA
    assert "unsupported store version 2" in exc.value.message


def test_sqlite_broken_rows_fail_their_reads(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with SqliteStore(path) as store:
        store.save(make_record("alice"))
        store.save(make_record("bob"))
        store.journal_append(make_entry("alice"))
        store.acquire_lease("alice", "me", 10, 0)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sessions SET json = '{\"key\": \"alice\"' WHERE key = 'alice'")
        conn.execute("UPDATE journal SET json = '{}'")
        conn.execute("UPDATE leases SET token = -3")
    conn.close()
    with SqliteStore(path) as store:
        assert store.load("bob") == make_record("bob")  # the healthy row still loads
        for call in (
            lambda: store.load("alice"),
            lambda: store.load_all(),  # refuses rather than silently skipping alice
            lambda: store.journal_pending(),
            lambda: store.journal_pending("alice"),
            lambda: store.acquire_lease("alice", "x", 1, 0),
            lambda: store.get_lease("alice"),
        ):
            with pytest.raises(ChipiSessionError) as exc:
                call()
            assert exc.value.code is ErrorCode.INVALID_STORED_DATA
        with pytest.raises(ChipiSessionError, match="session 'alice'"):
            store.load("alice")


class _FailingConnection:
    """Delegates to a sqlite3 connection but fails statements that match ``needle``."""

    def __init__(self, conn: sqlite3.Connection, needle: str) -> None:
        self._conn = conn
        self._needle = needle

    def execute(self, sql: str, *args: Any) -> Any:
        if self._needle in sql:
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_sqlite_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.save(make_record("alice"))
    entry = make_entry("alice")
    store.journal_append(entry)
    real = store._conn
    store._conn = _FailingConnection(real, "DELETE FROM journal")  # type: ignore[assignment]  # the 2nd statement of delete
    with pytest.raises(ChipiSessionError) as exc:
        store.delete("alice")
    assert exc.value.code is ErrorCode.BACKEND_UNAVAILABLE and exc.value.retryable
    store._conn = real
    assert store.load("alice") == make_record("alice")  # the 1st statement was rolled back
    assert store.journal_pending() == [entry]
    store.delete("alice")  # and the connection is usable (no transaction left open)
    assert store.load_all() == [] and store.journal_pending() == []
    store.close()


_CRASH_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from chipi_session.stores import SessionRecord, SqliteStore
    store = SqliteStore(sys.argv[1])
    store.save(SessionRecord.from_json(json.loads(sys.argv[2])))  # committed
    conn = store._conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM sessions")
    conn.execute("INSERT INTO sessions (key, json) VALUES ('half', 'written')")
    os._exit(3)  # crash mid-transaction, without closing anything
    """
)


def test_sqlite_survives_a_crash_mid_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with SqliteStore(path) as store:
        store.save(make_record("alice"))
    bob = make_record("bob", 1)
    result = subprocess.run(
        [sys.executable, "-c", _CRASH_CHILD, str(path), json.dumps(bob.to_json())],
        timeout=60,
        capture_output=True,
    )
    assert result.returncode == 3, result.stderr.decode()
    with SqliteStore(path) as store:
        assert sorted(r.key for r in store.load_all()) == ["alice", "bob"]
        assert store.load("bob") == bob


# -- concurrency ---------------------------------------------------------------------------


def test_threads_share_a_store(store: Any) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                key = f"t{n}"
                store.save(make_record(key, i))
                entry = make_entry(key)
                store.journal_append(entry)
                store.journal_update(attrs.evolve(entry, outside_nonce=i))
                if i % 2:
                    store.journal_remove(entry.entry_id)
                store.acquire_lease("shared", f"owner{n}", 5, float(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(store.load_all()) == 6
    pending = store.journal_pending()
    assert len(pending) == 6 * 8 and len({e.entry_id for e in pending}) == len(pending)
    for n in range(6):
        nonces = [e.outside_nonce for e in store.journal_pending(f"t{n}")]
        assert nonces == list(range(0, 15, 2))


def test_sqlite_lease_is_exclusive_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    check_lease_race(
        tmp_path,
        lambda: SqliteStore(path),
        f"""
        from chipi_session.stores import SqliteStore
        store = SqliteStore({str(path)!r}, timeout=20)
        """,
    )


# -- a stateful model test -----------------------------------------------------------------

MODEL_KEYS = st.sampled_from(["alice", "bob", "carol"])
MODEL_OWNERS = st.sampled_from(["p1", "p2"])


class StoreModel(RuleBasedStateMachine):
    """Random operations against a store and a dict model; reopening must change nothing."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="chipi-store-test-"))
        self.opener = Opener(self.kind, self.directory)
        self.store = self.opener.open()
        self.sessions: dict[str, SessionRecord] = {}
        self.journal: dict[str, JournalEntry] = {}
        self.leases: dict[str, Lease] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(
        key=MODEL_KEYS,
        variant=st.integers(0, 7),
        seen=st.booleans(),
        max_calls=st.none() | st.integers(0, 2**32 - 1),
        entrypoints=st.lists(st.integers(0, 2**251), max_size=2),
        updated=st.floats(0, 1e10),
    )
    def save(
        self,
        key: str,
        variant: int,
        seen: bool,
        max_calls: int | None,
        entrypoints: list[int],
        updated: float,
    ) -> None:
        record = make_record(
            key,
            variant,
            seen_registered=seen,
            registered_max_calls=max_calls,
            registered_allowed_entrypoints=entrypoints,
            updated_at=updated,
        )
        self.store.save(record)
        self.sessions[key] = record

    @rule(key=MODEL_KEYS)
    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.sessions.pop(key, None)
        self.journal = {i: e for i, e in self.journal.items() if e.key != key}

    @rule(key=MODEL_KEYS, action=st.sampled_from(sorted(JOURNAL_ACTIONS)), t=st.integers(0, 99))
    def append(self, key: str, action: str, t: int) -> None:
        entry = make_entry(key, action, float(t))
        self.store.journal_append(entry)
        self.journal[entry.entry_id] = entry

    @precondition(lambda self: bool(self.journal))
    @rule(data=st.data(), nonce=st.integers(0, 2**128), before=st.integers(0, 2**64 - 1))
    def update(self, data: st.DataObject, nonce: int, before: int) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.journal)))
        entry = attrs.evolve(self.journal[entry_id], outside_nonce=nonce, execute_before=before)
        self.store.journal_update(entry)
        self.journal[entry_id] = entry

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.journal) + ["unknown-id"]))
        self.store.journal_remove(entry_id)
        self.journal.pop(entry_id, None)

    @rule(key=MODEL_KEYS, owner=MODEL_OWNERS, ttl=st.integers(1, 50), now=st.integers(0, 200))
    def acquire(self, key: str, owner: str, ttl: int, now: int) -> None:
        cur = self.leases.get(key)
        held = cur is not None and cur.owner is not None and now < cur.expires_at
        if held and cur is not None and cur.owner != owner:
            expected = None
        elif held and cur is not None:
            expected = cur.token
            self.leases[key] = Lease(owner, cur.token, max(cur.expires_at, now + ttl))
        else:
            expected = 1 if cur is None else cur.token + 1
            self.leases[key] = Lease(owner, expected, float(now + ttl))
        assert self.store.acquire_lease(key, owner, ttl, now) == expected

    @rule(key=MODEL_KEYS, owner=MODEL_OWNERS, ttl=st.integers(1, 50), now=st.integers(0, 200))
    def renew(self, key: str, owner: str, ttl: int, now: int) -> None:
        cur = self.leases.get(key)
        ok = cur is not None and cur.owner == owner and now < cur.expires_at
        if ok and cur is not None:
            self.leases[key] = Lease(owner, cur.token, max(cur.expires_at, now + ttl))
        assert self.store.renew_lease(key, owner, ttl, now) is ok

    @rule(key=MODEL_KEYS, owner=MODEL_OWNERS)
    def release(self, key: str, owner: str) -> None:
        cur = self.leases.get(key)
        if cur is not None and cur.owner == owner:
            self.leases[key] = Lease(None, cur.token, 0.0)
        self.store.release_lease(key, owner)

    @rule()
    def reopen(self) -> None:
        self.store = self.opener.reopen(self.store)

    @invariant()
    def matches_the_model(self) -> None:
        assert {r.key: r for r in self.store.load_all()} == self.sessions
        for key in ("alice", "bob", "carol"):
            assert self.store.load(key) == self.sessions.get(key)
            assert self.store.journal_pending(key) == [
                e for e in self.journal.values() if e.key == key
            ]
            assert self.store.get_lease(key) == self.leases.get(key)
        assert self.store.journal_pending() == list(self.journal.values())


_MODEL_SETTINGS = settings(
    max_examples=8,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


TestMemoryStoreModel = StoreModel.TestCase
TestMemoryStoreModel.settings = _MODEL_SETTINGS


class _JsonModel(StoreModel):
    kind = "json"


TestJsonFileStoreModel = _JsonModel.TestCase
TestJsonFileStoreModel.settings = _MODEL_SETTINGS


class _SqliteModel(StoreModel):
    kind = "sqlite"


TestSqliteStoreModel = _SqliteModel.TestCase
TestSqliteStoreModel.settings = _MODEL_SETTINGS
