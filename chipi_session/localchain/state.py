"""The chain's state: plain dicts behind an undo journal.

Starknet reverts at two granularities the simulator must reproduce: a whole transaction (a
panicking ``__execute__``, an outside execution) and a single inner call of a multicall (the
account catches the failure and carries on, docs/contract.md §5). An undo journal gives both in
O(writes): a checkpoint is a journal length, reverting replays the undo entries above it. Nothing
is copied per transaction, so a chain with thousands of sessions stays cheap; :meth:`snapshot`
copies the dicts when a caller wants a whole-chain checkpoint.

Every map is keyed by plain tuples and holds immutable values (ints, frozen records), so a
shallow copy is a real snapshot. Storage is zero-default like Cairo's: writing the default value
deletes the key, which keeps revoked sessions and cleared whitelists from piling up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import attrs

from ..types import SpendingPolicy
from .model import ChainEvent

__all__ = [
    "Journal",
    "JournaledMap",
    "JournaledLog",
    "SessionRecord",
    "TokenInfo",
    "ChainState",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_MISSING: Any = object()


class _Undoable(Protocol):
    def _undo(self, key: Any, old: Any) -> None: ...


class Journal:
    """Undo entries ``(container, key, old value)``; cleared when the outermost atomic block
    commits."""

    __slots__ = ("entries", "depth")

    def __init__(self) -> None:
        self.entries: list[tuple[_Undoable, Any, Any]] = []
        self.depth = 0

    def checkpoint(self) -> int:
        return len(self.entries)

    def revert(self, checkpoint: int) -> None:
        entries = self.entries
        while len(entries) > checkpoint:
            container, key, old = entries.pop()
            container._undo(key, old)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All writes inside the block happen, or (on any exception) none do."""
        checkpoint = self.checkpoint()
        self.depth += 1
        try:
            yield
        except BaseException:
            self.revert(checkpoint)
            raise
        finally:
            self.depth -= 1
        if self.depth == 0:
            self.entries.clear()

    @contextlib.contextmanager
    def discarding(self) -> Iterator[None]:
        """Whatever happens inside the block, its writes are undone (read-only calls)."""
        checkpoint = self.checkpoint()
        self.depth += 1
        try:
            yield
        finally:
            self.revert(checkpoint)
            self.depth -= 1


class JournaledMap(Generic[K, V]):
    """A dict whose writes can be undone; absent keys read as the map's default."""

    __slots__ = ("_data", "_journal", "_default")

    def __init__(self, journal: Journal, default: V, data: dict[K, V] | None = None) -> None:
        self._journal = journal
        self._default = default
        self._data: dict[K, V] = {} if data is None else data

    def get(self, key: K) -> V:
        return self._data.get(key, self._default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def set(self, key: K, value: V) -> None:
        data = self._data
        old = data.get(key, _MISSING)
        if value == self._default:
            if old is _MISSING:
                return
            del data[key]
        else:
            data[key] = value
        if self._journal.depth:
            self._journal.entries.append((self, key, old))

    def _undo(self, key: K, old: V) -> None:
        if old is _MISSING:
            self._data.pop(key, None)
        else:
            self._data[key] = old

    def copy_data(self) -> dict[K, V]:
        return dict(self._data)


class JournaledLog(Generic[T]):
    """An append-only list whose appends can be undone (the event log)."""

    __slots__ = ("_items", "_journal")

    def __init__(self, journal: Journal, items: list[T] | None = None) -> None:
        self._journal = journal
        self._items: list[T] = [] if items is None else items

    def append(self, item: T) -> None:
        if self._journal.depth:
            self._journal.entries.append((self, None, len(self._items)))
        self._items.append(item)

    def _undo(self, key: None, old: int) -> None:
        del self._items[old:]

    def __len__(self) -> int:
        return len(self._items)

    def since(self, start: int) -> tuple[T, ...]:
        return tuple(self._items[start:])

    def copy_items(self) -> list[T]:
        return list(self._items)


class SessionRecord(NamedTuple):
    """``SessionData`` as stored (docs/contract.md §3); all zero means unknown or revoked."""

    valid_until: int = 0
    max_calls: int = 0
    calls_used: int = 0
    allowed_entrypoints_len: int = 0


@attrs.frozen
class TokenInfo:
    symbol: int
    decimals: int
    name: int


_NO_SESSION = SessionRecord()
_NO_POLICY = SpendingPolicy(0, 0, 0, 0, 0)


class ChainState:
    """All contract storage plus the protocol-level facts (deployments, nonces, events).

    Keys start with the contract address, so one flat map serves every account or token.
    """

    def __init__(self) -> None:
        j = self.journal = Journal()
        #: address -> contract kind ("account" / "erc20"); absent = not deployed
        self.contracts: JournaledMap[int, str] = JournaledMap(j, "")
        self.class_hashes: JournaledMap[int, int] = JournaledMap(j, 0)
        self.protocol_nonces: JournaledMap[int, int] = JournaledMap(j, 0)
        # account storage
        self.owner_keys: JournaledMap[int, int] = JournaledMap(j, 0)
        self.src5: JournaledMap[tuple[int, int], bool] = JournaledMap(j, False)
        self.sessions: JournaledMap[tuple[int, int], SessionRecord] = JournaledMap(j, _NO_SESSION)
        self.entrypoints: JournaledMap[tuple[int, int, int], int] = JournaledMap(j, 0)
        self.policies: JournaledMap[tuple[int, int, int], SpendingPolicy] = JournaledMap(
            j, _NO_POLICY
        )
        self.src9_nonces: JournaledMap[tuple[int, int], bool] = JournaledMap(j, False)
        # ERC-20 storage
        self.token_info: JournaledMap[int, TokenInfo | None] = JournaledMap(j, None)
        self.balances: JournaledMap[tuple[int, int], int] = JournaledMap(j, 0)
        self.allowances: JournaledMap[tuple[int, int, int], int] = JournaledMap(j, 0)
        self.total_supply: JournaledMap[int, int] = JournaledMap(j, 0)
        # protocol
        self.events: JournaledLog[ChainEvent] = JournaledLog(j)

    def _maps(self) -> dict[str, JournaledMap[Any, Any]]:
        return {k: v for k, v in vars(self).items() if isinstance(v, JournaledMap)}

    def snapshot(self) -> dict[str, Any]:
        """A detached copy of every map (values are immutable, so shallow copies suffice)."""
        if self.journal.depth:
            raise RuntimeError("cannot snapshot inside a transaction")
        out: dict[str, Any] = {name: m.copy_data() for name, m in self._maps().items()}
        out["events"] = self.events.copy_items()
        return out

    def restore(self, snapshot: dict[str, Any]) -> None:
        if self.journal.depth:
            raise RuntimeError("cannot restore inside a transaction")
        for name, m in self._maps().items():
            m._data = dict(snapshot[name])
        self.events._items = list(snapshot["events"])
        self.journal.entries.clear()
