"""Running the localnet app: in-process on a background thread (tests), or in the foreground (CLI).

The server is uvicorn on its own asyncio loop in its own thread, bound to a loopback address
only, so clients on any event loop (asyncio or trio) in the calling thread can talk to it over
real HTTP. Port 0 picks a free ephemeral port; the bound URLs are on the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import signal
import socket
import string
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import uvicorn

from ..clock import Clock, SystemClock
from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, to_hex
from ..hashing import SN_MAIN
from ..localchain import LocalChain
from ..logs import get_logger
from ..types import WalletData
from ..validate import check_clock, check_instance, check_int, check_number, describe, invalid
from ..vault import KdfCost, Vault
from .app import MAX_BODY_BYTES, AuthConfig, Faults, create_app
from .protocols import HttpImpl, http_protocol, resolve_http
from .wire import API_KEY_PATTERN

__all__ = ["LocalnetServer", "DemoWallet", "generate_api_key"]

logger = get_logger("chipi_session.localnet")

_ALNUM = string.ascii_letters + string.digits


def generate_api_key(prefix: str = "pk_dev_") -> str:
    """A random key in the shape the TS SDK accepts (``pk_dev_`` + 32 alphanumerics)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(32))


def _ignore_signal(signum: int, frame: object) -> None:
    """Placeholder handler: uvicorn installs its own while serving."""


def _check_loopback(host: str) -> None:
    if not isinstance(host, str):
        raise invalid(f"host must be a loopback address, got {describe(host)}")
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ChipiSessionError(
        ErrorCode.INVALID_INPUT,
        f"localnet binds loopback addresses only (127.0.0.1, ::1), not {host!r}",
    )


