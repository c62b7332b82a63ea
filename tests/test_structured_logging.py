"""Structured logging (docs/observability.md, "Logging"): every record of the library made
inside an action carries the session's public key, the hub's slot, the wallet, the action and
(once known) the transaction hash as ``extra`` fields; records outside any session carry
``None``; concurrent sessions never see each other's fields; no secret reaches any record.

Ground truth for "the right session": a LocalChain whose backend methods log, through a logger
of their own with :class:`ContextFilter`, the wallet and session key they were *called with*;
the fields stamped on that record must name the same wallet, key and action.
"""

from __future__ import annotations

import json
import logging
import pkgutil
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import chipi_session
from chipi_session import (
    Call,
    ChipiSession,
    ManualClock,
    RenewalPolicy,
    SessionHub,
    SessionState,
    SqliteStore,
    WalletData,
)
from chipi_session.felts import to_hex
from chipi_session.keys import SecretKey, generate_private_key
from chipi_session.localchain import LocalChain
from chipi_session.logs import FIELDS, ContextFilter, bind, get_logger
from chipi_session.vault import KdfCost, Vault

from .helpers import RECIPIENT, eventually, secret_text_forms, settle

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
PIN = "pin-9d7c1e-never-logged"
BEARER = "bearer-4f0a2c-never-logged"
START = 1_000_000

_trace = logging.getLogger("tests.structured_logging.trace")
_trace.addFilter(ContextFilter())  # a user's own logger, stamped the same way


def _trace_call(method: str, wallet: int, key: int | None, tx: str | None = None) -> None:
    _trace.debug(
        "%s wallet=%s key=%s tx=%s",
        method,
        to_hex(wallet),
        None if key is None else to_hex(key),
        tx,
        extra={"called": (method, to_hex(wallet), None if key is None else to_hex(key), tx)},
    )


class TracedChain(LocalChain):
    """A LocalChain whose backend methods say whom they were called for (and yield once
    first, so concurrent sessions really interleave)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wallet_of_tx: dict[str, int] = {}

    async def add_or_update_session_key(
        self, wallet: WalletData, owner_key: SecretKey, **kw: Any
    ) -> str:
        _trace_call("register", wallet.address, kw["session_public_key"])
        await anyio.lowlevel.checkpoint()
        return await super().add_or_update_session_key(wallet, owner_key, **kw)

    async def revoke_session_key(self, wallet: WalletData, owner_key: SecretKey, **kw: Any) -> str:
        _trace_call("revoke", wallet.address, kw["session_public_key"])
        await anyio.lowlevel.checkpoint()
        return await super().revoke_session_key(wallet, owner_key, **kw)

    async def execute_with_session(
        self, wallet: WalletData, session_key: SecretKey, **kw: Any
    ) -> str:
        _trace_call("execute", wallet.address, session_key.public_key)
        await anyio.lowlevel.checkpoint()
        tx = await super().execute_with_session(wallet, session_key, **kw)
        self.wallet_of_tx[tx] = wallet.address
        return tx

    async def get_execution_result(self, tx_hash: str) -> Any:
        _trace_call("result", self.wallet_of_tx.get(tx_hash, 0), None, tx_hash)
        return await super().get_execution_result(tx_hash)

    async def get_session_status(self, wallet_address: int, session_public_key: int) -> Any:
        _trace_call("status", wallet_address, session_public_key)
        await anyio.lowlevel.checkpoint()
        return await super().get_session_status(wallet_address, session_public_key)


class TracedStore(SqliteStore):
    """A SqliteStore (run in worker threads by the hub) whose journal says which slot and
    action each entry is for, and which thread wrote it."""

    def journal_append(self, entry: Any, *, fencing_token: int | None = None) -> None:
        _trace.debug("journal %s %s", entry.key, entry.action, extra={"journal": entry})
        super().journal_append(entry, fencing_token=fencing_token)


#: which actions may call which traced backend method
CALLED_BY = {
    "register": {"register"},
    "revoke": {"revoke"},
    "execute": {"execute"},
    "result": {"execute"},
    "status": {"refetch_status", "open"},
}


class Keys:
    """A key source that remembers every session private key it hands out (for the scan)."""

    def __init__(self) -> None:
        self.issued: list[int] = []

    def __call__(self) -> int:
        key = generate_private_key()
        self.issued.append(key)
        return key


class Setup:
    def __init__(self) -> None:
        self.clock = ManualClock(START)
        self.vault = Vault(KdfCost.FAST_FOR_TESTS)
        self.chain = TracedChain(clock=self.clock, vault=self.vault)
        self.owner_keys = [generate_private_key(), generate_private_key()]
        self.wallets = [self.chain.create_wallet(PIN, private_key=k) for k in self.owner_keys]
        self.token = self.chain.deploy_token("USDC", 6)
        for wallet in self.wallets:
            self.chain.mint(self.token, wallet.address, 1_000_000)
        self.keys = Keys()

    def transfer(self, amount: int = 10) -> Call:
        return Call(to=self.token, selector="transfer", calldata=[RECIPIENT, amount, 0])

    def session(self, wallet: WalletData) -> ChipiSession:
        return ChipiSession(
            wallet=wallet,
            encrypt_key=PIN,
            backend=self.chain,
            clock=self.clock,
            vault=self.vault,
            key_source=self.keys,
            auto_check_status=False,
        )


def library(records: Sequence[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records of the library and of the trace logger (which carries the same fields)."""
    return [r for r in records if r.name.startswith(("chipi_session", _trace.name))]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS}


