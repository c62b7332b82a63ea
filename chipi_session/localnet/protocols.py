"""uvicorn's HTTP/1.1 protocols plus a request deadline (``--request-timeout``).

uvicorn closes idle keep-alive connections but never one whose request is unfinished: a client
that opens a connection and sends nothing, or half a request, holds it forever (slowloris).
With these protocols a request must arrive whole (head and body) within ``request_timeout`` of
its first byte (or of the connection being made); otherwise the connection is closed. Time the
app spends answering does not count.

Two flavours, the same rule: :mod:`.http11` over httptools (llhttp, C; the fast one, used when
the package is installed) and uvicorn's h11 protocol (pure Python, always there) with the
deadline added here. :func:`http_protocol` picks one.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal

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


def http_protocol(
    http: str, request_timeout: float, keep_alive: float, max_body: int
) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's ``http=`` setting: httptools -> :mod:`.http11` (lean,
    whole requests, the app run at once), h11 -> uvicorn's own plus the request deadline."""
    if resolve_http(http) == "httptools":
        from .http11 import lean_http_protocol

        return lean_http_protocol(request_timeout, keep_alive, max_body)
    return _timed_h11_protocol(request_timeout)


def _log_expired(client: object, request_timeout: float) -> None:
    logger.debug(  # debug: a flood of these must not flood the log
        "closing a connection from %s: request not received within %.3g s", client, request_timeout
    )


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
