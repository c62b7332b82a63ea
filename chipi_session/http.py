"""anyio-native JSON-over-HTTP transport for the remote backends.

Why a layer of our own (on anyio, so it runs on asyncio and trio alike):

* **Timeouts everywhere.** connect / read / write / pool timeouts per socket operation, and a
  ``total`` deadline over a whole call including retries, so no request can hang forever.
* **Knowing whether a request left.** Our HTTP/1.1 client knows when the first byte is
  written; through httpx, httpcore's documented ``trace`` extension tells us. A failure
  *before* that point provably did not reach the server, so even a write may be retried; one
  *after* it is ``UNKNOWN_OUTCOME`` for a write (never retried), retried only if idempotent.
* **Keep-alive.** One pooled client per backend; connections are reused across calls.
* **Bounded responses.** Bodies are cut at ``max_response_bytes``.
* **Light.** Plain-http URLs go through :mod:`chipi_session.http1` (a fifth of httpx's CPU
  per request); https, ``user:password@`` URLs and custom transports through httpx.

Nothing here logs headers or bodies (they carry API keys, bearer tokens and signatures), and
error messages name only the URL's origin (RPC URLs often embed a provider key in the path);
a caller whose URL path is secret passes ``redact_path=True`` so that logs and metrics hooks do
not see it either.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

import anyio
import attrs

from .errors import ChipiSessionError, ErrorCode
from .http1 import PlainPool, SendTracker, WireError, encode_headers
from .logs import get_logger
from .validate import check_number

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .http_httpx import HttpxSender

__all__ = [
    "Timeouts",
    "HttpResponse",
    "Exchange",
    "HttpClient",
    "safe_origin",
    "DEFAULT_RETRY_STATUSES",
    "REDACTED_PATH",
    "parse_http_url",
]

logger = get_logger(__name__)

#: Statuses that say "not processed, try again" for an idempotent request.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

_USER_AGENT = "chipi-session/0.1 (python; httpx)"
#: ``Exchange.path`` of a request whose path may hold a secret (an RPC provider key).
REDACTED_PATH = "/<redacted>"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"Timeouts.{attribute.name} must be a positive number"
        )


@attrs.frozen
class Timeouts:
    """Seconds. ``connect``/``read``/``write``/``pool`` bound each socket operation;
    ``total`` bounds one whole call (all attempts and back-off included)."""

    connect: float = attrs.field(default=5.0, validator=_positive)
    read: float = attrs.field(default=20.0, validator=_positive)
    write: float = attrs.field(default=10.0, validator=_positive)
    pool: float = attrs.field(default=5.0, validator=_positive)
    total: float = attrs.field(default=30.0, validator=_positive)

    @classmethod
    def of(cls, value: Timeouts | float | None) -> Timeouts:
        """A single number sets ``total`` and caps the others at it."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "timeout must be seconds or Timeouts")
        total = check_number(value, "timeout", positive=True)  # a huge int: not a float
        base = cls()
        return cls(
            connect=min(base.connect, total),
            read=min(base.read, total),
            write=min(base.write, total),
            pool=min(base.pool, total),
            total=total,
        )

    def to_httpx(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@attrs.frozen
class HttpResponse:
    """A received response. ``json`` is the parsed body, or None if it was empty / not JSON."""

    status: int
    json: Any
    text: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    elapsed: float
    server_ms: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@attrs.frozen
class Exchange:
    """Timing of one attempt, for metrics hooks (no bodies, no headers; ``path`` is
    :data:`REDACTED_PATH` for requests sent with ``redact_path=True``)."""

    method: str
    origin: str
    path: str
    status: int | None
    elapsed: float
    server_ms: float | None
    sent: bool
    error: str | None = None


def parse_http_url(value: object) -> SplitResult | None:
    """An ``http(s)`` URL with a host (a ``str``, or an ``httpx.URL``), or None. Never raises,
    and never puts the URL in a message (it may hold a provider key)."""
    text = _url_text(value)
    if text is None or any(c.isspace() or ord(c) < 32 for c in text):
        return None
    try:
        u = urlsplit(text)
        u.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or not u.hostname:
        return None
    return u


def _url_text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip()
    if type(value).__name__ == "URL" and type(value).__module__.startswith("httpx"):
        return str(value)
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def safe_origin(url: object) -> str:
    """``scheme://host[:port]`` only: paths and queries may hold provider keys."""
    u = parse_http_url(url)
    if u is None or u.hostname is None:
        return "<invalid url>"
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    port = u.port
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(u.scheme) else ""
    return f"{u.scheme}://{host}{shown}"


@functools.lru_cache(maxsize=64)
def _parsed(
    url: str, query: tuple[tuple[str, str], ...] = ()
) -> tuple[str, str, str, _Target | None]:
    """Parsed once per (url, params): scheme, origin, path, and the plain-http target (None
    with ``user:password@``: httpx sends those as basic auth, our client does not)."""
    u = parse_http_url(url)
    if u is None or u.hostname is None:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "not an http(s) URL")
    path = quote(u.path or "/", safe="/%:@!$&'()*+,;=-._~")
    q = urlencode(query) if query else u.query  # params replace the query, as httpx does
    target = f"{path}?{q}" if q else path
    netloc = u.netloc.rpartition("@")[2]  # never the userinfo
    start = f"POST {target} HTTP/1.1\r\nhost: {netloc}\r\n".encode("ascii")
    port = u.port or _DEFAULT_PORTS[u.scheme]
    plain = None if "@" in u.netloc else _Target(u.hostname, port, start)
    return u.scheme, safe_origin(u.geturl()), path, plain


