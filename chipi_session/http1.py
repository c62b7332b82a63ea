"""A small HTTP/1.1 keep-alive client for plain-http URLs (localnet, a local node), on anyio.

Why: through httpx + httpcore + h11 one JSON POST to localnet costs ~1-2.5 ms of client CPU;
written directly on an anyio stream it costs a fifth of that (``benchmarks/bench_http.py``),
and the request leaves in one ``send`` (head and body together), which also spares the server
a wake-up. It does only what :class:`~chipi_session.http.HttpClient` needs: POST with a
``content-length`` body, a bounded pool with keep-alive, and per-operation timeouts (connect /
write / read, pool waits). Responses are parsed by ``httptools`` (MagicStack's binding of
llhttp, Node's HTTP parser, which uvicorn also uses): framing by ``content-length``, chunked
(extensions, trailers) or the connection's close, 1xx interim answers skipped, anything malformed
refused as :class:`RemoteProtocolError`. https and custom transports stay on httpx.

The one promise that matters is :attr:`SendTracker.sent`: it turns True immediately before the
first byte of the request is written, so any failure before that provably sent nothing.
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import attrs
import httptools

from .errors import ChipiSessionError, ErrorCode

__all__ = [
    "PlainPool",
    "SendTracker",
    "WireError",
    "ConnectError",
    "WriteError",
    "ReadError",
    "RemoteProtocolError",
    "PoolTimeout",
    "ResponseTooLarge",
]

_MAX_HEAD = 64 * 1024
_CHUNK = 65536


class WireError(Exception):
    """A transport failure of the plain-http client (the name says which phase)."""


class ConnectError(WireError):
    """The connection could not be made: nothing was sent."""


class PoolTimeout(WireError):
    """No connection became free in time: nothing was sent."""


class WriteError(WireError):
    """Writing the request failed (part of it may have left)."""


class ReadError(WireError):
    """Reading the response failed."""


class RemoteProtocolError(WireError):
    """The server closed the connection or answered something that is not HTTP/1.x."""


class ResponseTooLarge(WireError):
    """The response exceeded the client's ``max_response_bytes``."""


class SendTracker:
    """Whether the request began to leave. Our client sets :attr:`sent` just before the first
    byte is written (and ``traced``); through httpx, httpcore's ``trace`` extension calls this
    object with each phase."""

    __slots__ = ("traceable", "traced", "sent")

    def __init__(self, traceable: bool) -> None:
        self.traceable = traceable
        self.traced = False
        self.sent = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        self.traced = True
        if event.endswith(".send_request_headers.started"):
            self.sent = True

    def maybe_sent(self, exc: BaseException | None) -> bool:
        if self.traceable or self.traced:
            # Every phase is reported: no "send headers" event means nothing left (e.g. the
            # deadline hit while waiting for a pooled connection or while connecting).
            return self.sent
        # A transport that does not trace (a test double, a custom httpx transport, so httpx
        # is loaded): only connect-phase errors are known not to have sent anything.
        import httpx

        return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


@attrs.frozen
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _Conn:
    __slots__ = ("stream", "sock", "expires")

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        self.expires = 0.0

    def reusable(self, now: float) -> bool:
        """Not expired, and nothing to read: a readable idle socket is closed or broken."""
        if now >= self.expires:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """``name: value\\r\\n`` lines; a line break or NUL in a header is refused (injection)."""
    out = []
    for name, value in headers.items():
        if (
            any(c in name or c in value for c in "\r\n\0")
            or ":" in name
            or not (name.isascii() and value.isascii())
        ):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"header {name[:40]!r} is malformed")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("ascii")


