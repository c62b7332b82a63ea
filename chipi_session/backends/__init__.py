"""Backends: where session transactions go and where status is read from.

``SessionBackend`` is the one interface; :class:`~chipi_session.localchain.LocalChain` is the
embedded default.
"""

from .base import SessionBackend

__all__ = ["SessionBackend"]