def check_called(record: logging.LogRecord) -> None:
    """A traced backend call: the stamped fields name whom it was called for."""
    method, wallet, key, tx = record.called
    assert record.chipi_wallet == wallet, (record.getMessage(), fields(record))
    assert record.chipi_action in CALLED_BY[method], (record.getMessage(), fields(record))
    if key is not None:
        assert record.chipi_session_key == key, (record.getMessage(), fields(record))
    if tx is not None:
        assert record.chipi_tx_hash == tx, (record.getMessage(), fields(record))


class Records(Sequence[logging.LogRecord]):
    """caplog's records of the running test phase, read live (caplog swaps its list per phase)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __len__(self) -> int:
        return len(self._caplog.records)

    def __getitem__(self, index: Any) -> Any:
        return self._caplog.records[index]


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Records:
    caplog.set_level(logging.DEBUG)
    return Records(caplog)


async def test_a_session_s_records_carry_its_key_wallet_action_and_tx(
    records: Records,
) -> None:
    world = Setup()
    wallet = to_hex(world.wallets[0].address)
    before = len(records)
    outside = library(records[:before])
    assert all(fields(r) == dict.fromkeys(FIELDS) for r in outside)

    async def run(action: str, coro: Any) -> tuple[Any, list[logging.LogRecord]]:
        start = len(records)
        result = await coro
        got = library(records[start:])
        assert got, f"{action} made no record at DEBUG"
        for record in got:
            assert record.chipi_action == action, (record.getMessage(), fields(record))
            assert record.chipi_wallet == wallet and record.chipi_slot is None
            if hasattr(record, "called"):
                check_called(record)
            if record.name.endswith("localchain.chain") and str(record.msg).startswith("block"):
                assert record.chipi_tx_hash == record.args[1]  # the chain names its block's tx
        return result, got

    async with world.session(world.wallets[0]) as session:
        data, got = await run("create", session.create_session(3600))
        key = to_hex(data.public_key)
        assert {r.chipi_session_key for r in got} <= {None, key}
        assert any(r.chipi_session_key == key for r in got)  # read when the record is made
        tx, got = await run("register", session.register_session(max_calls=5))
        assert {r.chipi_session_key for r in got} == {key}
        assert {r.chipi_tx_hash for r in got} <= {None, tx}
        assert any(r.chipi_tx_hash == tx for r in got)  # records after the write name it
        assert any(str(r.msg).startswith("block") and r.args[1] == tx for r in got)
        result, got = await run(
            "execute", session.execute_with_session(world.transfer(), wait=True)
        )
        assert {r.chipi_session_key for r in got} == {key}
        assert any(r.chipi_tx_hash == result.tx_hash for r in got)
        assert {r.chipi_tx_hash for r in got} <= {None, result.tx_hash}
        tx, got = await run("revoke", session.revoke_session())
        assert {r.chipi_session_key for r in got} == {key}
        assert any(r.chipi_tx_hash == tx for r in got)
    # outside any session again: the chain's own records name nobody
    start = len(records)
    await world.chain.get_session_status(world.wallets[0].address, data.public_key)
    after = library(records[start:])
    assert after and all(fields(r) == dict.fromkeys(FIELDS) for r in after)


async def test_caller_extra_wins_and_loggers_are_stamped(
    records: Records,
) -> None:
    log = get_logger("chipi_session.tests_probe")
    assert get_logger("chipi_session.tests_probe").filters.count(log.filters[0]) == 1  # once
    with bind(slot="mine", action="outer"):
        log.info("probe", extra={"chipi_action": "from-caller"})
    log.info("after")
    probe, after = library(records)[-2:]
    assert probe.chipi_action == "from-caller" and probe.chipi_slot == "mine"
    assert fields(after) == dict.fromkeys(FIELDS)


def test_every_library_logger_is_made_by_get_logger() -> None:
    """A module that used plain ``logging.getLogger`` would make records without the fields."""
    plain = []
    for path in sorted((ROOT / "chipi_session").rglob("*.py")):
        if path.name == "logs.py":
            continue
        for line in path.read_text().splitlines():
            if re.search(r"logging\.getLogger\(", line) and "setLevel" not in line:
                plain.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not plain, plain
    for module in pkgutil.walk_packages(chipi_session.__path__, "chipi_session."):
        try:
            __import__(module.name)
        except ImportError:  # an optional extra that is not installed
            continue
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("chipi_session.") and isinstance(logger, logging.Logger):
            assert any(isinstance(f, ContextFilter) for f in logger.filters), name


@pytest.mark.parametrize("with_store", [False, True], ids=["no-store", "sqlite"])
async def test_two_hub_slots_concurrently_never_cross_talk(
    records: Records, tmp_path: Path, with_store: bool
) -> None:
    """With a SqliteStore the journal's writes run in worker threads: they carry the fields
    too (anyio copies the context into them)."""
    world = Setup()
    slots = {"alice": world.wallets[0], "bob": world.wallets[1]}
    keys: dict[str, set[str]] = {slot: set() for slot in slots}
    store = TracedStore(tmp_path / "hub.db") if with_store else None
    start = len(records)
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, store=store
    ) as hub:

        async def worker(slot: str) -> None:
            session = await hub.open(
                key=slot,
                wallet=slots[slot],
                encrypt_key=PIN,
                key_source=world.keys,
                auto_check_status=False,
            )
            for _ in range(2):
                data = await session.create_session(3600)
                keys[slot].add(to_hex(data.public_key))
                await session.register_session(max_calls=10)
                await session.execute_with_session(world.transfer(), wait=True)
                await session.execute_with_session([world.transfer(1), world.transfer(2)])
                await session.refetch_status()
                await session.revoke_session()
            await hub.close(session)

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, "alice")
            tg.start_soon(worker, "bob")
    got = library(records[start:])
    traced = [r for r in got if hasattr(r, "called")]
    assert len(traced) >= 2 * 2 * 6
    order = [r.chipi_slot for r in traced]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches >= 4, order  # the two sessions really ran interleaved
    for record in got:
        slot = record.chipi_slot
        assert slot in slots, (record.getMessage(), fields(record))
        assert record.chipi_wallet == to_hex(slots[slot].address), fields(record)
        assert record.chipi_action is not None, (record.getMessage(), fields(record))
        if record.chipi_session_key is not None:
            assert record.chipi_session_key in keys[slot], fields(record)
        if hasattr(record, "called"):
            check_called(record)
    actions = {r.chipi_action for r in got}
    assert {"create", "register", "execute", "revoke", "refetch_status"} <= actions
    journal = [r for r in got if hasattr(r, "journal")]
    assert bool(journal) is with_store
    for record in journal:
        assert record.chipi_slot == record.journal.key, fields(record)
        assert record.chipi_action == record.journal.action, fields(record)
        assert record.chipi_session_key == to_hex(record.journal.session_public_key)
    if with_store:  # written from anyio's worker threads, stamped all the same
        assert all(r.threadName != "MainThread" for r in journal)


def _json_formatter() -> type[logging.Formatter]:
    """The JSON formatter docs/observability.md shows (the block defining JsonFormatter)."""
    text = (ROOT / "docs" / "observability.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    code = next(b for b in blocks if "class JsonFormatter" in b)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/observability.md", "exec"), namespace)  # noqa: S102 (our docs)
    formatter: type[logging.Formatter] = namespace["JsonFormatter"]
    return formatter


async def test_json_formatter_round_trip(records: Records) -> None:
    formatter = _json_formatter()()
    world = Setup()
    start = len(records)
    async with world.session(world.wallets[0]) as session:
        data = await session.create_session(3600)
        tx = await session.register_session(max_calls=5)
    got = library(records[start:])
    assert got
    for record in got:
        entry = json.loads(formatter.format(record))
        assert entry["message"] == record.getMessage()
        assert entry["logger"] == record.name and entry["level"] == record.levelname
        assert {name: entry[name] for name in FIELDS} == fields(record)
    entries = [json.loads(formatter.format(r)) for r in got]
    assert any(
        e["chipi_action"] == "register"
        and e["chipi_session_key"] == to_hex(data.public_key)
        and e["chipi_tx_hash"] == tx
        and e["chipi_wallet"] == to_hex(world.wallets[0].address)
        for e in entries
    )


def _texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could print of a record: message, format, args, every extra."""
    texts = [record.getMessage(), str(record.msg), repr(record.args)]
    texts += [repr(value) for value in vars(record).values()]
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def _assert_no_secret(
    records: Sequence[logging.LogRecord], ints: list[int], strings: list[str]
) -> None:
    assert records
    forms = [form for value in ints for form in secret_text_forms(value)] + strings
    for record in records:
        for text in _texts(record):
            for form in forms:
                assert form not in text, (record.name, record.getMessage())


