"""``chipi-session watch``: a terminal view of a localnet's or a hub store's sessions.

Why: a developer debugging a bot wants to see, while it runs, which sessions exist, in which
state, how many calls and how much time each has left, and what was sent last, without adding
prints to the bot. Two sources:

* ``--rpc URL`` of a ``chipi-session localnet``: every session stored on the chain (from
  ``devnet_dump``, chipi_session/localnet/devnet.py) and the latest transactions. A revoked
  session is deleted from the contract's storage, so it no longer shows.
* ``--store PATH`` of a hub (``SqliteStore`` ``.db``/``.sqlite``, else ``JsonFileStore``): every
  slot with its session; with ``--rpc`` too, each session's on-chain calls and state.

The view redraws in place every ``--interval`` seconds (ANSI "home + clear"), until Ctrl-C or
``--iterations`` frames. Reads only: it never writes to the chain or the store.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs
import httpx

from .errors import ChipiSessionError
from .felts import selector, to_hex
from .lifecycle import derive_state
from .types import SessionStatus

__all__ = ["Row", "Snapshot", "read_localnet", "read_store", "render", "run", "main"]

CLEAR = "\x1b[H\x1b[2J"
_RECENT = 8


@attrs.frozen
class Row:
    """One session in the view (``calls_used`` / ``max_calls`` None when unknown)."""

    slot: str
    wallet: int
    public_key: int
    state: str
    calls_used: int | None
    max_calls: int | None
    valid_until: int


@attrs.frozen
class Snapshot:
    """Everything one frame shows, read at chain (or wall) time ``now``."""

    source: str
    now: int
    block_number: int | None
    rows: tuple[Row, ...]
    #: (tx hash, block number, status), newest first
    transactions: tuple[tuple[str, int, str], ...] = ()


class _Rpc:
    def __init__(self, url: str, client: httpx.Client) -> None:
        self.url, self.client = url, client

    def __call__(self, method: str, params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        answer = self.client.post(self.url, json=body).json()
        if "error" in answer:
            raise ValueError(f"{method}: {answer['error'].get('message')}")
        return answer["result"]

    def block(self) -> tuple[int, int]:
        block = self("starknet_getBlockWithTxHashes", {"block_id": "latest"})
        return int(block["timestamp"]), int(block["block_number"])

    def status(self, wallet: int, public_key: int) -> SessionStatus:
        request = {
            "contract_address": to_hex(wallet),
            "entry_point_selector": to_hex(selector("get_session_data")),
            "calldata": [to_hex(public_key)],
        }
        felts = self("starknet_call", {"request": request, "block_id": "latest"})
        values = [int(x, 16) for x in felts]
        return SessionStatus(values[0], values[1], values[2])


def _state(status: SessionStatus, now: int, valid_until: int, seen: bool) -> str:
    state, reason = derive_state(status, now, local_valid_until=valid_until, seen_registered=seen)
    return f"{state.value} ({reason})" if state.value == "expired" else state.value


def read_localnet(url: str, client: httpx.Client) -> Snapshot:
    """Every session on a localnet's chain, and its latest transactions."""
    from .localchain import LocalChain
    from .localnet.devnet import state_from_json

    rpc = _Rpc(url, client)
    dump = rpc("devnet_dump", {})
    now, block_number = rpc.block()
    scratch = LocalChain(chain_id=int(dump["chainId"], 16))  # decode into a private copy
    state_from_json(scratch, dump)
    snapshot = scratch.snapshot()
    rows = []
    for (wallet, public_key), record in sorted(snapshot.state["sessions"].items()):
        status = SessionStatus(record.valid_until, record.max_calls, record.calls_used)
        rows.append(
            Row("-", wallet, public_key, _state(status, now, record.valid_until, True),
                record.calls_used, record.max_calls, record.valid_until)
        )  # fmt: skip
    receipts = sorted(snapshot.receipts.values(), key=lambda r: r.block_number, reverse=True)
    txs = tuple((r.tx_hash, r.block_number, r.status) for r in receipts[:_RECENT])
    return Snapshot(f"localnet {url}", now, block_number, tuple(rows), txs)


