"""uvicorn's HTTP/1.1 protocols plus a request deadline (``--request-timeout``).

uvicorn closes idle keep-alive connections but never one whose request is unfinished: a client
that opens a connection and sends nothing, or half a request, holds it forever (slowloris).
With these protocols a request must arrive whole (head and body) within ``request_timeout`` of
its first byte (or of the connection being made); otherwise the connection is closed. Time the
app spends answering does not count.

Two flavours, the same rule: over httptools (llhttp, C; the fast one, used when the package is
installed) and over h11 (pure Python, always there). :func:`http_protocol` picks one.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterable
from typing import Any, Literal

from ..logs import get_logger

__all__ = ["HttpImpl", "http_protocol", "resolve_http"]

logger = get_logger("chipi_session.localnet")

HttpImpl = Literal["auto", "httptools", "h11"]


def resolve_http(http: str) -> Literal["httptools", "h11"]:
    """``auto`` -> httptools when it is installed, else h11; a name asked for but not
    installed (or unknown) -> h11 too (the caller compares)."""
    if http in ("auto", "httptools") and importlib.util.find_spec("httptools") is not None:
        return "httptools"
    return "h11"


def http_protocol(http: str, request_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's ``http=`` setting (ImportError if httptools is asked
    for and missing)."""
    if resolve_http(http) == "httptools":
        return _timed_httptools_protocol(request_timeout)
    return _timed_h11_protocol(request_timeout)


def _log_expired(client: object, request_timeout: float) -> None:
    logger.debug(  # debug: a flood of these must not flood the log
        "closing a connection from %s: request not received within %.3g s", client, request_timeout
    )


class _CorkedTransport:
    """A transport whose writes are gathered and sent in one ``send`` per response.

    uvicorn writes a response's head and body separately; on a ``TCP_NODELAY`` socket that
    is two system calls and two segments (two wake-ups of the client). Writes here are
    buffered until :meth:`flush` (called when a response is complete) or the next turn of the
    loop, whichever comes first; ``close`` flushes first. Everything else is the transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._scheduled_flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(p) for p in self._pending)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


def _timed_httptools_protocol(request_timeout: float) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        """The deadline runs from a request's first byte to its last (``on_message_complete``).
        While the app works on a whole request (pipelined requests wait meanwhile, reading
        paused), an expiring deadline is not the client's fault: it is re-armed once the
        response is complete if a request is still unfinished then.

        One timer serves many requests: arming moves ``_deadline_at`` (only ever later) and
        the timer, when it fires early, sleeps again until the current deadline.
        """

        _deadline_at: float | None = None
        _timer: asyncio.TimerHandle | None = None
        _in_message = False
        _corked: _CorkedTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self._corked = _CorkedTransport(transport, self.loop)  # type: ignore[arg-type]
            super().connection_made(self._corked)  # type: ignore[arg-type]
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline_at is None and not self._busy():
                self._arm()  # the first bytes of the next request on this connection
            super().data_received(data)

        def on_message_begin(self) -> None:
            self._in_message = True
            if self._deadline_at is None:
                self._arm()
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._in_message = False
            self._deadline_at = None
            super().on_message_complete()

        def on_response_complete(self) -> None:
            if self._corked is not None:
                self._corked.flush()
            super().on_response_complete()
            if self._in_message and self._deadline_at is None and not self.transport.is_closing():
                self._arm()  # a pipelined request, half there

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline_at = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _busy(self) -> bool:
            """The app is answering a request received whole (or one queued behind it)."""
            cycle = self.cycle
            if self.pipeline:
                return True
            return cycle is not None and not cycle.more_body and not cycle.response_complete

        def _arm(self) -> None:
            self._deadline_at = self.loop.time() + request_timeout
            if self._timer is None:
                self._timer = self.loop.call_at(self._deadline_at, self._check)

        def _check(self) -> None:
            self._timer = None
            at = self._deadline_at
            if at is None:
                return
            if self.loop.time() < at:
                self._timer = self.loop.call_at(at, self._check)
                return
            self._deadline_at = None
            if self._busy() or self.transport.is_closing():
                return  # on_response_complete re-arms if a request is still unfinished
            _log_expired(self.client, request_timeout)
            self.transport.close()

    return TimedHttpToolsProtocol


def _timed_h11_protocol(request_timeout: float) -> type[asyncio.Protocol]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first bytes of the next request on this connection
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()
            if self.conn.their_state is h11.SEND_BODY:  # a pipelined request, half there
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            waiting = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
            if waiting and not self.transport.is_closing():
                _log_expired(self.client, request_timeout)
                self.transport.close()

    return TimedH11Protocol