async def test_no_secret_in_any_record_at_debug(records: Records) -> None:
    world = Setup()
    start = len(records)
    async with SessionHub(backend=world.chain, clock=world.clock, vault=world.vault) as hub:
        session = await hub.open(
            key="alice", wallet=world.wallets[0], encrypt_key=PIN, key_source=world.keys
        )
        await session.create_session(3600)
        await session.register_session(max_calls=2)
        await session.execute_with_session(world.transfer(), wait=True)
        await session.execute_with_session(world.transfer())
        with pytest.raises(chipi_session.ChipiSessionError):
            await session.execute_with_session(world.transfer())  # budget spent: refused
        await session.revoke_session()
        await hub.close(session)
    assert world.keys.issued
    _assert_no_secret(records[start:], world.keys.issued + world.owner_keys, [PIN])


async def test_no_secret_over_http_at_debug(records: Records) -> None:
    """Through ChipiApiBackend and a localnet: the API key and the bearer token too (every
    logger, httpx's and the server's included)."""
    pytest.importorskip("chipi_session.localnet")
    from chipi_session import ChipiApiBackend
    from chipi_session.localnet import LocalnetServer

    clock = ManualClock(1_800_000_000)
    owner = generate_private_key()
    keys = Keys()

    async def bearer() -> str:
        return BEARER

    with LocalnetServer(clock=clock, kdf_cost=KdfCost.FAST_FOR_TESTS) as server:
        with server.locked() as chain:
            wallet = chain.create_wallet(PIN, private_key=owner)
            token = chain.deploy_token("TKN", 6)
            chain.mint(token, wallet.address, 10**9)
        start = len(records)
        async with ChipiApiBackend(
            server.api_key, base_url=server.url, rpc_url=server.rpc_url, clock=clock, timeout=5.0
        ) as backend:
            async with ChipiSession(
                wallet=wallet,
                encrypt_key=PIN,
                backend=backend,
                get_bearer_token=bearer,
                clock=clock,
                vault=Vault(KdfCost.FAST_FOR_TESTS),
                key_source=keys,
                auto_check_status=False,
            ) as session:
                await session.create_session(3600)
                await session.register_session(max_calls=3)
                await session.execute_with_session(
                    Call(to=token, selector="transfer", calldata=[RECIPIENT, 5, 0]), wait=True
                )
                await session.refetch_status()
                await session.revoke_session()
        got = records[start:]
        api_key = server.api_key
    assert any(
        r.name.startswith("chipi_session.backends") or r.name.startswith("chipi_session.http")
        for r in got
    )
    _assert_no_secret(got, keys.issued + [owner], [PIN, BEARER, api_key])
    client = [r for r in got if r.name.startswith(("chipi_session.http", "chipi_session.backends"))]
    for record in client:  # the client's records, made inside the session's actions
        assert record.chipi_wallet == to_hex(wallet.address), (record.getMessage(), fields(record))
        assert record.chipi_action is not None, (record.getMessage(), fields(record))
    submitted = [r for r in client if "submitted" in str(r.msg)]
    assert [r.args[0] for r in submitted] == ["register", "execute", "revoke"]
    for record in submitted:
        assert record.chipi_tx_hash == record.args[2] and record.chipi_action == record.args[0]
    served = [r for r in got if r.name.startswith("chipi_session.localnet")]
    assert served and all(fields(r) == dict.fromkeys(FIELDS) for r in served)  # its thread


