"""A small HTTP/1.1 keep-alive client for plain-http URLs (localnet, a local node), on anyio.

Why: through httpx + httpcore + h11 one JSON POST to localnet costs ~1-2.5 ms of client CPU;
written directly on an anyio stream it costs a fifth of that (``benchmarks/bench_http.py``),
and the request leaves in one ``send`` (head and body together), which also spares the server
a wake-up. It does only what :class:`~chipi_session.http.HttpClient` needs: POST with a
``content-length`` body, responses delimited by ``content-length``, chunked or the connection's
close, a bounded pool with keep-alive, and per-operation timeouts (connect / write / read, pool
waits). https and custom transports stay on httpx.

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
        # one scope for the whole read, its deadline moved on by each chunk received: a
        # timeout per receive, without a scope per receive
        with anyio.fail_after(timeout) as scope:
            return await self._read_in(_Reader(stream, scope, timeout))

    async def _read_in(self, reader: _Reader) -> tuple[RawResponse, bool]:
        while True:
            head = await reader.head()
            status, version, headers = _parse_head(head)
            if not 100 <= status < 200:
                break
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if status in (204, 304):
            body = b""
        elif chunked:
            body = await reader.chunked(self._max_bytes)
        elif length is not None:
            if not length.isdigit():
                raise RemoteProtocolError("bad content-length")
            if int(length) > self._max_bytes:
                raise ResponseTooLarge(f"response of {length} bytes")
            body = await reader.exactly(int(length))
        else:
            body = await reader.until_eof(self._max_bytes)
            keep = False
        return RawResponse(status, headers, body), keep and not reader.buffer


class _Reader:
    """Buffered reads from one stream; ``scope``'s deadline is ``timeout`` after the last
    chunk received."""

    def __init__(
        self, stream: anyio.abc.SocketStream, scope: anyio.CancelScope, timeout: float
    ) -> None:
        self._stream = stream
        self._scope = scope
        self._timeout = timeout
        self.buffer = bytearray()

    async def _more(self, *, eof_ok: bool = False) -> bool:
        try:
            data = await self._stream.receive(_CHUNK)
            self._scope.deadline = anyio.current_time() + self._timeout
        except anyio.EndOfStream:
            if eof_ok:
                return False
            raise RemoteProtocolError("server disconnected") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ReadError(str(exc) or type(exc).__name__) from None
        self.buffer += data
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def head(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                return self._take(end + 4)
            if len(self.buffer) > _MAX_HEAD:
                raise RemoteProtocolError("response head too large")
            await self._more()

    async def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                return self._take(end + 2)[:-2]
            if len(self.buffer) > _MAX_HEAD:
                raise RemoteProtocolError("chunk line too long")
            await self._more()

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._more()
        return self._take(n)

    async def until_eof(self, limit: int) -> bytes:
        while await self._more(eof_ok=True):
            if len(self.buffer) > limit:
                raise ResponseTooLarge(f"response over {limit} bytes")
        return self._take(len(self.buffer))

    async def chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            size_text = (await self.line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise RemoteProtocolError("bad chunk size") from None
            if size == 0:
                while await self.line():  # trailers, up to the blank line
                    pass
                return bytes(body)
            if len(body) + size > limit:
                raise ResponseTooLarge(f"response over {limit} bytes")
            body += await self.exactly(size)
            if await self.exactly(2) != b"\r\n":
                raise RemoteProtocolError("chunk not terminated")


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise RemoteProtocolError("not an HTTP/1.x response")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError("malformed header line")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), parts[0], headers
