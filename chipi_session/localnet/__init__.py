"""``localnet``: a local Chipi-compatible server (REST + Starknet JSON-RPC) over LocalChain.

Needs the ``localnet`` extra (uvicorn; httptools for the fast HTTP/1.1 path, h11 otherwise;
starlette only for ``--cors-origin``). Names are imported on first use, so
``chipi_session.localnet.main`` can report a missing extra instead of failing on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports
from .cli import main

__all__ = [
    "main",
    "LocalnetServer",
    "DemoWallet",
    "Faults",
    "AuthConfig",
    "create_app",
    "generate_api_key",
]

_LAZY = {
    "LocalnetServer": "server",
    "DemoWallet": "server",
    "generate_api_key": "server",
    "Faults": "app",
    "AuthConfig": "app",
    "create_app": "app",
}

if TYPE_CHECKING:  # pragma: no cover
    from .app import AuthConfig, Faults, create_app
    from .server import DemoWallet, LocalnetServer, generate_api_key


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
