"""chipi_session.http: what was sent decides what a failure means.

Tiny raw-socket servers on 127.0.0.1 misbehave on purpose (never answer, hang up, answer too
much); each runs on a thread that stops with the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import anyio
import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.http import Exchange, HttpClient, Timeouts, safe_origin

pytestmark = pytest.mark.anyio


class RawServer:
    """Accepts connections; ``mode`` is ``silent`` (read, never answer), ``hangup`` (read,
    close), ``big`` (answer 200 with a 2 MiB body) or ``proxy_error`` (HTML 502)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            conn.settimeout(2)
            try:
                data = conn.recv(65536)
            except OSError:
                continue
            if data:
                self.requests += 1
            if self.mode == "hangup":
                conn.close()
            elif self.mode == "big":
                body = b"x" * (2 * 1024 * 1024)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(body) + body
                )
            elif self.mode == "proxy_error":
                body = b"<html>Bad Gateway</html>"
                conn.sendall(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n"
                    b"content-length: %d\r\n\r\n" % len(body) + body
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for c in self._conns:
            c.close()
        self._sock.close()


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


FAST = Timeouts(connect=1, read=0.3, write=1, pool=1, total=2)


async def test_refused_write_is_retried_and_unavailable() -> None:
    seen: list[Exchange] = []
    async with HttpClient(timeouts=FAST, on_exchange=seen.append, retry_backoff=0.01) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(closed_url() + "/x", {}, idempotent=False, retries=2)
    assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable
    assert len(seen) == 3 and not any(x.sent for x in seen)


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
async def test_silence_after_sending(raw: RawServer) -> None:
    async with HttpClient(timeouts=FAST, retry_backoff=0.01) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(raw.url + "/execute", {"a": 1}, idempotent=False, retries=3)
        assert e.value.code is ErrorCode.UNKNOWN_OUTCOME and not e.value.retryable
        assert raw.requests == 1  # a write that may have arrived is never sent again
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(raw.url + "/read", {"a": 1}, idempotent=True, retries=1)
        assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable
    assert raw.requests == 3  # the read was retried once


@pytest.mark.parametrize("raw", ["hangup"], indirect=True)
async def test_hangup_after_sending(raw: RawServer) -> None:
    async with HttpClient(timeouts=FAST) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(raw.url + "/execute", {}, idempotent=False, retries=2)
    assert e.value.code is ErrorCode.UNKNOWN_OUTCOME
    assert raw.requests == 1


async def test_total_deadline_bounds_everything() -> None:
    """The total deadline ends the call, retries included: the silent server sees one request
    (without it, 6 attempts of a 5 s read). The outer guard only stops a hang."""
    server = RawServer("silent")
    try:
        timeouts = Timeouts(connect=1, read=5, write=1, pool=1, total=0.4)
        async with HttpClient(timeouts=timeouts) as http:
            with anyio.fail_after(20), pytest.raises(ChipiSessionError) as e:
                await http.post_json(server.url, {}, idempotent=True, retries=5)
        assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE
        assert server.requests == 1
    finally:
        server.close()


@pytest.mark.parametrize("raw", ["big"], indirect=True)
async def test_response_size_is_bounded(raw: RawServer) -> None:
    async with HttpClient(timeouts=FAST, max_response_bytes=64 * 1024) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(raw.url, {}, idempotent=True, retries=0)
    assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE


@pytest.mark.parametrize("raw", ["proxy_error"], indirect=True)
async def test_non_json_error_page(raw: RawServer) -> None:
    async with HttpClient(timeouts=FAST) as http:
        response = await http.post_json(raw.url, {}, idempotent=False)
    assert response.status == 502 and response.json is None and "Bad Gateway" in response.text


async def test_messages_never_show_url_paths() -> None:
    url = closed_url() + "/v3/SECRET_PROVIDER_KEY?apikey=SECRET2"
    async with HttpClient(timeouts=FAST, retry_backoff=0.01) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(url, {}, idempotent=True, retries=0)
    for text in (str(e.value), repr(e.value), e.value.message):
        assert "SECRET" not in text and "apikey" not in text
    assert safe_origin("https://user:pw@node.example/v3/KEY") == "https://node.example"


async def test_closed_client() -> None:
    http = HttpClient()
    await http.aclose()
    with pytest.raises(ChipiSessionError) as e:
        await http.post_json("http://127.0.0.1:1", {}, idempotent=True)
    assert e.value.code is ErrorCode.CLOSED


def test_timeouts() -> None:
    t = Timeouts.of(2.0)
    assert t.total == 2.0 and t.read == 2.0 and t.connect == 2.0
    assert Timeouts.of(None) == Timeouts()
    for bad in (0, -1, float("nan"), "3", True):
        with pytest.raises(ChipiSessionError):
            Timeouts.of(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["silent"], indirect=True)
async def test_waiting_for_a_pooled_connection_is_not_sending(raw: RawServer) -> None:
    """A write whose deadline passes while it waits for a free connection never left."""
    import anyio

    timeouts = Timeouts(connect=1, read=5, write=1, pool=5, total=5)
    async with HttpClient(timeouts=timeouts, max_connections=1) as http:
        errors: dict[str, ChipiSessionError] = {}

        async def send(name: str, total: float) -> None:
            try:
                await http.post_json(raw.url, {}, idempotent=False, retries=0, total=total)
            except ChipiSessionError as exc:
                errors[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "first", 1.0)
            await anyio.sleep(0.1)  # the first holds the only connection
            tg.start_soon(send, "second", 0.3)
    assert errors["first"].code is ErrorCode.UNKNOWN_OUTCOME
    assert errors["second"].code is ErrorCode.BACKEND_UNAVAILABLE and errors["second"].retryable
    assert raw.requests == 1


@pytest.mark.parametrize("url", ["not a url", "ftp://h/x", "http://", 123, "http://[::1"])
def test_a_bad_rpc_url_is_a_typed_error(url: object) -> None:
    from chipi_session.backends.starknet_rpc import StarknetRpcBackend

    with pytest.raises(ChipiSessionError) as info:
        StarknetRpcBackend(url)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert str(url) not in info.value.message  # the URL (maybe holding a key) is not echoed
