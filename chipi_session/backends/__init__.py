"""Backends: where session transactions go and where status is read from.

The interfaces (what every backend reads, what a writing backend sends, the optional
capabilities) live in :mod:`.base`; :class:`~chipi_session.localchain.LocalChain` is the
embedded default. The remote backends are imported on first use (PEP 562):
``from chipi_session.backends import ChipiApiBackend`` loads only that path.
"""

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chipi_session.backends' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