class PlainPool:
    """Keep-alive connections to plain-http origins, at most ``max_connections`` in use."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_keepalive: int,
        keepalive_expiry: float,
        max_response_bytes: int,
    ) -> None:
        self._slots = anyio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], deque[_Conn]] = {}
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._max_bytes = max_response_bytes
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await anyio.aclose_forcefully(conn.stream)

    async def post(
        self,
        host: str,
        port: int,
        head: bytes,
        body: bytes,
        state: SendTracker,
        *,
        connect_timeout: float,
        write_timeout: float,
        read_timeout: float,
        pool_timeout: float,
    ) -> RawResponse:
        """Send ``head`` (request line and headers, ending in the blank line) and ``body``."""
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(pool_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise PoolTimeout("no free connection") from None
        conn: _Conn | None = None
        keep = False
        try:
            conn = await self._connection(host, port, connect_timeout)
            state.sent = True
            try:
                with anyio.fail_after(write_timeout):
                    await conn.stream.send(head + body)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise WriteError(str(exc) or type(exc).__name__) from None
            response, keep = await self._read_response(conn.stream, read_timeout)
            return response
        finally:
            if conn is not None:
                if keep:
                    await self._release(host, port, conn)
                else:
                    await anyio.aclose_forcefully(conn.stream)
            self._slots.release()

    async def _connection(self, host: str, port: int, timeout: float) -> _Conn:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable(now):
                return conn
            await anyio.aclose_forcefully(conn.stream)
        try:
            with anyio.fail_after(timeout):
                stream = await anyio.connect_tcp(host, port)
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from None
        return _Conn(stream)

    async def _release(self, host: str, port: int, conn: _Conn) -> None:
        idle = self._idle.setdefault((host, port), deque())
        if self._closed or len(idle) >= self._max_keepalive:
            await anyio.aclose_forcefully(conn.stream)
            return
        conn.expires = time.monotonic() + self._expiry
        idle.append(conn)

    async def _read_response(
        self, stream: anyio.abc.SocketStream, timeout: float
    ) -> tuple[RawResponse, bool]:
        response = _Response(self._max_bytes)
        try:
            await self._read_into(response, stream, timeout)
        finally:
            response.release()  # parser and callbacks hold each other: no cycle for the GC
        raw = RawResponse(response.status, response.headers, bytes(response.body))
        return raw, response.done and response.keep and not response.extra

    async def _read_into(
        self, response: _Response, stream: anyio.abc.SocketStream, timeout: float
    ) -> None:
        # every byte of one answer (head, body, chunk framing, trailers) counts against this
        budget = self._max_bytes + 2 * _MAX_HEAD
        received = 0
        # one scope for the whole read, its deadline moved on by each chunk received: a
        # timeout per receive, without a scope per receive
        with anyio.fail_after(timeout) as scope:
            while not response.done:
                try:
                    data = await stream.receive(_CHUNK)
                except anyio.EndOfStream:
                    if response.finish_at_eof():
                        return
                    raise RemoteProtocolError("server disconnected") from None
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                    raise ReadError(str(exc) or type(exc).__name__) from None
                scope.deadline = anyio.current_time() + timeout
                received += len(data)
                response.feed(data)
                if response.problem is not None:
                    raise response.problem
                if received > budget:
                    raise ResponseTooLarge(f"response over {self._max_bytes} bytes")
                if not response.head_done and received > _MAX_HEAD:
                    raise RemoteProtocolError("response head too large")


class _Response:
    """One response, parsed by llhttp (through ``httptools``) from the bytes fed to it: the
    parser does the framing (content-length, chunked with extensions and trailers, 1xx interim
    answers, no body for 204/304) and refuses what is malformed; this object keeps the status,
    headers and body its callbacks report, within ``limit`` bytes of body."""

    __slots__ = (
        "_parser",
        "_limit",
        "status",
        "headers",
        "body",
        "head_done",
        "done",
        "keep",
        "extra",
        "problem",
    )

    def __init__(self, limit: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._limit = limit
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.head_done = False  # the final (non-1xx) response's head is parsed
        self.done = False  # the final response is complete
        self.keep = False  # its connection may carry the next request
        self.extra = False  # bytes came after it: the connection is not reused
        self.problem: WireError | None = None

    def release(self) -> None:
        del self._parser

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise RemoteProtocolError("unexpected protocol switch (101)") from None
        except httptools.HttpParserError as exc:
            if not self.done:
                raise RemoteProtocolError(f"malformed response: {exc}") from None
            self.extra = True  # junk after a complete response

    def finish_at_eof(self) -> bool:
        """The connection ended: whether that completes the response (a body with neither a
        length nor chunked framing runs to the close)."""
        if self.head_done and not self.done and "content-length" not in self.headers:
            if "chunked" not in self.headers.get("transfer-encoding", "").lower():
                self.done = True
        return self.done

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:
            self.extra = True  # another response behind ours

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # trailer fields (or a response behind ours): not kept
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if self.done or 100 <= status < 200:
            return  # a 1xx interim answer completes at once and the real one follows
        self.status = status
        self.head_done = True
        length = self.headers.get("content-length")  # llhttp checked it is one number
        if length is not None and int(length) > self._limit:
            self.problem = ResponseTooLarge(f"response of {length} bytes")

    def on_body(self, data: bytes) -> None:
        if self.done or self.problem is not None:
            return
        if len(self.body) + len(data) > self._limit:
            self.problem = ResponseTooLarge(f"response over {self._limit} bytes")
            return
        self.body += data

    def on_message_complete(self) -> None:
        if self.done:
            return
        if not self.head_done:  # a 1xx interim answer: forget its headers
            self.headers = {}
            return
        self.done = True
        # asked now: llhttp resets the message's flags once this callback returns
        self.keep = self._parser.should_keep_alive()
