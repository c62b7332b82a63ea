"""Compatibility module: the hub's awaitable store view lives in ``chipi_session.stores.async_store``.

Kept only so that existing imports still work; import from ``chipi_session.stores`` instead.
"""

from .stores.async_store import AsyncSessionStore, ThreadedStore, as_async_store

__all__ = ["AsyncSessionStore", "ThreadedStore", "as_async_store"]
