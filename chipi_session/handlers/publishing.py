"""One session's events: who hears them and how each is stamped.

Moved out of ``engine.py`` (docs/architecture.md, "The engine's parts"; the events:
docs/engine.md, "Events"). A session publishes to its own subscribers and listeners (a
:class:`~chipi_session.pubsub.Broadcaster` made on the first subscription: a session nobody
listens to builds no event) and, under a hub, to the hub's stream. Each event is stamped with
the clock's time and, unless the caller names another, the session's current public key.
It holds the session (a :class:`~.context.PublisherContext`: its ``clock`` and ``session``),
not copies or closures of them: one per session, a hub holds thousands.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from ..felts import to_hex
from ..pubsub import Broadcaster, Subscription

if TYPE_CHECKING:
    from ..events import Event
    from .context import PublisherContext

__all__ = ["Publisher"]


class Publisher:
    """One session's event fan-out (see the module docstring); ``buffer_size`` is a
    subscription's default buffer."""

    __slots__ = ("_buffer_size", "_ctx", "_local", "hub")

    def __init__(self, ctx: PublisherContext, *, buffer_size: int) -> None:
        self._ctx = ctx
        self._buffer_size = buffer_size
        self._local: Broadcaster[Event] | None = None
        #: the hub's stream this session also publishes to (``attach``), if any
        self.hub: Broadcaster[Event] | None = None

    def _broadcaster(self) -> Broadcaster[Event]:
        if self._local is None:
            self._local = Broadcaster()
        return self._local

    def subscribe(
        self, buffer_size: int | None = None
    ) -> AbstractAsyncContextManager[Subscription[Event]]:
        """A subscription with its own buffer (by default the session's
        ``event_buffer_size``); when it is full the oldest event is dropped."""
        size = self._buffer_size if buffer_size is None else buffer_size
        return self._broadcaster().subscribe(size)

    def add_listener(self, callback: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously for every event; returns a remover."""
        return self._broadcaster().add_listener(callback)

    def publish(self, cls: type[Event], **fields: Any) -> None:
        """Build and publish a ``cls`` event, unless nobody can hear it."""
        if self._local is None and self.hub is None:
            return
        ctx = self._ctx
        if "session_public_key" not in fields:
            session = ctx.session
            fields["session_public_key"] = None if session is None else to_hex(session.public_key)
        event = cls(timestamp=ctx.clock.now(), **fields)
        if self._local is not None:
            self._local.publish(event)
        if self.hub is not None:
            self.hub.publish(event)

    def close(self) -> None:
        """End the local subscriptions (the session closed); the hub's stream goes on."""
        if self._local is not None:
            self._local.close()
