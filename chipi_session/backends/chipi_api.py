"""The Chipi REST API (gasless, paymaster-sponsored SNIP-9 transactions) as a SessionBackend.

Protocol (docs/wire-protocol.md): every write is ``prepare-typed-data`` (the server
builds a SNIP-9 v2 OutsideExecution as SNIP-12 typed data) then ``execute-sponsored-transaction``
(we echo the typed data with a signature). Register / revoke / spending-policy changes are
owner-signed self-calls on the wallet; executes are session-signed.

What this does that the official SDKs do not:

* **Never signs what it did not ask for.** The prepared typed data must be exactly the calls we
  sent, for our chain, with an acceptable caller and a sane time window; its SNIP-12 hash must
  equal the hash of the typed data we would have built ourselves. Otherwise
  ``SESSION_INVALID_RESPONSE`` and nothing is signed.
* **Exact failure semantics.** ``prepare`` is retried (it is idempotent); ``execute`` is never
  retried once it may have left. If the answer is lost after sending, the error is an
  :class:`UnknownOutcomeError` (``UNKNOWN_OUTCOME``) carrying the SNIP-9 nonce, and
  :meth:`ChipiApiBackend.resolve_unknown_outcome` settles it from the chain: a used nonce means
  the transaction executed (SNIP-9 nonces are single-use and revert with a failed execution).
* Reads go to a Starknet JSON-RPC node (:class:`StarknetRpcBackend`), decoded correctly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs
import httpx

from .. import selfcalls
from ..clock import Clock, SystemClock
from ..errors import ChipiSessionError, ErrorCode
from ..felts import (
    U32_MAX,
    U64_MAX,
    parse_felt,
    parse_felt_or_short_string,
    parse_felts,
    parse_selector,
    selector,
    split_u256,
    to_hex,
)
from ..hashing import (
    ANY_CALLER,
    OUTSIDE_EXECUTION_DOMAIN_NAME,
    outside_execution_hash,
    outside_execution_typed_data,
    typed_data_message_hash,
)
from ..http import Exchange, HttpClient, HttpResponse, Timeouts, safe_origin
from ..keys import SIGNER_BACKEND, SecretKey, session_signature
from ..logs import get_logger
from ..outcome import OutcomeResolution, resolve_outcome
from ..types import (
    Call,
    ExecutionResult,
    SessionStatus,
    SpendingPolicy,
    SubmitInfo,
    WalletData,
    WalletType,
)
from .base import OnSubmit, notify_submit
from .starknet_rpc import StarknetRpcBackend

__all__ = [
    "ChipiApiBackend",
    "ChipiApiError",
    "UnknownOutcomeError",
    "OutcomeResolution",
    "PreparedExecution",
    "check_prepared_typed_data",
    "normalize_base_url",
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

_API_KEY = re.compile(r"pk_(dev|prod)_[A-Za-z0-9]{32,}")
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
    try:
        parsed = httpx.URL(text)
    except Exception:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url must be an http(s) URL")
    if parsed.query or parsed.fragment:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, "base_url must not have a query")
    if parsed.scheme == "http" and not allow_insecure_http and not _is_loopback(parsed.host):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT,
            "base_url uses plain http to a non-loopback host; use https "
            "(or allow_insecure_http=True if you really mean it)",
        )
    return text + "/v1"


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


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


# -- checking what the server prepared -------------------------------------------------------


@attrs.frozen
class PreparedExecution:
    """A prepared OutsideExecution that passed every check, and the hash to sign."""

    typed_data: Mapping[str, Any] = attrs.field(repr=False)
    caller: int
    nonce: int
    execute_after: int
    execute_before: int
    message_hash: int


def _invalid(detail: str) -> ChipiSessionError:
    return ChipiSessionError(
        ErrorCode.SESSION_INVALID_RESPONSE,
        f"refusing to sign the prepared typed data: {detail}",
    )


def _types_for(time_type: str) -> Mapping[str, Any]:
    probe = outside_execution_typed_data(
        caller=0,
        nonce=0,
        execute_after=0,
        execute_before=0,
        calls=(),
        chain_id=0,
        time_type=time_type,
    )
    types: Mapping[str, Any] = probe["types"]
    return types


_EXPECTED_TYPES = {t: _types_for(t) for t in ("u128", "felt")}


def _field_felt(value: Any, what: str) -> int:
    try:
        return parse_felt(value, what)
    except ChipiSessionError:
        raise _invalid(f"{what} is not a felt") from None


def _shortstring_felt(value: Any, what: str) -> int:
    """A SNIP-12 ``shortstring`` field: a number (hex/decimal) or ASCII text."""
    if isinstance(value, str):
        try:
            return parse_felt_or_short_string(value, what)
        except ChipiSessionError:
            raise _invalid(f"{what} is not a short string") from None
    return _field_felt(value, what)


def check_prepared_typed_data(
    typed_data: Any,
    *,
    wallet_address: int,
    calls: Sequence[Call],
    chain_id: int,
    now: float,
    allowed_callers: Collection[int] = (),
    max_window: int = 24 * 3600,
    max_clock_skew: int = 60,
) -> PreparedExecution:
    """Check a prepared SNIP-9 v2 typed data against what we asked for; return what to sign.

    Accepted: exactly the standard types (u128 or legacy felt timestamps), domain
    ``Account.execute_from_outside`` v2 rev 1 on ``chain_id``, caller ``ANY_CALLER``/0 or one of
    ``allowed_callers`` (when empty: any address other than the wallet itself), exactly
    ``calls`` in order, ``execute_after < now`` and ``now < execute_before <= now + max_window``
    (each with ``max_clock_skew`` of tolerance). Raises ``SESSION_INVALID_RESPONSE`` otherwise.
    """
    if not isinstance(typed_data, Mapping):
        raise _invalid("typedData is not an object")
    if set(typed_data) != {"types", "primaryType", "domain", "message"}:
        raise _invalid("typedData must have exactly types, primaryType, domain, message")
    if typed_data["primaryType"] != "OutsideExecution":
        raise _invalid("primaryType is not OutsideExecution")
    time_type = next((t for t, v in _EXPECTED_TYPES.items() if typed_data["types"] == v), None)
    if time_type is None:
        raise _invalid("types are not the SNIP-9 v2 OutsideExecution types")

    domain = typed_data["domain"]
    if not isinstance(domain, Mapping) or set(domain) != {"name", "version", "chainId", "revision"}:
        raise _invalid("domain must have exactly name, version, chainId, revision")
    if domain["name"] != OUTSIDE_EXECUTION_DOMAIN_NAME:
        raise _invalid("domain name is not Account.execute_from_outside")
    if _shortstring_felt(domain["version"], "domain.version") != 2:
        raise _invalid("domain version is not 2")
    if _shortstring_felt(domain["revision"], "domain.revision") != 1:
        raise _invalid("domain revision is not 1")
    if _shortstring_felt(domain["chainId"], "domain.chainId") != chain_id:
        raise _invalid(f"domain chainId is not this chain ({to_hex(chain_id)})")

    message = typed_data["message"]
    if not isinstance(message, Mapping) or set(message) != {
        "Caller",
        "Nonce",
        "Execute After",
        "Execute Before",
        "Calls",
    }:
        raise _invalid("message must have exactly Caller, Nonce, Execute After/Before, Calls")
    caller = _field_felt(message["Caller"], "Caller")
    if caller not in (0, ANY_CALLER):
        if allowed_callers:
            if caller not in allowed_callers:
                raise _invalid(f"caller {to_hex(caller)} is not an allowed relayer")
        elif caller == wallet_address or caller >= 2**251:
            raise _invalid(f"caller {to_hex(caller)} is not a plausible relayer address")
    nonce = _field_felt(message["Nonce"], "Nonce")
    after = _field_felt(message["Execute After"], "Execute After")
    before = _field_felt(message["Execute Before"], "Execute Before")
    if after > U64_MAX or before > U64_MAX:
        raise _invalid("time window is not u64")
    if not after < now + max_clock_skew:
        raise _invalid(f"Execute After ({after}) is not in the past (now {int(now)})")
    if not before > now - max_clock_skew:
        raise _invalid(f"Execute Before ({before}) is not in the future (now {int(now)})")
    if before > now + max_window + max_clock_skew:
        raise _invalid(f"Execute Before ({before}) is more than {max_window}s away")
    if before <= after:
        raise _invalid("empty time window")

    got = message["Calls"]
    if not isinstance(got, list) or len(got) != len(calls):
        raise _invalid(f"expected {len(calls)} call(s)")
    for i, (item, want) in enumerate(zip(got, calls, strict=True)):
        if not isinstance(item, Mapping) or set(item) != {"To", "Selector", "Calldata"}:
            raise _invalid(f"call {i} must have exactly To, Selector, Calldata")
        if _field_felt(item["To"], f"call {i} To") != want.to:
            raise _invalid(f"call {i} targets another contract")
        try:
            sel = parse_selector(item["Selector"], f"call {i} Selector")
        except ChipiSessionError:
            raise _invalid(f"call {i} selector is not a felt or a name") from None
        if sel != want.selector:
            raise _invalid(f"call {i} has another entrypoint")
        try:
            data = parse_felts(item["Calldata"], f"call {i} Calldata")
        except ChipiSessionError:
            raise _invalid(f"call {i} calldata is not a list of felts") from None
        if data != want.calldata:
            raise _invalid(f"call {i} has other calldata")

    ours = outside_execution_typed_data(
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        chain_id=chain_id,
        time_type=time_type,
    )
    # The contract's own construction from the checked values (Poseidon, ~0.1 ms)...
    expected_hash = outside_execution_hash(
        account=wallet_address,
        chain_id=chain_id,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        felt_times=time_type == "felt",
    )
    # ...and if the server spelled the typed data differently from us, the hash of *its* text
    # (what it will verify) must be the same, or a parsing difference could change meaning.
    if typed_data != ours:
        try:
            their_hash = typed_data_message_hash(typed_data, wallet_address)
        except Exception:
            raise _invalid("typed data cannot be hashed") from None
        if their_hash != expected_hash:
            raise _invalid("typed data hashes differently from the calls it lists")
    return PreparedExecution(
        typed_data=typed_data,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        message_hash=expected_hash,
    )


# -- the backend ---------------------------------------------------------------------------


SignFn = Callable[[int], Any]


class ChipiApiBackend:
    """SessionBackend over the Chipi REST API, with reads over Starknet JSON-RPC.

    ``api_key`` is the project's public key (``pk_prod_...`` / ``pk_dev_...``); the bearer
    token of each write comes from the caller (a user JWT, or the ``sk_...`` secret on a
    server) and is required. ``rpc_url`` (or a ready ``rpc`` backend) serves session status,
    spending policies, the chain id the typed data must carry, and outcome resolution.

    ``clock`` is the local time used to judge the prepared time window. ``on_timing(phase,
    seconds)`` receives ``prepare``, ``check``, ``sign`` and ``execute`` durations (metrics).
    """

    requires_bearer_token: bool = True

    def __init__(
        self,
        api_key: str,
        *,
        rpc_url: str | None = None,
        rpc: StarknetRpcBackend | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: Timeouts | float | None = None,
        chain_id: int | None = None,
        clock: Clock | None = None,
        allowed_callers: Collection[int] = (),
        max_execute_window: int = 24 * 3600,
        max_clock_skew: int = 60,
        retries: int = 2,
        account_class_hash: int = CHIPI_CLASS_HASH,
        transport: httpx.AsyncBaseTransport | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        on_timing: Callable[[str, float], None] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        if not isinstance(api_key, str) or not _API_KEY.fullmatch(api_key):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT,
                "api_key must look like pk_prod_<32+ letters/digits> or pk_dev_<...> "
                "(the public API key; never pass the sk_ secret here)",
            )
        if (rpc_url is None) == (rpc is None):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "pass exactly one of rpc_url, rpc")
        if not 60 <= max_execute_window <= 7 * 24 * 3600:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "max_execute_window out of range")
        self._api_key = api_key
        self._base_url = normalize_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._origin = safe_origin(self._base_url)
        self._http = HttpClient(timeouts=timeout, transport=transport, on_exchange=on_exchange)
        self._owns_rpc = rpc is None
        # One pool for both origins: keep-alive everywhere, and on_exchange sees RPC traffic.
        url = rpc_url if isinstance(rpc_url, str) else ""  # not a str: refused as no URL
        if isinstance(rpc_url, httpx.URL):
            url = str(rpc_url)
        self.rpc: StarknetRpcBackend = rpc or StarknetRpcBackend(url, http=self._http)
        self._chain_id = chain_id
        self._clock: Clock = clock or SystemClock()
        self._allowed_callers = frozenset(allowed_callers)
        self._max_window = max_execute_window
        self._max_skew = max_clock_skew
        self._retries = retries
        self._class_hash = account_class_hash
        self._on_timing = on_timing
        self._unresolved: dict[tuple[int, int], SubmitInfo] = {}

    def __repr__(self) -> str:
        return f"ChipiApiBackend({self._origin}, rpc={self.rpc!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def clock(self) -> Clock:
        """The clock the prepared time windows are judged by (the engine reuses it)."""
        return self._clock

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._owns_rpc:
            await self.rpc.aclose()

    async def __aenter__(self) -> ChipiApiBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reads (Starknet RPC) --------------------------------------------------------------

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus:
        return await self.rpc.get_session_status(wallet_address, session_public_key)

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy:
        return await self.rpc.get_spending_policy(wallet_address, session_public_key, token)

    async def get_session_statuses(
        self, targets: Sequence[tuple[int, int]]
    ) -> list[SessionStatus | ChipiSessionError]:
        """Batched status reads for many sessions (JSON-RPC batches; the hub's poller)."""
        return await self.rpc.get_session_statuses(targets)

    async def chain_time(self) -> int:
        """The latest block's timestamp, read over RPC."""
        return await self.rpc.chain_time()

    async def confirm_transaction(self, tx_hash: str) -> None:
        """TransactionConfirmer: wait until the paymaster's transaction is accepted on chain
        (``TRANSACTION_REJECTED`` if it reverted, ``UNKNOWN_OUTCOME`` on timeout)."""
        await self.rpc.confirm_transaction(tx_hash)

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        """ExecutionResultReader: read over RPC (receipt and trace), see
        :meth:`StarknetRpcBackend.get_execution_result`."""
        return await self.rpc.get_execution_result(tx_hash)

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = await self.rpc.chain_id()
        return self._chain_id

    # -- owner-signed writes ---------------------------------------------------------------

    async def add_or_update_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        valid_until: int,
        max_calls: int,
        allowed_entrypoints: Sequence[int],
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        call = selfcalls.add_or_update_session_key_call(
            wallet.address,
            _check_felt(session_public_key, "session key"),
            _check_range(valid_until, U64_MAX, "valid_until"),
            _check_range(max_calls, U32_MAX, "max_calls"),
            [_check_felt(e, "allowed_entrypoints") for e in allowed_entrypoints],
        )
        return await self._owner_write("register", wallet, owner_key, call, bearer_token, on_submit)

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        call = selfcalls.revoke_session_key_call(
            wallet.address, _check_felt(session_public_key, "session key")
        )
        return await self._owner_write("revoke", wallet, owner_key, call, bearer_token, on_submit)

    async def set_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        max_per_call: int,
        max_per_window: int,
        window_seconds: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        try:
            split_u256(max_per_call, "max_per_call")  # validates: a u256, as INVALID_SPENDING_POLICY
            split_u256(max_per_window, "max_per_window")
        except ChipiSessionError as exc:
            raise ChipiSessionError(ErrorCode.INVALID_SPENDING_POLICY, exc.message) from None
        if (
            isinstance(window_seconds, bool)
            or not isinstance(window_seconds, int)
            or not (0 < window_seconds <= U64_MAX)
        ):
            raise ChipiSessionError(
                ErrorCode.INVALID_SPENDING_POLICY, "window_seconds must be a positive u64"
            )
        if max_per_window > 0 and max_per_call > max_per_window:
            raise ChipiSessionError(
                ErrorCode.INVALID_SPENDING_POLICY, "max_per_call exceeds max_per_window"
            )
        call = selfcalls.set_spending_policy_call(
            wallet.address,
            _check_felt(session_public_key, "session key"),
            _check_felt(token, "token"),
            max_per_call,
            max_per_window,
            window_seconds,
        )
        return await self._owner_write(
            "set_spending_policy", wallet, owner_key, call, bearer_token, on_submit
        )

    async def remove_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        call = selfcalls.remove_spending_policy_call(
            wallet.address,
            _check_felt(session_public_key, "session key"),
            _check_felt(token, "token"),
        )
        return await self._owner_write(
            "remove_spending_policy", wallet, owner_key, call, bearer_token, on_submit
        )

    async def _owner_write(
        self,
        action: str,
        wallet: WalletData,
        owner_key: SecretKey,
        call: Call,
        bearer_token: str | None,
        on_submit: OnSubmit | None,
    ) -> str:
        def signature(msg_hash: int) -> Any:
            r, s = owner_key.sign(msg_hash)
            return {"r": str(r), "s": str(s)}

        return await self._write(
            action,
            wallet,
            [call],
            signature,
            bearer_token,
            on_submit,
            extra={"saveToDatabase": False, "walletType": WalletType.CHIPI.value},
        )

    # -- session-signed execute --------------------------------------------------------------

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        _check_range(valid_until, U64_MAX, "valid_until")
        if not calls:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "calls: at least one call is required")

        def signature(msg_hash: int) -> Any:
            return [to_hex(x) for x in session_signature(session_key, msg_hash, valid_until)]

        return await self._write(
            "execute",
            wallet,
            list(calls),
            signature,
            bearer_token,
            on_submit,
            extra={
                "saveToDatabase": True,
                "walletType": WalletType.CHIPI.value,
                "isSessionSignature": True,
            },
        )

    # -- the two-step exchange ----------------------------------------------------------------

    async def _write(
        self,
        action: str,
        wallet: WalletData,
        calls: list[Call],
        sign: SignFn,
        bearer_token: str | None,
        on_submit: OnSubmit | None,
        *,
        extra: Mapping[str, Any],
    ) -> str:
        if wallet.wallet_type is not WalletType.CHIPI:
            raise ChipiSessionError(
                ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
                f"sessions need a CHIPI wallet, got {wallet.wallet_type.value}",
            )
        headers = self._headers(bearer_token)
        chain_id = await self.chain_id()

        t0 = time.perf_counter()
        typed_data = await self._prepare(wallet, calls, headers, action)
        t1 = time.perf_counter()
        prepared = check_prepared_typed_data(
            typed_data,
            wallet_address=wallet.address,
            calls=calls,
            chain_id=chain_id,
            now=self._clock.now(),
            allowed_callers=self._allowed_callers,
            max_window=self._max_window,
            max_clock_skew=self._max_skew,
        )
        t2 = time.perf_counter()
        if SIGNER_BACKEND == "fast-stark-crypto":
            signature = sign(prepared.message_hash)
        else:  # the pure-Python signer takes ~0.2 s: keep the event loop responsive
            signature = await anyio.to_thread.run_sync(sign, prepared.message_hash)
        t3 = time.perf_counter()
        body = {
            "publicKey": to_hex(wallet.address),
            "typedData": prepared.typed_data,
            "userSignature": signature,
            **extra,
        }
        pending = SubmitInfo(
            action=action,
            wallet_address=wallet.address,
            outside_nonce=prepared.nonce,
            message_hash=prepared.message_hash,
            execute_before=prepared.execute_before,
        )
        # Journal hook: after it returns we may send, so the nonce must be on record first.
        await notify_submit(on_submit, pending)
        try:
            tx_hash = await self._execute(body, headers, action, pending)
        finally:
            t4 = time.perf_counter()
            self._timing("prepare", t1 - t0)
            self._timing("check", t2 - t1)
            self._timing("sign", t3 - t2)
            self._timing("execute", t4 - t3)
        logger.info("%s on %s submitted: %s", action, to_hex(wallet.address), tx_hash)
        return tx_hash

    def _headers(self, bearer_token: str | None) -> dict[str, str]:
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

    async def _prepare(
        self, wallet: WalletData, calls: Sequence[Call], headers: Mapping[str, str], action: str
    ) -> Any:
        body = {
            "publicKey": to_hex(wallet.address),
            "calls": [_wire_call(c) for c in calls],
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
            raise self._api_error(response, f"{action}: prepare-typed-data")
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

    async def _execute(
        self,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        action: str,
        pending: SubmitInfo,
    ) -> str:
        what = f"{action}: execute-sponsored-transaction"
        key = (pending.wallet_address, pending.outside_nonce)
        self._unresolved[key] = pending  # until we know, the outcome is unknown
        while len(self._unresolved) > _MAX_UNRESOLVED:  # oldest first; they stay logged
            self._unresolved.pop(next(iter(self._unresolved)))
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
                raise self._api_error(response, what)
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
                self._unresolved.pop(key, None)
            else:
                logger.warning(
                    "%s on %s: outcome unknown (SNIP-9 nonce %s); "
                    "resolve it with resolve_unknown_outcome()",
                    action,
                    to_hex(pending.wallet_address),
                    to_hex(pending.outside_nonce),
                )

    def _api_error(self, response: HttpResponse, what: str) -> ChipiSessionError:
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

    def _timing(self, phase: str, seconds: float) -> None:
        if self._on_timing is not None:
            try:
                self._on_timing(phase, seconds)
            except Exception:
                logger.exception("on_timing hook failed")

    # -- unknown outcomes ------------------------------------------------------------------

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        """NonceReader: True once the SNIP-9 ``nonce`` was consumed (the write executed)."""
        used = not await self.rpc.is_valid_outside_execution_nonce(
            wallet_address, nonce, block_id="latest"
        )
        if used:
            self._unresolved.pop((wallet_address, nonce), None)
        return used

    @property
    def unresolved_outcomes(self) -> tuple[SubmitInfo, ...]:
        """Writes whose result was lost (including ones cancelled after sending)."""
        return tuple(self._unresolved.values())

    async def resolve_unknown_outcome(
        self, outcome: UnknownOutcomeError | SubmitInfo
    ) -> OutcomeResolution:
        """Ask the chain whether a lost write happened.

        Exact: ``EXECUTED`` iff the SNIP-9 nonce is used; ``NOT_EXECUTED`` iff it is unused
        and the latest block is at or past ``execute_before`` (later blocks cannot run it);
        ``PENDING`` otherwise. Settled outcomes leave :attr:`unresolved_outcomes`.
        """
        pending = outcome.pending if isinstance(outcome, UnknownOutcomeError) else outcome
        if pending is None:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "this error carries no outcome")
        result = await resolve_outcome(self, pending)  # the engine's own resolution
        if result is not OutcomeResolution.PENDING:
            self._unresolved.pop((pending.wallet_address, pending.outside_nonce), None)
        return result

    async def wait_for_outcome(
        self,
        outcome: UnknownOutcomeError | SubmitInfo,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> OutcomeResolution:
        """Poll :meth:`resolve_unknown_outcome` until it is not ``PENDING`` (or ``timeout``)."""
        result = OutcomeResolution.PENDING
        with anyio.move_on_after(timeout):
            while True:
                try:
                    result = await self.resolve_unknown_outcome(outcome)
                except ChipiSessionError as exc:
                    if not exc.retryable:
                        raise
                if result is not OutcomeResolution.PENDING:
                    return result
                await anyio.sleep(poll_interval)
        return result


def _wire_call(call: Call) -> dict[str, Any]:
    """The SDKs' call shape; known entrypoints by name, others as hex selectors."""
    return {
        "contractAddress": to_hex(call.to),
        "entrypoint": _KNOWN_NAMES.get(call.selector, to_hex(call.selector)),
        "calldata": [to_hex(x) for x in call.calldata],
    }


def _check_range(value: int, upper: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must be in [0, {upper}]")
    return value


def _check_felt(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChipiSessionError(ErrorCode.INVALID_INPUT, f"{what} must be an int felt")
    return parse_felt(value, what)