async def test_background_work_carries_its_slot_and_names_itself(
    records: Records,
) -> None:
    """Work a shared timer or the shared poller starts — a renewal and the revoke of the key
    it replaced, an expiry, a status read finding the session revoked — carries the session's
    slot, wallet and (current) key, with its own action name."""
    world = Setup()
    slots = {"alice": world.wallets[0], "bob": world.wallets[1]}
    keys: dict[str, set[str]] = {}
    policy = RenewalPolicy(min_remaining_seconds=60, duration_seconds=600)
    owner_bob = SecretKey(world.owner_keys[1])
    async with SessionHub(
        backend=world.chain, clock=world.clock, vault=world.vault, status_interval=30
    ) as hub:
        alice = await hub.open(
            key="alice",
            wallet=slots["alice"],
            encrypt_key=PIN,
            key_source=world.keys,
            auto_check_status=False,
            renewal=policy,
        )
        bob = await hub.open(key="bob", wallet=slots["bob"], encrypt_key=PIN, key_source=world.keys)
        carol = await hub.open(
            key="carol",
            wallet=slots["alice"],
            encrypt_key=PIN,
            key_source=world.keys,
            auto_check_status=False,
        )
        for slot, session in (("alice", alice), ("bob", bob), ("carol", carol)):
            data = await session.create_session(300)
            keys.setdefault(slot, set()).add(to_hex(data.public_key))
            await session.register_session(max_calls=10)
        first = alice.session
        assert first is not None and bob.session is not None
        await world.chain.revoke_session_key(
            slots["bob"], owner_bob, session_public_key=bob.session.public_key
        )
        start = len(records)
        world.clock.advance(30)  # the poller finds bob revoked
        await settle()
        assert bob.session_state is SessionState.REVOKED
        world.clock.set(first.valid_until - 60)  # alice renews, then revokes her first key
        await eventually(lambda: alice.session.public_key != first.public_key)  # type: ignore[union-attr]
        await eventually(lambda: not alice.is_renewing and not alice.retiring_keys)
        keys["alice"].add(to_hex(alice.session.public_key))  # type: ignore[union-attr]
        world.clock.set(first.valid_until + 1)  # carol's first (and only) key expires
        await settle()
        assert carol.session_state is SessionState.EXPIRED
    got = [r for r in library(records[start:]) if r.chipi_slot is not None]
    by_action: dict[str, set[str]] = {}
    for record in got:
        slot = record.chipi_slot
        wallet = world.wallets[1] if slot == "bob" else world.wallets[0]
        assert record.chipi_wallet == to_hex(wallet.address), fields(record)
        assert record.chipi_session_key in keys[slot], (record.getMessage(), fields(record))
        by_action.setdefault(record.chipi_action, set()).add(slot)
        if hasattr(record, "called") and record.called[0] not in ("register", "revoke"):
            check_called(record)  # renewal's writes name the successor / the old key
    assert by_action.get("status_poll") == {"bob"}, by_action
    assert by_action.get("renew") == {"alice"}, by_action
    assert by_action.get("revoke_previous") == {"alice"}, by_action
    assert by_action.get("expire") == {"carol"}, by_action