def read_store(path: str, rpc_url: str | None, client: httpx.Client) -> Snapshot:
    """Every slot of a hub's store; with ``rpc_url``, each session's state on chain."""
    from .stores import JsonFileStore, SessionStore, SqliteStore

    store: SessionStore = (
        SqliteStore(path) if path.endswith((".db", ".sqlite", ".sqlite3")) else JsonFileStore(path)
    )
    try:
        records = store.load_all()
    finally:
        store.close()
    rpc = _Rpc(rpc_url, client) if rpc_url else None
    now, block_number = rpc.block() if rpc else (int(time.time()), None)
    rows = []
    for record in sorted(records, key=lambda r: r.key):
        session = record.session
        if session is None:
            rows.append(Row(record.key, record.wallet.address, 0, "none", None, None, 0))
            continue
        if rpc is None:
            state = "registered" if record.seen_registered else "created"
            used, cap = None, record.registered_max_calls
        else:
            status = rpc.status(record.wallet.address, session.public_key)
            state = _state(status, now, session.valid_until, record.seen_registered)
            used, cap = status.calls_used, status.max_calls
        rows.append(
            Row(record.key, record.wallet.address, session.public_key, state, used, cap,
                session.valid_until)
        )  # fmt: skip
    return Snapshot(f"store {path}", now, block_number, tuple(rows))


def _short(value: int) -> str:
    text = to_hex(value)
    return text if len(text) <= 14 else f"{text[:8]}…{text[-4:]}"


def _left(valid_until: int, now: int) -> str:
    seconds = valid_until - now
    if seconds < 0:
        return "past"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def render(snapshot: Snapshot) -> str:
    """One frame of the view (plain text, no escape codes)."""
    counts: dict[str, int] = {}
    for row in snapshot.rows:
        key = row.state.split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    block = "" if snapshot.block_number is None else f"  block {snapshot.block_number}"
    lines = [
        f"chipi-session watch — {snapshot.source}",
        f"time {snapshot.now}{block}  sessions {len(snapshot.rows)}: "
        + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"),
        "",
        f"{'slot':<12} {'wallet':<14} {'session key':<14} {'state':<16} {'calls':>9} {'left':>8}",
    ]
    for r in snapshot.rows:
        calls = (
            "?"
            if r.max_calls is None
            else f"{r.calls_used if r.calls_used is not None else '?'}/{r.max_calls}"
        )
        left = _left(r.valid_until, snapshot.now) if r.valid_until else "-"
        lines.append(
            f"{r.slot[:12]:<12} {_short(r.wallet):<14} {_short(r.public_key):<14} "
            f"{r.state:<16} {calls:>9} {left:>8}"
        )
    if snapshot.transactions:
        lines += ["", "recent transactions:"]
        lines += [f"  block {b:>5}  {_short(int(h, 16))}  {s}" for h, b, s in snapshot.transactions]
    return "\n".join(lines) + "\n"


def run(
    read: Callable[[], Snapshot],
    out: TextIO,
    *,
    interval: float = 1.0,
    iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw ``render(read())`` in place every ``interval`` seconds; returns frames drawn."""
    frames = 0
    while iterations is None or frames < iterations:
        if frames:
            sleep(interval)
        try:
            text = render(read())
        except (httpx.HTTPError, ChipiSessionError, ValueError, KeyError) as exc:
            text = f"chipi-session watch: cannot read: {exc}\n"
        out.write(CLEAR + text)
        out.flush()
        frames += 1
    return frames


def main(argv: Sequence[str] | None = None) -> int:
    """``chipi-session watch``; returns the exit status."""
    p = argparse.ArgumentParser(prog="chipi-session watch", description=__doc__.splitlines()[0])
    p.add_argument("--rpc", metavar="URL", help="a localnet's JSON-RPC URL")
    p.add_argument("--store", metavar="PATH", help="a hub's SqliteStore / JsonFileStore file")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    p.add_argument("--iterations", type=int, default=None, help="stop after this many frames")
    args = p.parse_args(argv)
    if not args.rpc and not args.store:
        p.error("give --rpc URL, --store PATH, or both")
    with httpx.Client(timeout=10) as client:
        if args.store:

            def read() -> Snapshot:
                return read_store(args.store, args.rpc, client)
        else:

            def read() -> Snapshot:
                return read_localnet(args.rpc, client)

        try:
            run(read, sys.stdout, interval=args.interval, iterations=args.iterations)
        except KeyboardInterrupt:
            pass
    return 0
