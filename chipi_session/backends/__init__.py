"""Backends: where session transactions go and where status is read from.

The interfaces (what every backend reads, what a writing backend sends, the optional
capabilities) live in :mod:`.base`; :class:`~chipi_session.localchain.LocalChain` is the
embedded default.
"""

from .base import (
    BatchStatusReader,
    ChainTimeReader,
    ClockProvider,
    ExecutionResultReader,
    NonceReader,
    SessionBackend,
    SessionReader,
    SessionWriter,
    TransactionConfirmer,
)

__all__ = [
    "SessionBackend",
    "SessionReader",
    "SessionWriter",
    "ClockProvider",
    "ChainTimeReader",
    "BatchStatusReader",
    "NonceReader",
    "TransactionConfirmer",
    "ExecutionResultReader",
]
