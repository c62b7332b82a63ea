"""chipi_session.http builds the verifying TLS context only for https, once per process; a
plain-http client (a localnet) never pays for it, and the plain pool's context fails closed."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from chipi_session import http_httpx as http_module
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.http import HttpClient, Timeouts

pytestmark = pytest.mark.anyio

FAST = Timeouts(connect=1, read=1, write=1, pool=1, total=3)


class JsonServer:
    """Answers every request on a connection with ``{"ok": true}`` (keep-alive)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        body = b'{"ok":true}'
        try:
            while conn.recv(65536):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(body) + body
                )
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self._sock.close()


@pytest.fixture
def server() -> Iterator[JsonServer]:
    s = JsonServer()
    yield s
    s.close()


@pytest.fixture
def tls_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every load of trusted roots into any SSL context (what makes building a verifying
    context cost ~15 ms), by us or by httpx; our process-wide cache is bypassed."""
    builds: list[int] = []
    real_load = ssl.SSLContext.load_verify_locations

    def counting_load(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        builds.append(1)
        real_load(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting_load)
    monkeypatch.setattr(
        http_module, "verified_tls_context", http_module.verified_tls_context.__wrapped__
    )
    return builds


async def test_plain_http_never_builds_a_tls_context(
    server: JsonServer, tls_builds: list[int]
) -> None:
    async with HttpClient(timeouts=FAST) as http:
        for _ in range(3):
            response = await http.post_json(
                f"http://127.0.0.1:{server.port}/rpc", {"a": 1}, idempotent=True
            )
            assert response.status == 200 and response.json == {"ok": True}
    assert tls_builds == []


async def test_https_uses_the_verifying_context(server: JsonServer, tls_builds: list[int]) -> None:
    # the server speaks plain HTTP, so the TLS handshake fails before anything is sent
    async with HttpClient(timeouts=FAST, retry_backoff=0.01) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(
                f"https://127.0.0.1:{server.port}/rpc", {}, idempotent=False, retries=1
            )
    assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE
    assert tls_builds == [1]  # one pool per scheme: the retry reused it


def test_verifying_context_is_built_once_per_process() -> None:
    first = http_module.verified_tls_context()
    assert http_module.verified_tls_context() is first
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname
    assert first.cert_store_stats()["x509_ca"] > 0


def test_the_plain_pool_context_fails_closed() -> None:
    ctx = http_module.no_tls_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 0  # trusts nobody


async def test_query_params_give_the_url_httpx_would_build() -> None:
    """URLs are parsed once per (url, params); what goes out is what httpx itself builds."""
    import httpx

    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"ok": True})

    url = "http://127.0.0.1:9/v1/x?drop=me"
    async with HttpClient(timeouts=FAST, transport=httpx.MockTransport(handler)) as http:
        for params in ({"__chipi_api_version": "2025-12-30"}, {"v": "a b"}, None):
            for _ in range(2):
                await http.post_json(url, {}, params=params, idempotent=True)
    assert [str(u) for u in seen] == [
        str(httpx.URL(url, params=p) if p else httpx.URL(url))
        for p in ({"__chipi_api_version": "2025-12-30"}, {"v": "a b"}, None)
        for _ in range(2)
    ]
    assert str(seen[0]) == "http://127.0.0.1:9/v1/x?__chipi_api_version=2025-12-30"
    assert str(seen[-1]) == url
