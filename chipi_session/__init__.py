"""chipi_session: headless Starknet session keys for Chipi wallets.

``import chipi_session`` is light: public names are imported on first use (PEP 562), so a
program that only needs the types does not load starknet-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "Vault": "vault",
    "KdfCost": "vault",
    "HighEntropyKey": "vault",
    "SessionBackend": "backends.base",
    "LocalChain": "localchain",
    "ChipiSession": "engine",
    "BlockingChipiSession": "blocking",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import SessionBackend
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
    from .keys import SecretKey
    from .localchain import LocalChain
    from .renewal import RenewalPolicy
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
        WalletData,
        WalletType,
    )
    from .vault import HighEntropyKey, KdfCost, Vault


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chipi_session' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
