"""The Chipi REST API on the wire: base URLs, the two-step exchange, errors, unknown outcomes.

Every write is ``prepare-typed-data`` (idempotent, retried) then
``execute-sponsored-transaction`` (never retried once it may have left; a lost answer is
``UNKNOWN_OUTCOME`` carrying the SNIP-9 nonce). Server error answers map to stable
``ErrorCode``s. docs/wire-protocol.md describes the protocol; ``chipi_api.ChipiApiBackend``
builds on this client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, selector, to_hex
from ..http import HttpClient, HttpResponse, parse_http_url
from ..logs import get_logger
from ..outcome import OutcomeResolution
from ..types import Call, SubmitInfo, WalletData, WalletType

__all__ = [
    "ChipiApiError",
    "UnknownOutcomeError",
    "ChipiRestClient",
    "normalize_base_url",
    "poll_until_settled",
    "DEFAULT_BASE_URL",
    "API_VERSION_DATE",
    "CHIPI_CLASS_HASH",
]

logger = get_logger(__name__)

DEFAULT_BASE_URL = "https://api.chipipay.com/v1"
API_VERSION_DATE = "2025-12-30"
#: CHIPI v29 class hash: what the official TS SDK sends as ``accountClassHash``.
CHIPI_CLASS_HASH = 0x053F4F8791ED5BED0FDDAA553D180C664E32CFAF8316BB232AE77BB08F459F2A

PREPARE_PATH = "/transactions/prepare-typed-data"
EXECUTE_PATH = "/transactions/execute-sponsored-transaction"
_MAX_UNRESOLVED = 1024

_VERSION_SUFFIX = re.compile(r"/v\d+/?$")

#: Entrypoint names sent as names (like the SDKs do) rather than hex selectors: the server
#: may resolve ``entrypoint`` with getSelectorFromName. Our typed-data check verifies the
#: selector it resolved either way.
_KNOWN_NAMES: dict[int, str] = {
    selector(n): n
    for n in (
        "add_or_update_session_key",
        "revoke_session_key",
        "set_spending_policy",
        "remove_spending_policy",
        "transfer",
        "transfer_from",
        "transferFrom",
        "approve",
        "increase_allowance",
        "increaseAllowance",
        "decrease_allowance",
        "decreaseAllowance",
        "mint",
        "burn",
    )
}

#: Server codes passed through as our ErrorCode of the same name.
_PASS_THROUGH = frozenset(
    {
        ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
        ErrorCode.SESSION_EXPIRED,
        ErrorCode.SESSION_NOT_REGISTERED,
        ErrorCode.SESSION_REVOKED,
        ErrorCode.SESSION_MAX_CALLS_EXCEEDED,
        ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED,
        ErrorCode.INVALID_SPENDING_POLICY,
        ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED,
        ErrorCode.INVALID_SIGNATURE,
        ErrorCode.INVALID_INPUT,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.TRANSACTION_REJECTED,
    }
)
_PASS_THROUGH_NAMES = frozenset(c.value for c in _PASS_THROUGH)
_ALIASES: dict[str, ErrorCode] = {
    "AUTH_ERROR": ErrorCode.UNAUTHORIZED,
    "FORBIDDEN": ErrorCode.UNAUTHORIZED,
    "INVALID_API_KEY": ErrorCode.UNAUTHORIZED,
    "VALIDATION_ERROR": ErrorCode.INVALID_INPUT,
    "BAD_REQUEST": ErrorCode.INVALID_INPUT,
    "INVALID_REQUEST": ErrorCode.INVALID_INPUT,
    "NONCE_USED": ErrorCode.TRANSACTION_REJECTED,
    "SPENDING_LIMIT_EXCEEDED": ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED,
}


def normalize_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """The TS SDK's rule: drop a trailing ``/v<digits>`` and ``/``, then append ``/v1``.

    Plain ``http`` is accepted only for loopback hosts (the API key and bearer token travel
    in headers) unless ``allow_insecure_http``.
    """
    if not isinstance(url, str) or not url.strip():
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url must be a non-empty URL")
    text = url.strip().rstrip("/")
    text = _VERSION_SUFFIX.sub("", text).rstrip("/")
    parsed = parse_http_url(text)
    if parsed is None or parsed.hostname is None:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url must be an http(s) URL")
    if parsed.query or parsed.fragment or text.endswith(("?", "#")):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url must not have a query")
    if parsed.scheme == "http" and not allow_insecure_http and not _is_loopback(parsed.hostname):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT,
            "base_url uses plain http to a non-loopback host; use https "
            "(or allow_insecure_http=True if you really mean it)",
        )
    return text + "/v1"


def _is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (``127.evil.example`` is a name, not loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- errors ------------------------------------------------------------------------------


class ChipiApiError(ChipiSessionError):
    """An error answer from the Chipi API: ``status`` and the server's own ``server_code``."""

    status: int | None
    server_code: str | None

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        retryable: bool | None = None,
        status: int | None = None,
        server_code: str | None = None,
    ) -> None:
        super().__init__(code, message, retryable)
        self.status = status
        self.server_code = server_code

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (
            type(self),
            (self.code, self.message, self.retryable, self.status, self.server_code),
        )


