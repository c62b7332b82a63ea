"""Cairo Serde for entrypoint arguments and return values.

Contracts read their calldata through :class:`Calldata`, which fails the way the code Cairo
generates for an ``#[external]`` function does: a parameter that cannot be deserialized (too few
felts, a ``u64`` >= 2**64, an address >= 2**251...) panics ``'Failed to deserialize param #i'``
and leftover felts panic ``'Input too long for arguments'``. Out-of-range calldata therefore
behaves on LocalChain as on Starknet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import attrs

from ..felts import ADDRESS_BOUND, U128_BOUND, join_u256
from ..types import Call
from .model import ContractPanic

__all__ = [
    "ADDRESS_BOUND",
    "Calldata",
    "OutsideExecution",
    "encode_calls",
    "encode_spans",
    "decode_spans",
]

_U8 = 2**8
_U32 = 2**32
_U64 = 2**64

R = TypeVar("R")


class _Short(Exception):
    """Calldata ran out, or a value is out of range for its type."""


@attrs.frozen
class OutsideExecution:
    """SNIP-9 v2 ``OutsideExecution`` (docs/contract.md §6)."""

    caller: int
    nonce: int
    execute_after: int
    execute_before: int
    calls: tuple[Call, ...]


class Calldata:
    """Reads one entrypoint's arguments in order; each public read is one parameter."""

    __slots__ = ("_data", "_pos", "_param")

    def __init__(self, data: Sequence[int]) -> None:
        self._data = data
        self._pos = 0
        self._param = 0

    # -- raw reads (no parameter accounting) ------------------------------------------------

    def _next(self) -> int:
        if self._pos >= len(self._data):
            raise _Short
        value = self._data[self._pos]
        self._pos += 1
        return value

    def _bounded(self, bound: int) -> int:
        value = self._next()
        if value >= bound:
            raise _Short
        return value

    def _felts(self) -> tuple[int, ...]:
        n = self._next()
        if n > len(self._data) - self._pos:
            raise _Short
        out = tuple(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def _call(self) -> Call:
        to = self._bounded(ADDRESS_BOUND)
        sel = self._next()
        return Call(to=to, selector=sel, calldata=self._felts())

    def _calls(self) -> tuple[Call, ...]:
        n = self._next()
        if n > len(self._data) - self._pos:  # each call takes at least 3 felts
            raise _Short
        return tuple(self._call() for _ in range(n))

    def _param_read(self, read: Callable[[], R]) -> R:
        self._param += 1
        try:
            return read()
        except _Short:
            raise ContractPanic(f"Failed to deserialize param #{self._param}") from None

    # -- parameters ---------------------------------------------------------------------------

    def felt(self) -> int:
        return self._param_read(self._next)

    def address(self) -> int:
        return self._param_read(lambda: self._bounded(ADDRESS_BOUND))

    def u8(self) -> int:
        return self._param_read(lambda: self._bounded(_U8))

    def u32(self) -> int:
        return self._param_read(lambda: self._bounded(_U32))

    def u64(self) -> int:
        return self._param_read(lambda: self._bounded(_U64))

    def u128(self) -> int:
        return self._param_read(lambda: self._bounded(U128_BOUND))

    def u256(self) -> int:
        def read() -> int:
            low = self._bounded(U128_BOUND)
            return join_u256(low, self._bounded(U128_BOUND))

        return self._param_read(read)

    def felts(self) -> tuple[int, ...]:
        """``Array<felt252>`` / ``Span<felt252>``."""
        return self._param_read(self._felts)

    def calls(self) -> tuple[Call, ...]:
        """``Array<Call>`` / ``Span<Call>``."""
        return self._param_read(self._calls)

    def outside_execution(self) -> OutsideExecution:
        def read() -> OutsideExecution:
            caller = self._bounded(ADDRESS_BOUND)
            nonce = self._next()
            after = self._bounded(_U64)
            before = self._bounded(_U64)
            return OutsideExecution(caller, nonce, after, before, self._calls())

        return self._param_read(read)

    def end(self) -> None:
        """Leftover calldata is an error, as in Cairo's generated wrappers."""
        if self._pos != len(self._data):
            raise ContractPanic("Input too long for arguments")


def encode_calls(calls: Iterable[Call]) -> list[int]:
    """``Array<Call>`` as calldata: ``[n, (to, selector, len, calldata...)...]``."""
    out: list[int] = [0]
    n = 0
    for c in calls:
        out.extend((c.to, c.selector, len(c.calldata)))
        out.extend(c.calldata)
        n += 1
    out[0] = n
    return out


def encode_spans(spans: Sequence[Sequence[int]]) -> list[int]:
    """``Array<Span<felt252>>``: ``[n, (len, felts...)...]``."""
    out: list[int] = [len(spans)]
    for span in spans:
        out.append(len(span))
        out.extend(span)
    return out


def decode_spans(felts: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Inverse of :func:`encode_spans` (used to fill receipts)."""
    n, pos, out = felts[0], 1, []
    for _ in range(n):
        length = felts[pos]
        out.append(tuple(felts[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    return tuple(out)
