"""The localnet ASGI app (Starlette): Chipi's REST API and Starknet JSON-RPC over one LocalChain.

REST (docs/wire-protocol.md), all ``POST`` under ``/v1`` and authenticated (``x-api-key`` of the form
``pk_dev_``/``pk_prod_`` + 32 alphanumerics, and ``Authorization: Bearer``):

* ``/transactions/prepare-typed-data`` -> ``{typedData, walletType}`` (single-use SNIP-9 nonce)
* ``/transactions/execute-sponsored-transaction`` -> ``{transactionHash}``
* ``/transactions/execute-sponsored-raw`` -> 501 (SHHH wallets are not emulated)

JSON-RPC at ``/rpc`` (see :mod:`.rpc`), no authentication, like a public node. Errors are
``{message, code, status}`` with a 4xx status and Chipi's codes. The chain is shared with the
thread that owns the server, so every access holds ``lock``.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ChipiSessionError, ErrorCode
from ..felts import to_hex
from ..localchain import LocalChain
from ..logs import get_logger
from .rpc import RpcDispatcher
from .wire import API_KEY_PATTERN, WireError, wire_calls, wire_felt, wire_signature

__all__ = ["AuthConfig", "Faults", "create_app", "MAX_BODY_BYTES"]

logger = get_logger("chipi_session.localnet")

MAX_BODY_BYTES = 1024 * 1024


@attrs.frozen
class AuthConfig:
    """Who may use the REST API. ``None`` = any well-formed API key / any bearer token."""

    api_keys: frozenset[str] | None = None
    bearer_tokens: frozenset[str] | None = None


@attrs.define
class Faults:
    """Fault injection for tests; set attributes from any thread, :meth:`reset` after use.

    ``*_status`` answers that HTTP status (``{message, code}``) instead of doing the work;
    ``execute_delay_before`` / ``_after`` sleep around a *real* execution (the transaction
    runs even if the client has given up, like a paymaster that already relayed it);
    ``prepare_tamper`` rewrites the typed data the server hands out (the server still expects
    its original back).
    """

    prepare_status: int | None = None
    prepare_tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    execute_status: int | None = None
    execute_delay_before: float = 0.0
    execute_delay_after: float = 0.0
    rpc_status: int | None = None

    def reset(self) -> None:
        self.prepare_status = None
        self.prepare_tamper = None
        self.execute_status = None
        self.execute_delay_before = 0.0
        self.execute_delay_after = 0.0
        self.rpc_status = None


def _status_for(error: ChipiSessionError) -> tuple[int, str]:
    """HTTP status and wire code for a chain/paymaster error."""
    code = error.code
    if code is ErrorCode.UNAUTHORIZED:
        return 401, code.value
    if code is ErrorCode.TRANSACTION_REJECTED and "duplicated nonce" in error.message:
        return 409, "NONCE_USED"
    if code in (ErrorCode.BACKEND_UNAVAILABLE, ErrorCode.UNKNOWN_OUTCOME):
        return 503, code.value
    return 400, code.value


def _error(status: int, code: str, message: str, timing: float | None = None) -> JSONResponse:
    return _json({"message": message, "code": code, "status": status}, status, timing)


def _json(body: Any, status: int = 200, timing: float | None = None) -> JSONResponse:
    headers = {}
    if timing is not None:
        headers["server-timing"] = f"app;dur={timing * 1000:.3f}"
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise WireError(413, "PAYLOAD_TOO_LARGE", "request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # ClientDisconnect if the client goes away
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WireError(413, "PAYLOAD_TOO_LARGE", "request body too large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        raise WireError.bad("request body is not JSON") from None


def _gone(request: Request) -> Response:
    """A client that hung up mid-request: one quiet line, no traceback (nobody reads the
    answer)."""
    client = request.client
    logger.info(
        "client %s disconnected before sending all of %s",
        f"{client.host}:{client.port}" if client else "?",
        request.url.path,
    )
    return Response(status_code=400)


def _rpc_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def _authorize(request: Request, auth: AuthConfig) -> None:
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        raise WireError(401, "UNAUTHORIZED", "Missing API key (x-api-key header)")
    if not API_KEY_PATTERN.fullmatch(key):
        raise WireError(401, "UNAUTHORIZED", "Invalid API key format")
    if auth.api_keys is not None and not any(
        hmac.compare_digest(key.encode(), k.encode()) for k in auth.api_keys
    ):
        raise WireError(401, "UNAUTHORIZED", "Invalid API key")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise WireError(401, "UNAUTHORIZED", "Missing bearer token")
    if auth.bearer_tokens is not None and not any(
        hmac.compare_digest(token.encode(), t.encode()) for t in auth.bearer_tokens
    ):
        raise WireError(401, "UNAUTHORIZED", "Invalid bearer token")


def create_app(
    chain: LocalChain,
    *,
    lock: threading.RLock | None = None,
    auth: AuthConfig | None = None,
    faults: Faults | None = None,
    legacy_session_layout: bool = False,
    cors_origins: tuple[str, ...] = (),
) -> Starlette:
    """The ASGI app. ``lock`` guards ``chain`` against other threads (the owner's tests)."""
    guard = lock or threading.RLock()
    access = auth or AuthConfig()
    fault = faults or Faults()
    dispatcher = RpcDispatcher(chain, legacy_session_layout=legacy_session_layout)

    def rest(
        handler: Callable[[Request, Any], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if logger.isEnabledFor(logging.DEBUG):  # parsing the URL costs ~0.1 ms a request
                version = request.query_params.get("__chipi_api_version")
                logger.debug("%s %s (api version %s)", request.method, request.url.path, version)
            try:
                _authorize(request, access)
                body = await _read_json(request)
                if not isinstance(body, Mapping):
                    raise WireError.bad("request body must be a JSON object")
                return await handler(request, body)
            except ClientDisconnect:
                return _gone(request)
            except WireError as exc:
                return _error(exc.status, exc.code, exc.message)
            except ChipiSessionError as exc:
                status, code = _status_for(exc)
                return _error(status, code, exc.message)
            except Exception:
                logger.exception("localnet %s failed", request.url.path)
                return _error(500, "INTERNAL_ERROR", "internal error")

        return endpoint

    async def prepare(request: Request, body: Any) -> Response:
        if fault.prepare_status is not None:
            status = fault.prepare_status
            return _error(status, "INJECTED_FAULT", f"injected HTTP {status}")
        started = time.perf_counter()
        wallet = wire_felt(body.get("publicKey"), "publicKey")
        wallet_type = body.get("walletType")
        if wallet_type is not None and wallet_type != "CHIPI":
            raise WireError.bad(
                f"walletType {str(wallet_type)[:16]} is not supported by localnet (CHIPI only)",
                ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION.value,
            )
        calls = wire_calls(body.get("calls"))
        with guard:
            typed_data = chain.prepare_typed_data(wallet, calls)
        elapsed = time.perf_counter() - started
        tamper = fault.prepare_tamper
        if tamper is not None:
            typed_data = tamper(typed_data)
        return _json({"typedData": typed_data, "walletType": "CHIPI"}, timing=elapsed)

    async def execute(request: Request, body: Any) -> Response:
        if fault.execute_status is not None:
            status = fault.execute_status
            return _error(status, "INJECTED_FAULT", f"injected HTTP {status}")
        wallet = wire_felt(body.get("publicKey"), "publicKey")
        typed_data = body.get("typedData")
        if not isinstance(typed_data, Mapping):
            raise WireError.bad("typedData must be an object")
        signature, _is_session = wire_signature(body.get("userSignature"))
        if fault.execute_delay_before > 0:
            await anyio.sleep(fault.execute_delay_before)
        started = time.perf_counter()
        with guard:
            tx_hash = chain.execute_sponsored(wallet, typed_data, signature)
        elapsed = time.perf_counter() - started
        if fault.execute_delay_after > 0:
            await anyio.sleep(fault.execute_delay_after)
        return _json({"transactionHash": tx_hash}, timing=elapsed)  # canonical hex already

    async def execute_raw(request: Request, body: Any) -> Response:
        return _error(
            501,
            "NOT_IMPLEMENTED",
            "execute-sponsored-raw (SHHH wallets) is not emulated by localnet; "
            "use a CHIPI wallet with prepare-typed-data + execute-sponsored-transaction",
        )

    async def rpc(request: Request) -> Response:
        if fault.rpc_status is not None:
            return Response("injected fault", status_code=fault.rpc_status)
        try:
            payload = await _read_json(request)
        except ClientDisconnect:
            return _gone(request)
        except WireError as exc:
            if exc.status == 413:
                return _error(exc.status, exc.code, exc.message)
            return _rpc_error(-32700, "Parse error")
        started = time.perf_counter()
        try:
            with guard:
                answer = dispatcher.handle(payload)
        except Exception:  # a bug: answer like a node does (-32603), never plain-text 500
            logger.exception("localnet /rpc failed")
            return _rpc_error(-32603, "Internal error")
        elapsed = time.perf_counter() - started
        if answer is None:
            return Response(status_code=204)
        return _json(answer, timing=elapsed)

    async def health(request: Request) -> Response:
        with guard:
            body = {
                "status": "ok",
                "chainId": to_hex(chain.chain_id),
                "blockNumber": int(chain.block_number),
                "timestamp": int(chain.now()),
            }
        return _json(body)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "NOT_FOUND", f"no route {request.method} {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} not allowed here")

    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["POST", "GET", "OPTIONS"],
                allow_headers=["content-type", "authorization", "x-api-key"],
            )
        )
    routes = [
        Route("/v1/transactions/prepare-typed-data", rest(prepare), methods=["POST"]),
        Route("/v1/transactions/execute-sponsored-transaction", rest(execute), methods=["POST"]),
        Route("/v1/transactions/execute-sponsored-raw", rest(execute_raw), methods=["POST"]),
        Route("/rpc", rpc, methods=["POST"]),
        Route("/rpc/{version}", rpc, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: not_allowed},
    )