async def test_a_slot_opened_inside_another_session_s_context_is_its_own(
    records: Records,
) -> None:
    """Opening (and then using) slot bob from code running under alice's context: bob's
    records name bob only."""
    world = Setup()
    async with SessionHub(backend=world.chain, clock=world.clock, vault=world.vault) as hub:
        alice = await hub.open(key="alice", wallet=world.wallets[0], encrypt_key=PIN)
        await alice.create_session(3600)
        start = len(records)
        with bind(owner=alice, slot="alice", action="execute"):
            bob = await hub.open(
                key="bob", wallet=world.wallets[1], encrypt_key=PIN, auto_check_status=False
            )
            data = await bob.create_session(3600)
            await bob.register_session(max_calls=2)
    got = [r for r in library(records[start:]) if r.chipi_action != "close"]
    assert got
    for record in got:
        assert record.chipi_slot == "bob", fields(record)
        assert record.chipi_wallet == to_hex(world.wallets[1].address), fields(record)
        assert record.chipi_session_key in (None, to_hex(data.public_key)), fields(record)


def test_every_logger_name_is_documented() -> None:
    """docs/observability.md's "Loggers and levels" names every logger of the package."""
    docs = (ROOT / "docs" / "observability.md").read_text()
    names = set()
    for path in (ROOT / "chipi_session").rglob("*.py"):
        for arg in re.findall(r"get_logger\(([^)]*)\)", path.read_text()):
            if arg == "__name__":
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            elif arg.startswith('"'):
                names.add(arg.strip('"'))
    assert "chipi_session.engine" in names
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, missing
