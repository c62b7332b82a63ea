"""localnet under hostile clients (issue 9 §6): bodies nested past the stack, connections held
open with half a request, clients that hang up mid-body, and a paymaster that would otherwise
remember every prepared request. Raw sockets over loopback; every wait is bounded."""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session.clock import ManualClock  # noqa: E402
from chipi_session.errors import ChipiSessionError, ErrorCode  # noqa: E402
from chipi_session.localchain import LocalChain  # noqa: E402
from chipi_session.localchain.paymaster import Paymaster  # noqa: E402
from chipi_session.localnet import LocalnetServer, main  # noqa: E402
from chipi_session.types import Call  # noqa: E402
from chipi_session.vault import KdfCost, Vault  # noqa: E402

START = 1_800_000_000
#: Short enough to keep the suite fast, long enough for a loaded 2-core machine.
TIMEOUT = 0.5
#: Upper bound on any wait for the server (a bound, not a timing assertion).
PATIENCE = 15.0
NESTED = b"[" * 100_000


#: Both HTTP/1.1 parsers enforce the request deadline (chipi_session/localnet/protocols.py).
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
        clock=ManualClock(START),
        kdf_cost=KdfCost.FAST_FOR_TESTS,
        request_timeout=TIMEOUT,
        keep_alive=TIMEOUT,
        http=request.param,
    ) as srv:
        assert srv.http == request.param
        yield srv


def headers(server: LocalnetServer) -> dict[str, str]:
    return {"x-api-key": server.api_key, "authorization": "Bearer user-jwt"}


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def connect(server: LocalnetServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    return sock


def wait_closed(sock: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset) within PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    try:
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


# -- bodies nested deeper than the stack -------------------------------------------------------


def test_deeply_nested_rest_body_is_400(
    server: LocalnetServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=server.url, headers=headers(server), timeout=PATIENCE) as http:
        r = http.post("/v1/transactions/prepare-typed-data", content=NESTED)
        assert r.status_code == 400
        assert r.json()["code"] == "INVALID_INPUT"
        # the server is fine afterwards
        assert http.get("/health").json()["status"] == "ok"
    assert errors_logged(caplog) == []


def test_deeply_nested_rpc_body_is_a_parse_error(
    server: LocalnetServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=server.url, timeout=PATIENCE) as http:
        r = http.post("/rpc", content=NESTED, headers={"content-type": "application/json"})
        assert r.status_code == 200
        assert r.json()["error"]["code"] == -32700
        ok = http.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "starknet_chainId"})
        assert "result" in ok.json()
    assert errors_logged(caplog) == []


# -- connections held open with half a request ---------------------------------------------------


def test_partial_requests_are_closed_after_the_request_timeout(server: LocalnetServer) -> None:
    """Idle, half a head, a head with half its body: each is closed by the server (uvicorn
    alone would hold all of them forever)."""
    partial = [
        b"",
        b"POST /rpc HTTP/1.1\r\nHost: x\r\n",
        b'POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"jsonrpc"',
        b"POST /v1/transactions/prepare-typed-data HTTP/1.1\r\nHost: x\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
    ]
    socks = [connect(server) for _ in range(4 * len(partial))]
    try:
        for i, sock in enumerate(socks):
            if partial[i % len(partial)]:
                sock.sendall(partial[i % len(partial)])
        assert all(wait_closed(sock) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def test_a_slow_trickle_does_not_keep_a_request_alive(server: LocalnetServer) -> None:
    """The deadline is for the whole request, not per byte (a slowloris sends a byte at a
    time, each well inside any idle timeout)."""
    sock = connect(server)
    try:
        sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        deadline = time.monotonic() + PATIENCE
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(TIMEOUT / 5)
            try:
                closed = sock.recv(65536) == b"" or closed
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
        assert closed
    finally:
        sock.close()


def test_blank_lines_between_requests_do_not_keep_a_connection_alive(
    server: LocalnetServer,
) -> None:
    """Line breaks before a request are no request: they do not restart its deadline."""
    sock = connect(server)
    try:
        deadline = time.monotonic() + PATIENCE
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(TIMEOUT / 5)
            try:
                closed = sock.recv(65536) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
        assert time.monotonic() < deadline  # closed (or refused) well before PATIENCE
    finally:
        sock.close()


def test_complete_requests_and_slow_answers_are_not_cut(server: LocalnetServer) -> None:
    """The deadline covers receiving a request, not the app's work: an answer that takes
    longer than the timeout still arrives, and a keep-alive connection serves the next one."""
    with httpx.Client(base_url=server.url, headers=headers(server), timeout=PATIENCE) as http:
        server.faults.execute_delay_before = TIMEOUT * 3
        try:
            r = http.post(
                "/v1/transactions/execute-sponsored-transaction",
                json={
                    "publicKey": "0x1",
                    "typedData": {"message": {"Nonce": "0x1"}},
                    "userSignature": {"r": "1", "s": "2"},
                },
            )
        finally:
            server.faults.reset()
        assert r.status_code == 400 and r.json()["code"] == "INVALID_INPUT"  # not issued
        for _ in range(3):
            assert http.get("/health").status_code == 200


# -- clients that hang up mid-body ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rpc", "/v1/transactions/prepare-typed-data"])
def test_a_client_gone_mid_body_logs_one_quiet_line(
    server: LocalnetServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO)
    auth = "".join(f"{k}: {v}\r\n" for k, v in headers(server).items())
    sock = connect(server)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5000\r\n\r\n".encode()
        + b'{"jsonrpc": '
    )
    time.sleep(0.05)  # let the app start reading the body (not a timing assertion)
    sock.close()
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and not any(
        "disconnected" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.01)
    quiet = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(quiet) == 1 and quiet[0].levelno <= logging.WARNING and not quiet[0].exc_info
    assert errors_logged(caplog) == []


