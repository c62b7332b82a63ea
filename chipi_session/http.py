"""anyio-native JSON-over-HTTP transport for the remote backends.

Why a layer of our own over ``httpx.AsyncClient`` (which runs on asyncio and trio alike):

* **Timeouts everywhere.** connect / read / write / pool timeouts per socket operation, and a
  ``total`` deadline over a whole call including retries, so no request can hang forever.
* **Knowing whether a request left.** httpcore's documented ``trace`` extension tells us when
  the request headers start going out. A failure *before* that point provably did not reach the
  server, so even a write may be retried; a failure *after* it is ambiguous for a write and is
  reported as ``UNKNOWN_OUTCOME`` (never retried), and is retried only for idempotent requests.
* **Keep-alive.** One pooled client per backend; connections are reused across calls.
* **Bounded responses.** Bodies are streamed and cut at ``max_response_bytes``.

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
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs
import httpx

from .errors import ChipiSessionError, ErrorCode
from .http1 import PlainPool, WireError, encode_headers
from .logs import get_logger
from .validate import check_number

__all__ = [
    "Timeouts",
    "HttpResponse",
    "Exchange",
    "HttpClient",
    "safe_origin",
    "DEFAULT_RETRY_STATUSES",
    "REDACTED_PATH",
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


def safe_origin(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` only: paths and queries may hold provider keys."""
    try:
        u = url if isinstance(url, httpx.URL) else httpx.URL(str(url))
        port = f":{u.port}" if u.port else ""
        return f"{u.scheme}://{u.host}{port}"
    except Exception:  # pragma: no cover - garbage in, no secrets out
        return "<invalid url>"


@functools.lru_cache(maxsize=64)
def _parsed(url: str, query: tuple[tuple[str, str], ...] = ()) -> tuple[httpx.URL, str, str]:
    """``url`` with ``query`` parsed once (a backend posts to the same few URLs with the same
    parameters; httpx re-parses a URL that is given params, ~0.2 ms): URL, origin, path."""
    u = httpx.URL(url, params=dict(query)) if query else httpx.URL(url)  # as httpx would
    return u, safe_origin(u), u.path


@functools.lru_cache(maxsize=64)
def _plain_target(url: httpx.URL) -> tuple[str, int, bytes]:
    """Host, port and the request line + ``host`` header of a plain-http URL, built once."""
    target = url.raw_path.decode("ascii")
    start = f"POST {target} HTTP/1.1\r\nhost: {url.netloc.decode('ascii')}\r\n"
    return url.host, url.port or 80, start.encode("ascii")


@functools.cache
def _verified_tls_context() -> ssl.SSLContext:
    """The verifying TLS context (certifi's roots), built once per process on the first https
    request: loading the roots costs ~15 ms, which a plain-http localnet never needs."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


@functools.cache
def _no_tls_context() -> ssl.SSLContext:
    """For the plain-http pool, which never starts TLS: a client context with no trusted roots,
    so that if anything ever did start TLS with it, verification would fail closed."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _SchemeTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, one pool per scheme, each created on its first request (so a
    client of ``http://127.0.0.1`` never builds a verifying TLS context)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        pool = self._pools.get(scheme)
        if pool is None:
            tls = _verified_tls_context() if scheme != "http" else _no_tls_context()
            pool = httpx.AsyncHTTPTransport(verify=tls, limits=self._limits, trust_env=False)
            self._pools[scheme] = pool
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


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


class _SendTracker:
    """Records, through httpcore's ``trace`` extension, whether the request began to leave."""

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
            # httpcore reports every phase: no "send headers" event means nothing left (e.g.
            # the deadline hit while waiting for a pooled connection or while connecting).
            return self.sent
        # A transport that does not trace (a test double, a custom transport): only
        # connect-phase errors are known not to have sent anything.
        return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


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
        # httpcore (httpx's own transport) honours the trace extension; others may not.
        self._traceable = transport is None or isinstance(transport, httpx.AsyncHTTPTransport)
        base_headers = {"user-agent": _USER_AGENT, "accept": "application/json"}
        base_headers.update(headers or {})
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        # Plain http on our own HTTP/1.1 client (chipi_session.http1: a fifth of the CPU per
        # request); https and custom transports go through httpx.
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
        self._plain_headers = encode_headers(base_headers)
        self._client = httpx.AsyncClient(
            timeout=self.timeouts.to_httpx(),
            limits=limits,
            transport=transport if transport is not None else _SchemeTransport(limits),
            headers=base_headers,
            follow_redirects=False,  # a redirect of a POST is never followed silently
            trust_env=False,  # no surprise proxies from the environment for signed payloads
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._plain is not None:
            await self._plain.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

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
        if self._client.is_closed:
            raise ChipiSessionError(ErrorCode.CLOSED, "the HTTP client is closed")
        body = json.dumps(payload, separators=(",", ":")).encode()
        req_headers = {"content-type": "application/json"}
        req_headers.update(headers or {})
        deadline = time.monotonic() + (self.timeouts.total if total is None else total)
        attempt = 0
        while True:
            attempt += 1
            tracker = _SendTracker(self._traceable)
            parsed_url, origin, path = _parsed(url, tuple(params.items()) if params else ())
            plain = self._plain is not None and parsed_url.scheme == "http"
            request = (
                None
                if plain
                else self._client.build_request(
                    "POST",
                    parsed_url,
                    content=body,
                    headers=req_headers,
                    extensions={"trace": tracker},
                )
            )
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
                        if request is None:
                            tracker.traced = True  # sent is exact on this path
                            response = await self._send_plain(
                                parsed_url, body, req_headers, tracker, started
                            )
                        else:
                            response = await self._send(request, started)
                except (
                    httpx.TransportError,
                    httpx.DecodingError,
                    TimeoutError,
                    _TooLarge,
                    WireError,
                ) as exc:
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
        url: httpx.URL,
        body: bytes,
        headers: Mapping[str, str],
        tracker: _SendTracker,
        started: float,
    ) -> HttpResponse:
        assert self._plain is not None
        host, port, start = _plain_target(url)
        head = b"".join(
            (
                start,
                self._plain_headers,
                encode_headers(headers),
                b"content-length: %d\r\n\r\n" % len(body),
            )
        )
        t = self.timeouts
        raw = await self._plain.post(
            host,
            port,
            head,
            body,
            tracker,
            connect_timeout=t.connect,
            write_timeout=t.write,
            read_timeout=t.read,
            pool_timeout=t.pool,
        )
        return _response(raw.status, raw.body, raw.headers, started)

    async def _send(self, request: httpx.Request, started: float) -> HttpResponse:
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self.max_response_bytes
            ):
                raise _TooLarge(f"response of {declared} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise _TooLarge(f"response over {self.max_response_bytes} bytes")
                chunks.append(chunk)
        finally:
            await response.aclose()
        return _response(
            response.status_code, b"".join(chunks), dict(response.headers.items()), started
        )

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


class _TooLarge(Exception):
    """The response exceeded ``max_response_bytes``."""


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
