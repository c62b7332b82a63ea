"""Event fan-out: per-subscriber bounded buffers and synchronous listeners.

Publishing never blocks and never fails: a subscriber whose buffer is full loses its *oldest*
buffered event (so it always sees the latest state) and its ``dropped`` counter goes up; a
listener that raises is logged and kept. Events reach every subscriber in publish order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, TypeVar

import anyio

from .logs import get_logger
from .validate import check_int

__all__ = ["Subscription", "Broadcaster", "check_buffer_size"]

log = get_logger(__name__)
T = TypeVar("T")


def check_buffer_size(value: object, what: str = "buffer_size") -> int:
    """An event buffer holds at least one event (a 0-sized buffer would drop everything)."""
    return check_int(value, what, low=1)


class Subscription(Generic[T]):
    """An async iterator over events, buffered up to ``buffer_size``."""

    def __init__(self, buffer_size: int) -> None:
        check_buffer_size(buffer_size)
        self._queue: deque[T] = deque()
        self._size = buffer_size
        self._wakeup: anyio.Event | None = None
        self._closed = False
        #: Events this subscriber lost because its buffer was full.
        self.dropped = 0

    def _push(self, event: T) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        if self._wakeup is not None:
            self._wakeup.set()

    def _close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def drain(self) -> list[T]:
        """Everything buffered now, without waiting."""
        out = list(self._queue)
        self._queue.clear()
        return out

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
            self._wakeup = None
        return self._queue.popleft()

    async def receive(self) -> T:
        return await self.__anext__()


class Broadcaster(Generic[T]):
    """Delivers each published event to every subscription and listener."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription[T]] = []
        self._listeners: list[Callable[[T], object]] = []

    def publish(self, event: T) -> None:
        for sub in self._subscriptions:
            sub._push(event)
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r raised; it stays registered", listener)

    def subscribe(self, buffer_size: int = 256) -> AbstractAsyncContextManager[Subscription[T]]:
        """A subscription for ``async with``; a bad ``buffer_size`` fails here, not on entry."""
        return self._subscribe(Subscription(buffer_size))

    @asynccontextmanager
    async def _subscribe(self, sub: Subscription[T]) -> AsyncIterator[Subscription[T]]:
        self._subscriptions.append(sub)
        try:
            yield sub
        finally:
            self._subscriptions.remove(sub)
            sub._close()

    def add_listener(self, callback: Callable[[T], object]) -> Callable[[], None]:
        self._listeners.append(callback)

        def remove() -> None:
            try:
                self._listeners.remove(callback)
            except ValueError:
                pass

        return remove

    def close(self) -> None:
        for sub in self._subscriptions:
            sub._close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions) + len(self._listeners)