class UnknownOutcomeError(ChipiSessionError):
    """``UNKNOWN_OUTCOME``: the execute request may have reached the paymaster."""

    pending: SubmitInfo | None

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        retryable: bool | None = False,
        pending: SubmitInfo | None = None,
    ) -> None:
        super().__init__(code, message, retryable)
        self.pending = pending

    def __reduce__(self) -> tuple[object, tuple[Any, ...]]:
        return (type(self), (self.code, self.message, self.retryable, self.pending))


# -- the exchange ----------------------------------------------------------------------------


class ChipiRestClient:
    """The two REST calls of a write, with the writes whose outcome is still unknown.

    ``unresolved`` maps ``(wallet, SNIP-9 nonce)`` to what was sent, until the answer is heard
    or the chain settles it (:meth:`forget`); it keeps the latest ``_MAX_UNRESOLVED``.
    """

    __slots__ = ("_api_key", "_base_url", "_http", "_class_hash", "_retries", "unresolved")

    def __init__(
        self, api_key: str, base_url: str, http: HttpClient, class_hash: int, retries: int
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._http = http
        self._class_hash = class_hash
        self._retries = retries
        self.unresolved: dict[tuple[int, int], SubmitInfo] = {}

    def forget(self, wallet_address: int, nonce: int) -> None:
        """The outcome of this write is known: stop tracking it."""
        self.unresolved.pop((wallet_address, nonce), None)

    def headers(self, bearer_token: str | None) -> dict[str, str]:
        """The API key and the caller's bearer token: every write needs both."""
        if not isinstance(bearer_token, str) or not bearer_token.strip():
            raise ChipiSessionError(
                ErrorCode.UNAUTHORIZED,
                "a bearer token is required (a user JWT, or the sk_ secret on a server)",
            )
        token = bearer_token.strip()
        if any(c in token for c in "\r\n\0"):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "bearer token contains line breaks")
        return {"x-api-key": self._api_key, "authorization": f"Bearer {token}"}

    def _url(self, path: str) -> str:
        return self._base_url + path

    async def prepare(
        self, wallet: WalletData, calls: Sequence[Call], headers: Mapping[str, str], action: str
    ) -> Any:
        """``prepare-typed-data`` (idempotent, so retried); the typed data, not yet checked."""
        body = {
            "publicKey": to_hex(wallet.address),
            "calls": [wire_call(c) for c in calls],
            "accountClassHash": to_hex(self._class_hash),
            "walletType": WalletType.CHIPI.value,
        }
        response = await self._http.post_json(
            self._url(PREPARE_PATH),
            body,
            headers=headers,
            params={"__chipi_api_version": API_VERSION_DATE},
            idempotent=True,
            retries=self._retries,
            what=f"{action}: prepare-typed-data",
        )
        if not response.ok:
            raise _api_error(response, f"{action}: prepare-typed-data")
        data = response.json
        if not isinstance(data, Mapping):
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE,
                f"{action}: prepare-typed-data answered HTTP {response.status} without a JSON object",
            )
        typed = data.get("typedData", data if "types" in data and "message" in data else None)
        if not isinstance(typed, Mapping):
            raise ChipiSessionError(
                ErrorCode.SESSION_INVALID_RESPONSE, f"{action}: prepare-typed-data has no typedData"
            )
        wallet_type = data.get("walletType")
        if wallet_type is not None and wallet_type != WalletType.CHIPI.value:
            raise ChipiSessionError(
                ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
                f"{action}: the API treats this wallet as {str(wallet_type)[:20]}, not CHIPI",
            )
        return typed

    async def execute(
        self,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        action: str,
        pending: SubmitInfo,
    ) -> str:
        """``execute-sponsored-transaction``, never retried once it may have left; a lost
        answer is :class:`UnknownOutcomeError` and the write stays in ``unresolved``."""
        what = f"{action}: execute-sponsored-transaction"
        key = (pending.wallet_address, pending.outside_nonce)
        self.unresolved[key] = pending  # until we know, the outcome is unknown
        while len(self.unresolved) > _MAX_UNRESOLVED:  # oldest first; they stay logged
            self.unresolved.pop(next(iter(self.unresolved)))
        settled = False
        try:
            try:
                response = await self._http.post_json(
                    self._url(EXECUTE_PATH),
                    body,
                    headers=headers,
                    params={"__chipi_api_version": API_VERSION_DATE},
                    idempotent=False,
                    retries=self._retries,
                    what=what,
                )
            except ChipiSessionError as exc:
                if exc.code is ErrorCode.UNKNOWN_OUTCOME:
                    raise UnknownOutcomeError(
                        ErrorCode.UNKNOWN_OUTCOME, exc.message, False, pending
                    ) from exc
                settled = True  # provably not sent
                raise
            if response.status >= 500:
                raise UnknownOutcomeError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{what}: HTTP {response.status} after the request was delivered; "
                    "it may or may not have been executed",
                    False,
                    pending,
                )
            settled = True
            if not response.ok:
                raise _api_error(response, what)
            data = response.json
            raw = data.get("transactionHash") if isinstance(data, Mapping) else None
            try:
                tx_hash = parse_felt(raw, "transactionHash")
            except ChipiSessionError:
                settled = False
                raise UnknownOutcomeError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{what}: HTTP {response.status} without a valid transactionHash",
                    False,
                    pending,
                ) from None
            return to_hex(tx_hash)
        finally:
            if settled:
                self.unresolved.pop(key, None)
            else:
                logger.warning(
                    "%s on %s: outcome unknown (SNIP-9 nonce %s); "
                    "resolve it with resolve_unknown_outcome()",
                    action,
                    to_hex(pending.wallet_address),
                    to_hex(pending.outside_nonce),
                )


