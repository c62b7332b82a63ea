"""A lean HTTP/1.1 server protocol on httptools (llhttp) for uvicorn's ``http=`` setting.

uvicorn's own protocols stream every request into an ASGI task and every response out in
pieces; for the localnet app (small JSON requests, answers computed at once) that machinery
cost more CPU than the app's own work (issue 12). Here a request is read whole (the body
capped at ``max_body + 1`` bytes, enough for the app to answer 413), the app runs at once in
``data_received`` — in a task only if it really waits (fault-injection delays) — and the
answer leaves in one ``send``. uvicorn still owns the sockets, start-up and graceful shutdown.

Connection rules: a request must arrive whole within ``request_timeout`` of its first byte
(or of the connection being made); an idle keep-alive connection is closed after
``keep_alive``; while the app works on a request the clock is stopped. Requests pipelined on
one connection are answered in order. A client gone mid-request costs one INFO line.
"""

from __future__ import annotations

import asyncio
import collections
import http
from collections.abc import Generator
from typing import Any
from urllib.parse import unquote

import httptools

from ..logs import get_logger
from .asgi import ASGIApp, Message, Scope

__all__ = ["lean_http_protocol"]

logger = get_logger("chipi_session.localnet")

_STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode()) for s in http.HTTPStatus
}
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInvalid HTTP request."
)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Status\r\n" % status


