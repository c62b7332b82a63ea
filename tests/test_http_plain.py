"""chipi_session.http1: the plain-http client under HttpClient (keep-alive, framing, stale
connections, header injection), against a scripted raw-socket server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import anyio
import anyio.to_thread
import pytest

from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.http import Exchange, HttpClient, Timeouts

pytestmark = pytest.mark.anyio

FAST = Timeouts(connect=1, read=2, write=1, pool=1, total=5)
OK = b'{"ok":true}'


def length_response(body: bytes = OK, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (
            len(body),
            extra,
            body,
        )
    )


Handler = Callable[[int, bytes], tuple[bytes, bool]]


class ScriptedServer:
    """Serves each connection until ``handler(request_index, request_bytes)`` says close."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/rpc"

    def _read_request(self, conn: socket.socket, buf: bytearray) -> bytes | None:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None
            buf += data
        head, _, _ = bytes(buf).partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        total = len(head) + 4 + length
        while len(buf) < total:
            buf += conn.recv(65536)
        request = bytes(buf[:total])
        del buf[:total]
        return request

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.settimeout(2)
            buf = bytearray()
            with conn:
                while True:
                    try:
                        request = self._read_request(conn, buf)
                    except OSError:
                        break
                    if request is None:
                        break
                    self.requests.append(request)
                    answer, close = self.handler(len(self.requests) - 1, request)
                    conn.sendall(answer)
                    if close:
                        break
            self.closed.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(handler: Handler) -> ScriptedServer:
        servers.append(ScriptedServer(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


async def test_keep_alive_reuses_one_connection_and_sends_one_well_formed_request(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    server = serve(lambda i, req: (length_response(), False))
    async with HttpClient(timeouts=FAST, headers={"x-extra": "1"}) as http:
        for i in range(5):
            response = await http.post_json(
                server.url,
                {"i": i},
                headers={"x-api-key": "k"},
                params={"v": "a b"},
                idempotent=True,
            )
            assert response.status == 200 and response.json == {"ok": True}
    assert server.connections == 1 and len(server.requests) == 5
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /rpc?v=a+b HTTP/1.1"
    fields = {k.lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    assert fields[b"host"] == server.url.split("/")[2].encode()
    assert fields[b"content-type"] == b"application/json"
    assert fields[b"x-api-key"] == b"k" and fields[b"x-extra"] == b"1"
    assert int(fields[b"content-length"]) == len(body) and body == b'{"i":0}'


async def test_chunked_and_close_delimited_bodies(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'4\r\n{"ok\r\n7;ext=1\r\n":true}\r\n0\r\ntrailer: x\r\n\r\n'
    )
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + OK
    answers = [(chunked, False), (until_close, True), (length_response(), False)]
    server = serve(lambda i, req: answers[i])
    async with HttpClient(timeouts=FAST) as http:
        for _ in answers:
            response = await http.post_json(server.url, {}, idempotent=False)
            assert response.json == {"ok": True}
    assert server.connections == 2  # the close-delimited answer ended its connection


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    """A write on a keep-alive connection the server already closed would be an unknown
    outcome: the idle connection is checked and a fresh one is used instead."""
    server = serve(lambda i, req: (length_response(), True))  # answers, then hangs up
    exchanges: list[Exchange] = []
    async with HttpClient(timeouts=FAST, on_exchange=exchanges.append) as http:
        await http.post_json(server.url, {}, idempotent=False)
        await anyio.to_thread.run_sync(server.closed.wait, 2)
        response = await http.post_json(server.url, {}, idempotent=False, retries=0)
    assert response.status == 200 and server.connections == 2
    assert [e.error for e in exchanges] == [None, None]


async def test_header_injection_is_refused_before_sending(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    server = serve(lambda i, req: (length_response(), False))
    async with HttpClient(timeouts=FAST) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(
                server.url,
                {},
                headers={"authorization": "Bearer x\r\nx-evil: 1"},
                idempotent=False,
            )
    assert e.value.code is ErrorCode.INVALID_INPUT and server.requests == []
    async with HttpClient(timeouts=FAST) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(
                server.url, {}, headers={"authorization": "Bearer é"}, idempotent=False
            )
    assert e.value.code is ErrorCode.INVALID_INPUT and server.requests == []


async def test_garbage_answer_after_sending_a_write_is_an_unknown_outcome(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    server = serve(lambda i, req: (b"SMTP ready\r\n\r\n", True))
    async with HttpClient(timeouts=FAST) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(server.url, {}, idempotent=False)
    assert e.value.code is ErrorCode.UNKNOWN_OUTCOME and len(server.requests) == 1


def test_the_working_path_and_a_plain_http_backend_never_load_httpx() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from chipi_session import ChipiSession, Call, WalletData\n"
        "from chipi_session.backends import ChipiApiBackend\n"
        "b = ChipiApiBackend('pk_dev_' + 'a' * 32, base_url='http://127.0.0.1:9',"
        " rpc_url='http://127.0.0.1:9/rpc')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:5050", True),
        ("http://localhost:5050", True),
        ("http://[::1]:5050", True),
        ("http://127.evil.example", False),
        ("http://10.0.0.1", False),
    ],
)
def test_plain_http_base_url_only_to_loopback(url: str, ok: bool) -> None:
    from chipi_session.backends.chipi_rest import normalize_base_url

    if ok:
        assert normalize_base_url(url) == url + "/v1"
    else:
        with pytest.raises(ChipiSessionError) as e:
            normalize_base_url(url)
        assert e.value.code is ErrorCode.INVALID_INPUT
