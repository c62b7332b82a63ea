"""chipi_session.http1: the plain-http client under HttpClient (keep-alive, framing by
httptools, 1xx, malformed and oversized answers, stale connections, header injection), against
a scripted raw-socket server on 127.0.0.1."""

from __future__ import annotations

import base64
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


async def test_userinfo_in_a_plain_http_url_is_sent_as_basic_auth(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    """``http://user:pass@host`` (a node behind basic auth) goes through httpx, which sends
    the credentials; our plain client would silently drop them."""
    server = serve(lambda i, req: (length_response(), False))
    url = server.url.replace("http://", "http://alice:s3cret@")
    async with HttpClient(timeouts=FAST) as http:
        response = await http.post_json(url, {"i": 1}, idempotent=True)
    assert response.status == 200 and response.json == {"ok": True}
    head = server.requests[0].partition(b"\r\n\r\n")[0].lower()
    assert b"authorization: basic " + base64.b64encode(b"alice:s3cret").lower() in head
    assert b"alice" not in head.split(b"\r\n")[0]  # never in the request line


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


async def test_chunked_extensions_and_trailers_are_framing_not_headers(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-head: 1\r\n\r\n"
        b'4;name="quoted;value";other\r\n{"ok\r\n'
        b'7;ext=1\r\n":true}\r\n'
        b"0;last\r\nx-trailer: t\r\nx-head: from-trailer\r\n\r\n"
    )
    server = serve(lambda i, req: (chunked, False))
    async with HttpClient(timeouts=FAST) as http:
        for _ in range(2):
            response = await http.post_json(server.url, {}, idempotent=False)
            assert response.json == {"ok": True}
            assert response.headers["x-head"] == "1" and "x-trailer" not in response.headers
    assert server.connections == 1  # the chunked body ended where its last chunk said


async def test_interim_1xx_answers_are_skipped(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n" + length_response()
    )
    server = serve(lambda i, req: (answer, False))
    async with HttpClient(timeouts=FAST) as http:
        for _ in range(2):
            response = await http.post_json(server.url, {}, idempotent=False)
            assert response.status == 200 and response.json == {"ok": True}
            assert "link" not in response.headers
    assert server.connections == 1


async def test_no_body_statuses_and_http10_framing(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    answers = [
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),  # no body, keep-alive
        (b"HTTP/1.0 200 OK\r\ncontent-length: 11\r\n\r\n" + OK, False),  # 1.0: not reused
        (b"HTTP/1.1 200 OK\r\n\r\n" + OK, True),  # no length: the body runs to the close
        (length_response(), False),
    ]
    server = serve(lambda i, req: answers[i])
    async with HttpClient(timeouts=FAST) as http:
        statuses = [(await http.post_json(server.url, {}, idempotent=False)) for _ in answers]
    assert [r.status for r in statuses] == [204, 200, 200, 200]
    assert [r.json for r in statuses] == [None, {"ok": True}, {"ok": True}, {"ok": True}]
    assert server.connections == 3


async def test_bytes_after_a_complete_response_retire_the_connection(
    serve: Callable[[Handler], ScriptedServer],
) -> None:
    """Whatever follows a response on its connection (a second response, junk) belongs to no
    request of ours: the answer stands, the connection is not reused."""
    answers = [
        (length_response() + length_response(), False),
        (length_response() + b"junk\r\n\r\n", False),
        (length_response(), False),
    ]
    server = serve(lambda i, req: answers[i])
    async with HttpClient(timeouts=FAST) as http:
        for _ in answers:
            response = await http.post_json(server.url, {}, idempotent=False)
            assert response.json == {"ok": True}
    assert server.connections == 3


MALFORMED = {
    "not_http": b"SMTP ready\r\n\r\n",
    "bad_status": b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n",
    "bad_header": b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n",
    "bad_length": b"HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n",
    "two_lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
    "length_and_chunked": (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bad_chunk_size": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "chunk_not_terminated": (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n"
    ),
    "switching_protocols": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_a_malformed_response_is_a_protocol_error_at_once(
    serve: Callable[[Handler], ScriptedServer], kind: str
) -> None:
    """The server keeps the connection open: the client must refuse what it read, not wait
    for more (a timeout would be reported as TimeoutError, not RemoteProtocolError)."""
    server = serve(lambda i, req: (MALFORMED[kind], False))
    exchanges: list[Exchange] = []
    async with HttpClient(timeouts=FAST, on_exchange=exchanges.append) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(server.url, {}, idempotent=False)
    assert e.value.code is ErrorCode.UNKNOWN_OUTCOME
    assert [x.error for x in exchanges] == ["RemoteProtocolError"]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n" + OK,  # body cut short
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n",  # no last chunk
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n",  # head cut short
    ],
)
async def test_a_response_cut_by_the_close_is_a_protocol_error(
    serve: Callable[[Handler], ScriptedServer], answer: bytes
) -> None:
    server = serve(lambda i, req: (answer, True))
    exchanges: list[Exchange] = []
    async with HttpClient(timeouts=FAST, on_exchange=exchanges.append) as http:
        with pytest.raises(ChipiSessionError) as e:
            await http.post_json(server.url, {}, idempotent=False)
    assert e.value.code is ErrorCode.UNKNOWN_OUTCOME
    assert [x.error for x in exchanges] == ["RemoteProtocolError"]


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 999999\r\n\r\n",  # refused by its length alone
        CHUNKED_HEAD + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 3,  # chunks over the cap
        CHUNKED_HEAD + b"0\r\nx-t: " + b"t" * 300_000,  # an endless trailer
    ],
    ids=["length", "chunks", "trailer"],
)
async def test_oversized_responses_are_refused_without_waiting(
    serve: Callable[[Handler], ScriptedServer], answer: bytes
) -> None:
    server = serve(lambda i, req: (answer, False))
    exchanges: list[Exchange] = []
    async with HttpClient(
        timeouts=FAST, max_response_bytes=2048, on_exchange=exchanges.append
    ) as http:
        with pytest.raises(ChipiSessionError):
            await http.post_json(server.url, {}, idempotent=False)
    assert [x.error for x in exchanges] == ["ResponseTooLarge"]
