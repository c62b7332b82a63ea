"""chipi_session: headless Starknet session keys for Chipi wallets.

``import chipi_session`` is light: public names are imported on first use (PEP 562), so a
program that only needs the types does not load starknet-py. Everything an application uses is
importable from here; submodules are for the rest (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ChipiSessionError": "errors",
    "ErrorCode": "errors",
    "Call": "types",
    "SessionKeyData": "types",
    "WalletData": "types",
    "WalletType": "types",
    "SessionState": "types",
    "ExpiryReason": "types",
    "SessionStatus": "types",
    "SpendingPolicy": "types",
    "ExecutionResult": "types",
    "ExecutionStatus": "types",
    "CallOutcome": "types",
    "SubmitInfo": "types",
    "Event": "events",
    "StateChanged": "events",
    "TransactionSubmitted": "events",
    "StatusRefreshed": "events",
    "ActionFailed": "events",
    "SessionRenewed": "events",
    "TransactionConfirmed": "events",
    "TransactionFailed": "events",
    "RenewalPolicy": "renewal",
    "SessionHub": "hub",
    "Clock": "clock",
    "SystemClock": "clock",
    "ManualClock": "clock",
    "SecretKey": "keys",
    "KeySource": "keys",
    "Subscription": "pubsub",
    "SessionStore": "stores.protocol",
    "MemoryStore": "stores.memory",
    "JsonFileStore": "stores.json_file",
    "SqliteStore": "stores.sqlite",
    "PostgresStore": "stores.postgres",
    "ChipiMetrics": "metrics",
    "Vault": "vault",
    "KdfCost": "vault",
    "HighEntropyKey": "vault",
    "SessionBackend": "backends.base",
    "ChipiApiBackend": "backends.chipi_api",
    "StarknetRpcBackend": "backends.starknet_rpc",
    "LocalChain": "localchain",
    "ChipiSession": "engine",
    "BlockingChipiSession": "blocking",
}

#: Importable only with an extra installed, so not part of ``from chipi_session import *``.
_NEEDS_EXTRA: dict[str, str] = {"PostgresStore": "postgres", "ChipiMetrics": "metrics"}

__all__ = sorted(set(_EXPORTS) - set(_NEEDS_EXTRA))

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import SessionBackend
    from .backends.chipi_api import ChipiApiBackend
    from .backends.starknet_rpc import StarknetRpcBackend
    from .blocking import BlockingChipiSession
    from .clock import Clock, ManualClock, SystemClock
    from .engine import ChipiSession
    from .errors import ChipiSessionError, ErrorCode
    from .events import (
        ActionFailed,
        Event,
        SessionRenewed,
        StateChanged,
        StatusRefreshed,
        TransactionConfirmed,
        TransactionFailed,
        TransactionSubmitted,
    )
    from .hub import SessionHub
    from .keys import KeySource, SecretKey
    from .localchain import LocalChain
    from .metrics import ChipiMetrics
    from .pubsub import Subscription
    from .renewal import RenewalPolicy
    from .stores.json_file import JsonFileStore
    from .stores.memory import MemoryStore
    from .stores.postgres import PostgresStore
    from .stores.protocol import SessionStore
    from .stores.sqlite import SqliteStore
    from .types import (
        Call,
        CallOutcome,
        ExecutionResult,
        ExecutionStatus,
        ExpiryReason,
        SessionKeyData,
        SessionState,
        SessionStatus,
        SpendingPolicy,
        SubmitInfo,
        WalletData,
        WalletType,
    )
    from .vault import HighEntropyKey, KdfCost, Vault


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _NEEDS_EXTRA)
