"""The localnet ASGI app (plain ASGI, see :mod:`.asgi`): Chipi's REST API and Starknet JSON-RPC over one LocalChain.

REST (docs/wire-protocol.md), all ``POST`` under ``/v1`` and authenticated (``x-api-key`` of the form
``pk_dev_``/``pk_prod_`` + 32 alphanumerics, and ``Authorization: Bearer``):

* ``/transactions/prepare-typed-data`` -> ``{typedData, walletType}`` (single-use SNIP-9 nonce)
* ``/transactions/execute-sponsored-transaction`` -> ``{transactionHash}``
* ``/transactions/execute-sponsored-raw`` -> 501 (SHHH wallets are not emulated)

JSON-RPC at ``/rpc`` (see :mod:`.rpc`), no authentication, like a public node. Errors are
``{message, code, status}`` with a 4xx status and Chipi's codes. The chain is shared with the
thread that owns the server, so every access holds ``lock``. The app runs on uvicorn's asyncio
loop only, and its first step may run outside any task (:mod:`.http11` starts it at once), so
its only waits (the fault-injection delays) are plain ``asyncio.sleep``, not anyio's.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..felts import to_hex
from ..localchain import LocalChain
from ..logs import get_logger
from .asgi import (
    Answer,
    ASGIApp,
    ClientGone,
    Receive,
    Scope,
    Send,
    TooLarge,
    answer_json,
    answer_text,
    header,
    read_body,
    respond,
)
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


def _error(status: int, code: str, message: str) -> Answer:
    return answer_json({"message": message, "code": code, "status": status}, status)


def _rpc_error(code: int, message: str) -> Answer:
    return answer_json({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def _too_large() -> Answer:
    return _error(413, "PAYLOAD_TOO_LARGE", "request body too large")


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the stack
        raise WireError.bad("request body is not JSON") from None


def _gone(scope: Scope) -> Answer:
    """A client that hung up mid-request: one quiet line, no traceback (nobody reads the
    answer)."""
    client = scope.get("client")
    logger.info(
        "client %s disconnected before sending all of %s",
        f"{client[0]}:{client[1]}" if client else "?",
        scope["path"],
    )
    return Answer(400, b"")


def _authorize(scope: Scope, auth: AuthConfig) -> None:
    key = (header(scope, b"x-api-key") or "").strip()
    if not key:
        raise WireError(401, "UNAUTHORIZED", "Missing API key (x-api-key header)")
    if not API_KEY_PATTERN.fullmatch(key):
        raise WireError(401, "UNAUTHORIZED", "Invalid API key format")
    if auth.api_keys is not None and not any(
        hmac.compare_digest(key.encode(), k.encode()) for k in auth.api_keys
    ):
        raise WireError(401, "UNAUTHORIZED", "Invalid API key")
    scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise WireError(401, "UNAUTHORIZED", "Missing bearer token")
    if auth.bearer_tokens is not None and not any(
        hmac.compare_digest(token.encode(), t.encode()) for t in auth.bearer_tokens
    ):
        raise WireError(401, "UNAUTHORIZED", "Invalid bearer token")


#: An endpoint: (scope, receive) -> the answer.
Endpoint = Callable[[Scope, Receive], Awaitable[Answer]]


def create_app(
    chain: LocalChain,
    *,
    lock: threading.RLock | None = None,
    auth: AuthConfig | None = None,
    faults: Faults | None = None,
    legacy_session_layout: bool = False,
    cors_origins: tuple[str, ...] = (),
) -> ASGIApp:
    """The ASGI app. ``lock`` guards ``chain`` against other threads (the owner's tests)."""
    guard = lock or threading.RLock()
    access = auth or AuthConfig()
    fault = faults or Faults()
    dispatcher = RpcDispatcher(chain, legacy_session_layout=legacy_session_layout)

    def rest(handler: Callable[[Any], Awaitable[Answer]]) -> Endpoint:
        async def endpoint(scope: Scope, receive: Receive) -> Answer:
            if logger.isEnabledFor(logging.DEBUG):
                version = _query_param(scope, b"__chipi_api_version")
                logger.debug("%s %s (api version %s)", scope["method"], scope["path"], version)
            try:
                _authorize(scope, access)
                body = _parse_json(await read_body(scope, receive, MAX_BODY_BYTES))
                if not isinstance(body, Mapping):
                    raise WireError.bad("request body must be a JSON object")
                return await handler(body)
            except ClientGone:
                return _gone(scope)
            except TooLarge:
                return _too_large()
            except WireError as exc:
                return _error(exc.status, exc.code, exc.message)
            except ChipiSessionError as exc:
                status, code = _status_for(exc)
                return _error(status, code, exc.message)
            except Exception:
                logger.exception("localnet %s failed", scope["path"])
                return _error(500, "INTERNAL_ERROR", "internal error")

        return endpoint

    async def prepare(body: Any) -> Answer:
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
        return answer_json({"typedData": typed_data, "walletType": "CHIPI"}, timing=elapsed)

    async def execute(body: Any) -> Answer:
        if fault.execute_status is not None:
            status = fault.execute_status
            return _error(status, "INJECTED_FAULT", f"injected HTTP {status}")
        wallet = wire_felt(body.get("publicKey"), "publicKey")
        typed_data = body.get("typedData")
        if not isinstance(typed_data, Mapping):
            raise WireError.bad("typedData must be an object")
        signature, _is_session = wire_signature(body.get("userSignature"))
        if fault.execute_delay_before > 0:
            await asyncio.sleep(fault.execute_delay_before)  # uvicorn's loop (see .http11)
        started = time.perf_counter()
        with guard:
            tx_hash = chain.execute_sponsored(wallet, typed_data, signature)
        elapsed = time.perf_counter() - started
        if fault.execute_delay_after > 0:
            await asyncio.sleep(fault.execute_delay_after)
        return answer_json({"transactionHash": tx_hash}, timing=elapsed)  # canonical hex

    async def execute_raw(body: Any) -> Answer:
        return _error(
            501,
            "NOT_IMPLEMENTED",
            "execute-sponsored-raw (SHHH wallets) is not emulated by localnet; "
            "use a CHIPI wallet with prepare-typed-data + execute-sponsored-transaction",
        )

    async def rpc(scope: Scope, receive: Receive) -> Answer:
        if fault.rpc_status is not None:
            return answer_text("injected fault", fault.rpc_status)
        try:
            payload = _parse_json(await read_body(scope, receive, MAX_BODY_BYTES))
        except ClientGone:
            return _gone(scope)
        except TooLarge:
            return _too_large()
        except WireError:
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
            return Answer(204, b"")
        return answer_json(answer, timing=elapsed)

    async def health(scope: Scope, receive: Receive) -> Answer:
        with guard:
            body = {
                "status": "ok",
                "chainId": to_hex(chain.chain_id),
                "blockNumber": int(chain.block_number),
                "timestamp": int(chain.now()),
            }
        return answer_json(body)

    post = frozenset({"POST"})
    routes: dict[str, tuple[frozenset[str], Endpoint]] = {
        "/v1/transactions/prepare-typed-data": (post, rest(prepare)),
        "/v1/transactions/execute-sponsored-transaction": (post, rest(execute)),
        "/v1/transactions/execute-sponsored-raw": (post, rest(execute_raw)),
        "/rpc": (post, rpc),
        "/health": (frozenset({"GET", "HEAD"}), health),
    }

    def route(path: str) -> tuple[frozenset[str], Endpoint] | None:
        found = routes.get(path)
        if found is None and path.startswith("/rpc/") and "/" not in path[5:] and path[5:]:
            found = routes["/rpc"]  # /rpc/{version}
        return found

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off and websockets are not served
            return
        method, path = scope["method"], scope["path"]
        found = route(path)
        if found is None:
            answer = _error(404, "NOT_FOUND", f"no route {method} {path}")
        elif method not in found[0]:
            answer = _error(405, "METHOD_NOT_ALLOWED", f"{method} not allowed here")
        else:
            answer = await found[1](scope, receive)
        await respond(send, answer)

    if not cors_origins:
        return app
    from starlette.middleware.cors import CORSMiddleware  # only when browsers are let in

    cors: ASGIApp = CORSMiddleware(
        app,
        allow_origins=list(cors_origins),
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["content-type", "authorization", "x-api-key"],
    )
    return cors


def _query_param(scope: Scope, name: bytes) -> str | None:
    from urllib.parse import parse_qsl

    for key, value in parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1")):
        if key == name.decode():
            return value
    return None