# -- the paymaster's memory is bounded ------------------------------------------------------------


def _chain() -> tuple[LocalChain, int, int]:
    chain = LocalChain(clock=ManualClock(START), vault=Vault(KdfCost.FAST_FOR_TESTS))
    wallet = chain.create_wallet("1234").address
    token = chain.deploy_token("TKN", 6)
    return chain, wallet, token


def test_prepared_requests_are_capped_by_count_oldest_first() -> None:
    chain, wallet, token = _chain()
    paymaster = Paymaster(chain, max_requests=3)
    call = Call(to=token, selector="transfer", calldata=[1, 1, 0])
    nonces = [
        int(paymaster.prepare_typed_data(wallet, [call])["message"]["Nonce"], 16) for _ in range(5)
    ]
    assert paymaster.issued_count == 3
    for nonce, kept in zip(nonces, [False, False, True, True, True], strict=True):
        typed = {"message": {"Nonce": hex(nonce)}}
        with pytest.raises(ChipiSessionError) as info:
            paymaster.execute_sponsored(wallet, typed, [1, 2])
        # forgotten: "not issued"; kept: it gets as far as comparing the typed data
        expected = "not issued" if not kept else "altered"
        assert expected in info.value.message and info.value.code is ErrorCode.INVALID_INPUT


def test_prepared_requests_are_capped_by_bytes() -> None:
    chain, wallet, token = _chain()
    big = Call(to=token, selector="transfer", calldata=list(range(2000)))
    one = Paymaster(chain).prepare_typed_data  # default caps: unaffected by a few requests
    one(wallet, [big])
    paymaster = Paymaster(chain, max_bytes=3 * 600_000)
    for _ in range(10):
        paymaster.prepare_typed_data(wallet, [big])
    assert 1 <= paymaster.issued_count < 10
    assert paymaster.issued_bytes <= 3 * 600_000


def test_prepared_request_caps_are_validated() -> None:
    chain, _, _ = _chain()
    for bad in ({"max_requests": 0}, {"max_bytes": -1}, {"max_requests": "10"}):
        with pytest.raises(ChipiSessionError) as info:
            Paymaster(chain, **bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.INVALID_INPUT


# -- bad server options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 70000},
        {"port": -1},
        {"port": "5959"},
        {"host": None},
        {"keep_alive": 0},
        {"request_timeout": float("nan")},
        {"api_keys": "pk_dev_" + "a" * 32},
        {"bearer_tokens": [""]},
        {"cors_origins": "http://x"},
        {"chain_id": 2**300},
        {"kdf_cost": None},
        {"clock": 5},
        {"http": "h2"},
        {"http": None},
    ],
)
def test_server_options_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ChipiSessionError) as info:
        LocalnetServer(**kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.INVALID_INPUT


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "70000"],
        ["--port", "x"],
        ["--request-timeout", "0"],
        ["--keep-alive", "inf"],
        ["--http", "h2"],
    ],
)
def test_cli_bad_options_exit_2_without_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--fast-kdf"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_cli_port_out_of_range_in_a_process() -> None:
    """The installed command, end to end: a usage error, exit status 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "chipi_session.cli", "localnet", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "port must be 0-65535" in proc.stderr and "Traceback" not in proc.stderr
