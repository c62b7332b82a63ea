"""The httpx half of :class:`~chipi_session.http.HttpClient`: https and custom transports.

Imported on the first request that needs it (an https URL, or a client given an httpx
transport), so importing the working path and talking to a plain-http localnet never loads
httpx (~40 % of that import). Plain http goes through :mod:`chipi_session.http1`.

* **Knowing whether a request left.** httpcore's documented ``trace`` extension tells us when
  the request headers start going out (:class:`~chipi_session.http1.SendTracker`).
* **TLS built once, only for https.** One pool per scheme, each created on its first request;
  the verifying context (certifi's roots, ~15 ms) is built once per process.
* **Bounded responses.** Bodies are streamed and cut at ``max_response_bytes``.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping

import httpx

from .http1 import SendTracker

__all__ = [
    "FAILURES",
    "HttpxSender",
    "TooLarge",
    "verified_tls_context",
    "no_tls_context",
]


class TooLarge(Exception):
    """The response exceeded ``max_response_bytes``."""


#: What a failed httpx exchange raises (besides timeouts): the caller's "no response" cases.
FAILURES: tuple[type[BaseException], ...] = (httpx.TransportError, httpx.DecodingError, TooLarge)


@functools.cache
def verified_tls_context() -> ssl.SSLContext:
    """The verifying TLS context (certifi's roots), built once per process on the first https
    request: loading the roots costs ~15 ms, which a plain-http localnet never needs."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


@functools.cache
def no_tls_context() -> ssl.SSLContext:
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
            tls = verified_tls_context() if scheme != "http" else no_tls_context()
            pool = httpx.AsyncHTTPTransport(verify=tls, limits=self._limits, trust_env=False)
            self._pools[scheme] = pool
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class HttpxSender:
    """One ``httpx.AsyncClient`` (keep-alive, no redirects, no proxies from the environment)."""

    def __init__(
        self,
        *,
        timeouts: tuple[float, float, float, float],
        max_connections: int,
        max_keepalive_connections: int,
        keepalive_expiry: float,
        max_response_bytes: int,
        transport: httpx.AsyncBaseTransport | None,
        headers: Mapping[str, str],
    ) -> None:
        connect, read, write, pool = timeouts
        self.max_response_bytes = max_response_bytes
        # httpcore (httpx's own transport) honours the trace extension; others may not.
        self.traceable = transport is None or isinstance(transport, httpx.AsyncHTTPTransport)
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=keepalive_expiry,
        )
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=read, write=write, pool=pool),
            limits=limits,
            transport=transport if transport is not None else _SchemeTransport(limits),
            headers=dict(headers),
            follow_redirects=False,  # a redirect of a POST is never followed silently
            trust_env=False,  # no surprise proxies from the environment for signed payloads
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        url: str,
        query: tuple[tuple[str, str], ...],
        body: bytes,
        headers: Mapping[str, str],
        tracker: SendTracker,
    ) -> tuple[int, bytes, dict[str, str]]:
        """POST; the status, the body (bounded) and the headers."""
        request = self._client.build_request(
            "POST",
            _url(url, query),
            content=body,
            headers=headers,
            extensions={"trace": tracker},
        )
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self.max_response_bytes
            ):
                raise TooLarge(f"response of {declared} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise TooLarge(f"response over {self.max_response_bytes} bytes")
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response.status_code, b"".join(chunks), dict(response.headers.items())


@functools.lru_cache(maxsize=64)
def _url(url: str, query: tuple[tuple[str, str], ...]) -> httpx.URL:
    """``url`` with ``query`` parsed once (a backend posts to the same few URLs with the same
    parameters; httpx re-parses a URL that is given params, ~0.2 ms)."""
    return httpx.URL(url, params=dict(query)) if query else httpx.URL(url)
