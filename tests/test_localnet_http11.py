"""localnet's HTTP/1.1 over raw sockets, on both parsers (chipi_session/localnet/http11.py for
httptools, uvicorn's h11 protocol otherwise): pipelining in order (also behind a slow answer),
HEAD, Connection: close, HTTP/1.0, Expect: 100-continue, chunked bodies, garbage, and idle
keep-alive connections closed. Every wait is bounded; nothing is timed."""

from __future__ import annotations

import importlib.util
import json
import socket
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session.clock import ManualClock  # noqa: E402
from chipi_session.hashing import SN_MAIN  # noqa: E402
from chipi_session.localnet import LocalnetServer  # noqa: E402
from chipi_session.vault import KdfCost  # noqa: E402

PATIENCE = 15.0
KEEP_ALIVE = 0.5

HTTP_IMPLS = [
    "h11",
    pytest.param(
        "httptools",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("httptools") is None, reason="httptools not installed"
        ),
    ),
]


@pytest.fixture(scope="module", params=HTTP_IMPLS)
def server(request: pytest.FixtureRequest) -> Iterator[LocalnetServer]:
    with LocalnetServer(
        clock=ManualClock(1_800_000_000),
        kdf_cost=KdfCost.FAST_FOR_TESTS,
        keep_alive=KEEP_ALIVE,
        request_timeout=5.0,
        http=request.param,
    ) as srv:
        yield srv


def rpc_request(method: str, rid: int, *, extra: bytes = b"") -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method}).encode()
    return (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def read_responses(
    sock: socket.socket, count: int, *, head: bool = False
) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses (status, lower-case headers, body) read off ``sock`` (``head``:
    answers to HEAD, no body however long they say it is)."""
    sock.settimeout(PATIENCE)
    buffer = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    deadline = time.monotonic() + PATIENCE
    while len(out) < count and time.monotonic() < deadline:
        while b"\r\n\r\n" in buffer:
            block, rest = buffer.split(b"\r\n\r\n", 1)
            lines = block.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            if status == 100:
                buffer = rest
                continue
            headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
            length = 0 if head else int(headers.get("content-length", "0"))
            if len(rest) < length:
                break
            out.append((status, headers, rest[:length]))
            buffer = rest[length:]
            if len(out) == count:
                return out
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
    return out


def connect(server: LocalnetServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the connection (anything still in flight, such as the
    rest of a body delimited by the close, is read first)."""
    sock.settimeout(PATIENCE)
    deadline = time.monotonic() + PATIENCE
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_pipelined_requests_are_answered_in_order(server: LocalnetServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(rpc_request("starknet_chainId", i) for i in range(1, 6)))
        answers = read_responses(sock, 5)
    assert [json.loads(body)["id"] for _, _, body in answers] == [1, 2, 3, 4, 5]
    assert all(status == 200 for status, _, _ in answers)


def test_a_request_pipelined_behind_a_slow_answer_waits_its_turn(server: LocalnetServer) -> None:
    slow = json.dumps({"publicKey": "0x1", "typedData": {}, "userSignature": [1, 2]}).encode()
    headers = f"x-api-key: {server.api_key}\r\nauthorization: Bearer t\r\n".encode()
    first = (
        b"POST /v1/transactions/execute-sponsored-transaction HTTP/1.1\r\nHost: x\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(slow)
        + slow
    )
    server.faults.execute_delay_before = 0.3
    try:
        with connect(server) as sock:
            sock.sendall(first + rpc_request("starknet_chainId", 7))
            answers = read_responses(sock, 2)
    finally:
        server.faults.reset()
    assert [status for status, _, _ in answers] == [400, 200]
    assert json.loads(answers[1][2])["id"] == 7


def test_head_connection_close_and_http_1_0(server: LocalnetServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        ((head_status, head_headers, _),) = read_responses(sock, 1, head=True)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        ((status, headers, body),) = read_responses(sock, 1)
    assert head_status == 200 and int(head_headers["content-length"]) == len(body)
    assert status == 200 and json.loads(body)["status"] == "ok"
    with connect(server) as sock:
        sock.sendall(rpc_request("starknet_chainId", 1, extra=b"Connection: close\r\n"))
        ((status, headers, _),) = read_responses(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        assert closed_by_server(sock)
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        ((status, _, body),) = read_responses(sock, 1)
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert closed_by_server(sock)


def test_expect_continue_and_chunked_bodies(server: LocalnetServer) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "starknet_chainId"}).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % 10
            + body[:10]
            + b"\r\n"
            + b"%x\r\n" % (len(body) - 10)
            + body[10:]
            + b"\r\n0\r\n\r\n"
        )
        answers = read_responses(sock, 2)
    assert [json.loads(b)["result"] for _, _, b in answers] == [hex(SN_MAIN)] * 2


def test_garbage_is_a_400_and_the_server_lives_on(server: LocalnetServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        ((status, _, _),) = read_responses(sock, 1)
        assert status == 400
        assert closed_by_server(sock)
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200


def test_idle_keep_alive_connections_are_closed(server: LocalnetServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200
        assert closed_by_server(sock)  # after KEEP_ALIVE, well inside PATIENCE


@pytest.mark.parametrize("http", HTTP_IMPLS)
def test_cors_preflight_and_simple_requests(http: str) -> None:
    """--cors-origin wraps the app in Starlette's CORS middleware, over either parser."""
    httpx = pytest.importorskip("httpx")
    with (
        LocalnetServer(
            kdf_cost=KdfCost.FAST_FOR_TESTS, cors_origins=("http://app.test",), http=http
        ) as srv,
        httpx.Client(base_url=srv.url, timeout=PATIENCE) as client,
    ):
        preflight = {"origin": "http://app.test", "access-control-request-method": "POST"}
        r = client.options("/v1/transactions/prepare-typed-data", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.test"
        r = client.post(
            "/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": "starknet_chainId"},
            headers={"origin": "http://app.test"},
        )
        assert r.json()["result"] == hex(SN_MAIN)
        assert r.headers["access-control-allow-origin"] == "http://app.test"
        elsewhere = {**preflight, "origin": "http://elsewhere.test"}
        r = client.options("/rpc", headers=elsewhere)
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