class _Resume:
    """Continue a coroutine that suspended on its first step, inside a task."""

    def __init__(self, coro: Any, yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        value = self._yielded
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation and friends reach the coroutine
                try:
                    value = self._coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = self._coro.send(sent)
                except StopIteration:
                    return


async def _resume(coro: Any, yielded: Any) -> None:
    await _Resume(coro, yielded)


def lean_http_protocol(
    request_timeout: float, keep_alive: float, max_body: int
) -> type[asyncio.Protocol]:
    """The protocol class (closing over the connection rules)."""

    class LeanHttpProtocol(asyncio.Protocol):
        def __init__(
            self,
            config: Any,
            server_state: Any,
            app_state: Any = None,
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            if not config.loaded:
                config.load()
            self.app: ASGIApp = config.loaded_app
            self.loop = _loop or asyncio.get_event_loop()
            self.connections: set[Any] = server_state.connections
            self.tasks: set[asyncio.Task[None]] = server_state.tasks
            self.parser = httptools.HttpRequestParser(self)
            self.transport: asyncio.Transport | None = None
            self.client: tuple[str, int] | None = None
            self.server: tuple[str, int] | None = None
            self.queue: collections.deque[tuple[Scope, bytes, bool]] = collections.deque()
            self.busy = False  # the app is answering a request in a task
            self.closing = False  # close once the current answer is out
            # the request being received
            self.in_message = False
            self.url = b""
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []
            self.body_size = 0
            self.path: str | None = None
            self.query = b""
            # one lazy timer: the connection is closed at close_at unless it moved meanwhile
            self.close_at: float | None = None
            self.why = ""
            self.timer: asyncio.TimerHandle | None = None

        # -- asyncio.Protocol -------------------------------------------------------------

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.connections.add(self)
            peer = transport.get_extra_info("peername")
            self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
            local = transport.get_extra_info("sockname")
            self.server = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
            self._close_in(request_timeout, "request")

        def connection_lost(self, exc: Exception | None) -> None:
            self.connections.discard(self)
            self.close_at = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.in_message and self.path is not None:
                client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
                logger.info("client %s disconnected before sending all of %s", client, self.path)
            self.in_message = False
            self.queue.clear()

        def eof_received(self) -> bool | None:
            return None  # close our side too

        def data_received(self, data: bytes) -> None:
            if not self.busy and self.why != "request":  # a request's first bytes
                self._close_in(request_timeout, "request")  # (not re-armed by more of them)
            try:
                self.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self._write(_BAD_REQUEST)
                self._close()
                return
            self._serve_queue()

        # -- httptools callbacks ------------------------------------------------------------

        def on_message_begin(self) -> None:
            self.in_message = True
            self.url = b""
            self.headers = []
            self.body = []
            self.body_size = 0
            self.path = None
            if not self.busy and self.why != "request":
                self._close_in(request_timeout, "request")

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            parsed = httptools.parse_url(self.url)
            raw = parsed.path.decode("latin-1")
            self.path = unquote(raw) if "%" in raw else raw
            for name, value in self.headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.query = parsed.query or b""

        def on_body(self, body: bytes) -> None:
            if self.body_size <= max_body:  # past the cap the app only needs to know that
                self.body.append(body)
            self.body_size += len(body)

        def on_message_complete(self) -> None:
            self.in_message = False
            self.close_at = None  # whole: the clock stops while the app answers
            self.why = ""
            assert self.path is not None
            scope: Scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": self.parser.get_http_version(),
                "method": self.parser.get_method().decode("ascii"),
                "scheme": "http",
                "path": self.path,
                "raw_path": self.url.split(b"?", 1)[0],
                "query_string": self.query,
                "root_path": "",
                "headers": self.headers,
                "client": self.client,
                "server": self.server,
            }
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.queue.append((scope, body, bool(self.parser.should_keep_alive())))

        # -- answering ----------------------------------------------------------------------

        def _serve_queue(self, answered: bool = False) -> None:
            while self.queue and not self.busy and not self.closing:
                scope, body, keep = self.queue.popleft()
                self._run(scope, body, keep)
                answered = True
            if self.busy or self.closing:
                return  # the clock is stopped while the app answers
            if self.in_message:  # a request half there (pipelined behind a slow answer)
                if self.why != "request":
                    self._close_in(request_timeout, "request")
            elif answered:  # idle after an answer: keep-alive (not after bytes of no request)
                self._close_in(keep_alive, "idle")

        def _run(self, scope: Scope, body: bytes, keep: bool) -> None:
            head: list[bytes] = []
            out: list[bytes] = []
            state = {
                "received": False,
                "started": False,
                "status": 200,
                "length": False,
                "done": False,
            }
            head_only = scope["method"] == "HEAD"

            async def receive() -> Message:
                if state["received"]:
                    return {"type": "http.disconnect"}
                state["received"] = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    state["started"] = True
                    state["status"] = message["status"]
                    head.append(_status_line(message["status"]))
                    for name, value in message.get("headers", ()):
                        if name.lower() == b"content-length":
                            state["length"] = True
                        head.extend((name, b": ", value, b"\r\n"))
                elif message["type"] == "http.response.body":
                    out.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        self._finish(head, out, state, keep, head_only)

            coro: Any = self.app(scope, receive, send)
            try:
                yielded = coro.send(None)
            except StopIteration:
                if not state["done"]:
                    self._failed(scope, head, out, state, "returned without answering", None)
                return
            except Exception as exc:
                self._failed(scope, head, out, state, "failed", exc)
                return
            self.busy = True
            self.transport.pause_reading()  # type: ignore[union-attr]
            task = self.loop.create_task(_resume(coro, yielded))
            self.tasks.add(task)

            def done(task: asyncio.Task[None]) -> None:
                self.tasks.discard(task)
                self.busy = False
                if task.cancelled():
                    self._failed(scope, head, out, state, "was cancelled", None)
                elif (exc := task.exception()) is not None:
                    self._failed(scope, head, out, state, "failed", exc)
                elif not state["done"]:
                    self._failed(scope, head, out, state, "returned without answering", None)
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.resume_reading()
                    self._serve_queue(answered=True)

            task.add_done_callback(done)

        def _finish(
            self,
            head: list[bytes],
            out: list[bytes],
            state: dict[str, Any],
            keep: bool,
            head_only: bool,
        ) -> None:
            state["done"] = True
            status = state["status"]
            body = out[0] if len(out) == 1 else b"".join(out)
            if not state["length"] and status != 204 and status != 304 and status >= 200:
                head.append(b"content-length: %d\r\n" % len(body))
            close = not keep or self.closing
            if close:
                head.append(b"connection: close\r\n")
            head.append(b"\r\n")
            if not head_only:
                head.append(body)
            self._write(b"".join(head))
            head.clear()
            out.clear()
            if close:
                self._close()

        def _failed(
            self,
            scope: Scope,
            head: list[bytes],
            out: list[bytes],
            state: dict[str, Any],
            what: str,
            exc: BaseException | None,
        ) -> None:
            logger.error("localnet: the app %s on %s", what, scope.get("path"), exc_info=exc)
            if state["done"]:
                return
            if state["started"]:
                self._close()
                return
            head[:] = [_status_line(500), b"content-type: text/plain; charset=utf-8\r\n"]
            out[:] = [b"Internal Server Error"]
            state.update(started=True, status=500, length=False)
            self._finish(head, out, state, False, False)

        # -- connection -------------------------------------------------------------------

        def _write(self, data: bytes) -> None:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)

        def _close(self) -> None:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

        def shutdown(self) -> None:
            """uvicorn's graceful exit: close now if idle, else after the current answer."""
            self.closing = True
            if not self.busy and self.transport is not None:
                self.transport.close()

        def _close_in(self, seconds: float, why: str) -> None:
            self.close_at = at = self.loop.time() + seconds
            self.why = why
            timer = self.timer
            if timer is not None and timer.when() > at:  # moved earlier (keep-alive < timeout)
                timer.cancel()
                timer = None
            if timer is None:
                self.timer = self.loop.call_at(at, self._check)

        def _check(self) -> None:
            self.timer = None
            at = self.close_at
            if at is None:
                return
            if self.loop.time() < at:
                self.timer = self.loop.call_at(at, self._check)
                return
            self.close_at = None
            why, self.why = self.why, ""
            if self.busy or self.transport is None or self.transport.is_closing():
                return
            self.in_message = False  # our doing, not the client's: no "disconnected" line
            if why != "idle":
                logger.debug(  # debug: a flood of these must not flood the log
                    "closing a connection from %s: request not received within %.3g s",
                    self.client,
                    request_timeout,
                )
            self._close()

    return LeanHttpProtocol
