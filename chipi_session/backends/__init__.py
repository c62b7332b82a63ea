"""Backends: where session transactions go and where status is read from.

The interfaces (what every backend reads, what a writing backend sends, the optional
capabilities) live in :mod:`.base`; :class:`~chipi_session.localchain.LocalChain` is the
embedded default. The remote backends are imported on first use (PEP 562):
``from chipi_session.backends import ChipiApiBackend`` loads only that path.
"""

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports
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
    "ChipiApiBackend",
    "StarknetRpcBackend",
]

_LAZY = {
    "ChipiApiBackend": "chipi_api",
    "StarknetRpcBackend": "starknet_rpc",
}

if TYPE_CHECKING:  # pragma: no cover
    from .chipi_api import ChipiApiBackend
    from .starknet_rpc import StarknetRpcBackend


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