def _check_strings(values: object, what: str) -> list[str] | None:
    """None, or a collection of non-empty strings (a lone str is a mistake, not a list)."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise invalid(f"{what} must be a list of strings, got {describe(values)}")
    for value in values:
        if not isinstance(value, str) or not value:
            raise invalid(f"{what} must hold non-empty strings, got {describe(value)}")
    return list(values)


@attrs.frozen
class DemoWallet:
    """A funded CHIPI wallet to try things with (printed by the CLI).

    ``encrypted_private_key`` is in CryptoJS's format so Chipi's JS SDK can decrypt it with
    ``pin`` (our Vault reads it too). It is deliberately weak; it guards play money.
    """

    wallet: WalletData
    pin: str = attrs.field(repr=False)
    encrypted_private_key: str = attrs.field(repr=False)
    token: int
    balance: int

    def to_json(self) -> dict[str, Any]:
        return {
            "publicKey": to_hex(self.wallet.address),
            "encryptedPrivateKey": self.encrypted_private_key,
            "walletType": "CHIPI",
            "pin": self.pin,
            "token": to_hex(self.token),
            "balance": str(self.balance),
        }


class LocalnetServer:
    """A Chipi-compatible REST + JSON-RPC server over a :class:`LocalChain`.

    ``with LocalnetServer() as server:`` starts it on a background thread and stops it on
    exit; ``server.rest_url`` (for ``base_url`` / the JS SDK's ``alphaUrl``) and
    ``server.rpc_url`` (``rpc_url`` / ``STARKNET_RPC_URL``) are ready once started. Use
    :meth:`locked` to touch the chain from another thread. ``faults`` injects failures in tests.
    ``http`` is the HTTP/1.1 parser: ``"auto"`` (httptools when installed, else h11), or one of
    them by name; both enforce ``request_timeout`` (see :mod:`.protocols`).
    """

    def __init__(
        self,
        chain: LocalChain | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        chain_id: int = SN_MAIN,
        kdf_cost: KdfCost = KdfCost.DEFAULT,
        api_keys: frozenset[str] | set[str] | list[str] | None = None,
        accept_any_api_key: bool = False,
        bearer_tokens: frozenset[str] | set[str] | list[str] | None = None,
        legacy_session_layout: bool = False,
        cors_origins: tuple[str, ...] = (),
        keep_alive: float = 30.0,
        request_timeout: float = 30.0,
        http: HttpImpl = "auto",
    ) -> None:
        _check_loopback(host)
        if http not in ("auto", "httptools", "h11"):
            raise invalid(f"http must be 'auto', 'httptools' or 'h11', got {describe(http)}")
        self.http = resolve_http(http)
        if self.http != http and http != "auto":
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{http} is not installed")
        check_int(port, "port", low=0, high=65535)
        self._keep_alive = check_number(keep_alive, "keep_alive", positive=True)
        self._request_timeout = check_number(request_timeout, "request_timeout", positive=True)
        if chain is not None:
            check_instance(chain, "chain", LocalChain, "a LocalChain")
        if clock is not None:
            check_clock(clock)
        parse_felt(chain_id, "chain_id")
        check_instance(kdf_cost, "kdf_cost", KdfCost, "a KdfCost")
        api_keys = _check_strings(api_keys, "api_keys")
        bearer_tokens = _check_strings(bearer_tokens, "bearer_tokens")
        cors_origins = tuple(_check_strings(cors_origins, "cors_origins") or ())
        for name, flag in (
            ("accept_any_api_key", accept_any_api_key),
            ("legacy_session_layout", legacy_session_layout),
        ):
            check_instance(flag, name, bool, "a bool")
        if chain is None:
            chain = LocalChain(
                clock=clock or SystemClock(), chain_id=chain_id, vault=Vault(kdf_cost)
            )
        self.chain = chain
        self.lock = threading.RLock()
        self.faults = Faults()
        keys = frozenset(api_keys) if api_keys else frozenset({generate_api_key()})
        for key in keys:
            if not API_KEY_PATTERN.fullmatch(key):
                raise ChipiSessionError(
                    ErrorCode.INVALID_INPUT, "API keys must look like pk_dev_<32+ alphanumerics>"
                )
        self.api_key = sorted(keys)[0]
        self.auth = AuthConfig(
            api_keys=None if accept_any_api_key else keys,
            bearer_tokens=frozenset(bearer_tokens) if bearer_tokens else None,
        )
        self.app = create_app(
            chain,
            lock=self.lock,
            auth=self.auth,
            faults=self.faults,
            legacy_session_layout=legacy_session_layout,
            cors_origins=cors_origins,
        )
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the server is not bound yet")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return self.url + "/v1"

    @property
    def rpc_url(self) -> str:
        return self.url + "/rpc"

    # -- chain access -----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[LocalChain]:
        """The chain, with the server's handlers held off meanwhile."""
        with self.lock:
            yield self.chain

    def create_demo_wallet(self, pin: str = "1234", *, fund: int = 1_000 * 10**6) -> DemoWallet:
        """Create a wallet, deploy a USDC-like token (6 decimals) and fund the wallet."""
        with self.lock:
            wallet = self.chain.create_wallet(pin)
            token = self.chain.deploy_token("lUSD", 6)
            self.chain.mint(token, wallet.address, fund)
            vault = self.chain.vault
        assert vault is not None  # create_wallet sets one
        owner = vault.decrypt(wallet.encrypted_private_key, pin)
        try:
            legacy = vault.encrypt_legacy_cryptojs(owner.reveal(), pin)
        finally:
            owner.zero()
        return DemoWallet(
            wallet=wallet, pin=pin, encrypted_private_key=legacy, token=token, balance=fund
        )

    # -- lifecycle --------------------------------------------------------------------------

    def bind(self) -> LocalnetServer:
        """Bind the listening socket now (so the URLs are known before serving)."""
        if self._sock is None:
            self._sock = self._bind()
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says TCP; without it every response waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=http_protocol(self.http, self._request_timeout, self._keep_alive, MAX_BODY_BYTES),
            ws="none",
            proxy_headers=False,  # loopback only: no proxy in front, and a layer less per request
            timeout_keep_alive=self._keep_alive,  # type: ignore[arg-type]  # a float works
            timeout_graceful_shutdown=1,
            server_header=False,
        )

    def start(self, timeout: float = 10.0) -> LocalnetServer:
        """Bind and serve on a daemon thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self.bind()
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(
            target=self._thread_main, name="chipi-localnet", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"localnet failed to start: {self._thread_error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("localnet did not start in time")
            time.sleep(0.005)
        logger.info("localnet serving on %s", self.url)
        return self

    def _thread_main(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()/stop()
            self._thread_error = exc
            logger.exception("localnet thread crashed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (in-flight requests get ~1 s) and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._thread = None
        self._server = None

    def run(self) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (the CLI)."""
        self.bind()
        assert self._sock is not None
        self._server = uvicorn.Server(self._config())
        # uvicorn re-raises the signal that stopped it once it has shut down; with these
        # handlers in place that re-raise is a no-op, so Ctrl-C / SIGTERM end with status 0.
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, _ignore_signal)
        try:
            self._server.run(sockets=[self._sock])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._sock.close()
            self._sock = None
            self._server = None

    def __enter__(self) -> LocalnetServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._sock is not None else "unbound"
        return f"LocalnetServer({where})"
