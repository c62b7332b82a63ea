"""The little of ASGI the localnet app needs, without a web framework.

A request is its scope plus a body read whole (bounded by ``MAX_BODY_BYTES``); an answer is a
status, a body and a few headers, sent as the two ASGI messages. Starlette used to do this; a
framework's routing, middleware stack and request objects cost more per request than the app
itself (issue 12), and the app has six fixed routes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "ASGIApp",
    "Answer",
    "ClientGone",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TooLarge",
    "answer_json",
    "answer_text",
    "header",
    "read_body",
    "respond",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class ClientGone(Exception):
    """The client disconnected before sending its whole request."""


class TooLarge(Exception):
    """The request body is larger than allowed."""


class Answer:
    """A complete response: status, body bytes and extra headers."""

    __slots__ = ("status", "body", "headers")

    def __init__(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


def answer_json(body: Any, status: int = 200, timing: float | None = None) -> Answer:
    """JSON as Starlette's JSONResponse rendered it (compact, UTF-8), plus ``server-timing``."""
    headers = [_JSON]
    if timing is not None:
        headers.append((b"server-timing", b"app;dur=%.3f" % (timing * 1000)))
    return Answer(status, _encode(body).encode(), headers)


def answer_text(text: str, status: int) -> Answer:
    return Answer(status, text.encode(), [_TEXT])


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a (lower-case) request header, decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; :class:`TooLarge` past ``limit`` bytes (before reading it when
    ``content-length`` says so), :class:`ClientGone` if the client hangs up first."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, answer: Answer) -> None:
    """Send ``answer`` (no body and no content-length for 204)."""
    headers = answer.headers
    if answer.status != 204:
        headers = [*headers, (b"content-length", b"%d" % len(answer.body))]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body if answer.status != 204 else b""})