@attrs.frozen
class _Target:
    host: str
    port: int
    start: bytes


def _server_timing(headers: Mapping[str, str]) -> float | None:
    """Sum of ``dur=`` values in a ``Server-Timing`` header, in milliseconds."""
    raw = headers.get("server-timing")
    if not raw:
        return None
    total = 0.0
    found = False
    for metric in raw.split(","):
        for part in metric.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key == "dur":
                try:
                    total += float(value)
                    found = True
                except ValueError:
                    pass
    return total if found else None


class HttpClient:
    """A keep-alive JSON client with the failure semantics described in the module docstring.

    Bind one instance to one event loop (httpx pools connections per loop); close it with
    :meth:`aclose` or ``async with``.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | float | None = None,
        max_connections: int = 64,
        max_keepalive_connections: int = 16,
        keepalive_expiry: float = 4.0,
        max_response_bytes: int = 4 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        retry_backoff: float = 0.2,
    ) -> None:
        self.timeouts = Timeouts.of(timeouts)
        self.max_response_bytes = max_response_bytes
        self._on_exchange = on_exchange
        self._retry_backoff = retry_backoff
        self._closed = False
        self._base_headers = {"user-agent": _USER_AGENT, "accept": "application/json"}
        self._base_headers.update(headers or {})
        self._limits = (max_connections, max_keepalive_connections, keepalive_expiry)
        self._transport = transport
        # Plain http on our own HTTP/1.1 client (chipi_session.http1: a fifth of the CPU per
        # request); https and custom transports through httpx, loaded on first use.
        self._plain = (
            PlainPool(
                max_connections=max_connections,
                max_keepalive=max_keepalive_connections,
                keepalive_expiry=keepalive_expiry,
                max_response_bytes=max_response_bytes,
            )
            if transport is None
            else None
        )
        self._plain_headers = encode_headers(self._base_headers)
        self._httpx: HttpxSender | None = None
        self._failures: tuple[type[BaseException], ...] = (TimeoutError, WireError)
        if transport is not None:
            self._httpx_sender()

    def _httpx_sender(self) -> HttpxSender:
        if self._httpx is None:
            from .http_httpx import FAILURES, HttpxSender

            t = self.timeouts
            self._httpx = HttpxSender(
                timeouts=(t.connect, t.read, t.write, t.pool),
                max_connections=self._limits[0],
                max_keepalive_connections=self._limits[1],
                keepalive_expiry=self._limits[2],
                max_response_bytes=self.max_response_bytes,
                transport=self._transport,
                headers=self._base_headers,
            )
            self._failures = (*self._failures, *FAILURES)
        return self._httpx

    async def aclose(self) -> None:
        self._closed = True
        if self._httpx is not None:
            await self._httpx.aclose()
        if self._plain is not None:
            await self._plain.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool,
        retries: int = 2,
        retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES,
        what: str = "request",
        total: float | None = None,
        redact_path: bool = False,
    ) -> HttpResponse:
        """POST ``payload`` as JSON and return the response (any status).

        Raises ``BACKEND_UNAVAILABLE`` (retryable) when nothing was received and either nothing
        was sent or the request is idempotent, and ``UNKNOWN_OUTCOME`` when a non-idempotent
        request may have reached the server. Retries (up to ``retries`` more attempts, within
        ``total``) happen only where they are safe: any failure before sending, and for
        idempotent requests also ``retry_statuses`` and failures after sending. ``total``
        overrides the client's total deadline for this call. ``redact_path`` keeps the URL's
        path out of debug logs and :class:`Exchange` records (for URLs that embed a key).
        """
        if self._closed:
            raise ChipiSessionError(ErrorCode.CLOSED, "the HTTP client is closed")
        body = json.dumps(payload, separators=(",", ":")).encode()
        req_headers = {"content-type": "application/json"}
        req_headers.update(headers or {})
        deadline = time.monotonic() + (self.timeouts.total if total is None else total)
        attempt = 0
        while True:
            attempt += 1
            query = tuple(params.items()) if params else ()
            scheme, origin, path, target = _parsed(url, query)
            sender = None if scheme == "http" and self._plain and target else self._httpx_sender()
            tracker = SendTracker(sender is None or sender.traceable)
            if redact_path:
                path = REDACTED_PATH
            started = time.monotonic()
            remaining = deadline - started
            failure: BaseException | None = None
            response: HttpResponse | None = None
            if remaining <= 0:
                failure = TimeoutError("total deadline exceeded")
            else:
                try:
                    with anyio.fail_after(remaining):
                        if sender is None:
                            tracker.traced = True  # our own client: sent is exact
                            response = await self._send_plain(target, body, req_headers, tracker)
                        else:
                            status, raw, got = await sender.send(
                                url, query, body, req_headers, tracker
                            )
                            response = _response(status, raw, got, started)
                except self._failures as exc:
                    failure = exc
            elapsed = time.monotonic() - started
            sent = tracker.maybe_sent(failure) if failure is not None else True
            self._report(
                Exchange(
                    method="POST",
                    origin=origin,
                    path=path,
                    status=None if response is None else response.status,
                    elapsed=elapsed,
                    server_ms=None if response is None else response.server_ms,
                    sent=sent,
                    error=None if failure is None else type(failure).__name__,
                )
            )
            retry_after: float | None = None
            if response is not None:
                if not (idempotent and response.status in retry_statuses):
                    return response
                retry_after = _retry_after(response.headers)
                error = ChipiSessionError(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"{what}: {origin} answered HTTP {response.status}",
                    retryable=True,
                )
            elif not sent or idempotent:
                error = ChipiSessionError(
                    ErrorCode.BACKEND_UNAVAILABLE,
                    f"{what}: {origin} unreachable ({_describe(failure)})",
                    retryable=True,
                )
            else:
                logger.warning(
                    "%s to %s may have been delivered (%s): outcome unknown",
                    what,
                    origin,
                    _describe(failure),
                )
                raise ChipiSessionError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{what}: no answer from {origin} after the request was sent "
                    f"({_describe(failure)}); it may or may not have been executed",
                    retryable=False,
                ) from failure
            if attempt > retries:
                raise error from failure
            delay = self._retry_backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            if retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() + delay >= deadline:
                raise error from failure
            logger.debug(
                "%s to %s failed (%s); retry %d in %.2fs", what, origin, error, attempt, delay
            )
            await anyio.sleep(delay)

    async def _send_plain(
        self,
        target: _Target | None,
        body: bytes,
        headers: Mapping[str, str],
        tracker: SendTracker,
    ) -> HttpResponse:
        assert self._plain is not None and target is not None  # plain http, no userinfo
        started = time.monotonic()
        head = b"".join(
            (
                target.start,
                self._plain_headers,
                encode_headers(headers),
                b"content-length: %d\r\n\r\n" % len(body),
            )
        )
        t = self.timeouts
        raw = await self._plain.post(
            target.host,
            target.port,
            head,
            body,
            tracker,
            connect_timeout=t.connect,
            write_timeout=t.write,
            read_timeout=t.read,
            pool_timeout=t.pool,
        )
        return _response(raw.status, raw.body, raw.headers, started)

    def _report(self, exchange: Exchange) -> None:
        logger.debug(
            "POST %s%s -> %s in %.1f ms",
            exchange.origin,
            exchange.path,
            exchange.status if exchange.status is not None else exchange.error,
            exchange.elapsed * 1000,
        )
        if self._on_exchange is not None:
            try:
                self._on_exchange(exchange)
            except Exception:  # a metrics hook must never break a request
                logger.exception("on_exchange hook failed")


def _response(status: int, raw: bytes, headers: Mapping[str, str], started: float) -> HttpResponse:
    parsed: Any = None
    if raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    return HttpResponse(
        status=status,
        json=parsed,
        text=raw[:2000].decode("utf-8", "replace")[:500],
        headers=headers,
        elapsed=time.monotonic() - started,
        server_ms=_server_timing(headers),
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no response"
    if isinstance(exc, TimeoutError):
        return "total timeout"
    name = type(exc).__name__
    # httpx messages hold no secrets, but keep them short.
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{name}: {text}" if text else name


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), 30.0)