async def poll_until_settled(
    resolve: Callable[[], Awaitable[OutcomeResolution]],
    timeout: float | None,
    poll_interval: float,
) -> OutcomeResolution:
    """Ask ``resolve`` until it is not ``PENDING`` (or ``timeout``: then ``PENDING``);
    retryable errors are asked again, others raised."""
    result = OutcomeResolution.PENDING
    with anyio.move_on_after(timeout):
        while True:
            try:
                result = await resolve()
            except ChipiSessionError as exc:
                if not exc.retryable:
                    raise
            if result is not OutcomeResolution.PENDING:
                return result
            await anyio.sleep(poll_interval)
    return result


def wire_call(call: Call) -> dict[str, Any]:
    """The SDKs' call shape; known entrypoints by name, others as hex selectors."""
    return {
        "contractAddress": to_hex(call.to),
        "entrypoint": _KNOWN_NAMES.get(call.selector, to_hex(call.selector)),
        "calldata": [to_hex(x) for x in call.calldata],
    }


def _api_error(response: HttpResponse, what: str) -> ChipiSessionError:
    """An error answer as a stable ``ErrorCode`` (the server's own code when we know it)."""
    data = response.json if isinstance(response.json, Mapping) else {}
    raw_message = data.get("message", data.get("error"))
    message = str(raw_message)[:300] if raw_message else f"HTTP {response.status}"
    raw_code = data.get("code")
    server_code = str(raw_code)[:64] if isinstance(raw_code, str) and raw_code else None
    code: ErrorCode
    retryable = False
    if response.status in (401, 403):
        code = ErrorCode.UNAUTHORIZED
    elif response.status in (408, 425, 429) or response.status >= 500:
        code, retryable = ErrorCode.BACKEND_UNAVAILABLE, True
    elif server_code is not None and server_code in _PASS_THROUGH_NAMES:
        code = ErrorCode(server_code)
    elif server_code in _ALIASES:
        code = _ALIASES[server_code]
    else:
        code = ErrorCode.TRANSACTION_REJECTED
    shown = f" [{server_code}]" if server_code else ""
    return ChipiApiError(
        code,
        f"{what}: HTTP {response.status}{shown}: {message}",
        retryable,
        response.status,
        server_code,
    )
