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

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .. import selfcalls
from ..clock import Clock, SystemClock
from ..errors import ChipiSessionError, ErrorCode
from ..felts import U32_MAX, U64_MAX, to_hex
from ..http import Exchange, HttpClient, Timeouts, safe_origin
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
from .chipi_rest import (
    API_VERSION_DATE,
    CHIPI_CLASS_HASH,
    DEFAULT_BASE_URL,
    ChipiApiError,
    ChipiRestClient,
    UnknownOutcomeError,
    normalize_base_url,
    poll_until_settled,
)
from .starknet_rpc import StarknetRpcBackend
from .typed_data_check import PreparedExecution, check_prepared_typed_data
from .write_args import check_api_key, check_felt, check_policy_args, check_range

if TYPE_CHECKING:  # pragma: no cover
    import httpx

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
        check_api_key(api_key)
        if (rpc_url is None) == (rpc is None):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "pass exactly one of rpc_url, rpc")
        if not 60 <= max_execute_window <= 7 * 24 * 3600:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "max_execute_window out of range")
        self._base_url = normalize_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._origin = safe_origin(self._base_url)
        self._http = HttpClient(timeouts=timeout, transport=transport, on_exchange=on_exchange)
        self._rest = ChipiRestClient(
            api_key, self._base_url, self._http, account_class_hash, retries
        )
        self._owns_rpc = rpc is None
        # One pool for both origins: keep-alive everywhere, and on_exchange sees RPC traffic.
        if rpc is None:
            assert rpc_url is not None  # exactly one of the two, checked above
            rpc = StarknetRpcBackend(rpc_url, http=self._http)  # not a URL: refused there
        self.rpc: StarknetRpcBackend = rpc
        self._chain_id = chain_id
        self._clock: Clock = clock or SystemClock()
        self._allowed_callers = frozenset(allowed_callers)
        self._max_window = max_execute_window
        self._max_skew = max_clock_skew
        self._on_timing = on_timing

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
            check_felt(session_public_key, "session key"),
            check_range(valid_until, U64_MAX, "valid_until"),
            check_range(max_calls, U32_MAX, "max_calls"),
            [check_felt(e, "allowed_entrypoints") for e in allowed_entrypoints],
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
            wallet.address, check_felt(session_public_key, "session key")
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
        check_policy_args(max_per_call, max_per_window, window_seconds)
        call = selfcalls.set_spending_policy_call(
            wallet.address,
            check_felt(session_public_key, "session key"),
            check_felt(token, "token"),
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
            check_felt(session_public_key, "session key"),
            check_felt(token, "token"),
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
        check_range(valid_until, U64_MAX, "valid_until")
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
        headers = self._rest.headers(bearer_token)
        chain_id = await self.chain_id()

        t0 = time.perf_counter()
        typed_data = await self._rest.prepare(wallet, calls, headers, action)
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
            tx_hash = await self._rest.execute(body, headers, action, pending)
        finally:
            t4 = time.perf_counter()
            self._timing("prepare", t1 - t0)
            self._timing("check", t2 - t1)
            self._timing("sign", t3 - t2)
            self._timing("execute", t4 - t3)
        logger.info(
            "%s on %s submitted: %s",
            action,
            to_hex(wallet.address),
            tx_hash,
            extra={"chipi_tx_hash": tx_hash},  # the engine learns it only once we return
        )
        return tx_hash

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
            self._rest.forget(wallet_address, nonce)
        return used

    @property
    def unresolved_outcomes(self) -> tuple[SubmitInfo, ...]:
        """Writes whose result was lost (including ones cancelled after sending)."""
        return tuple(self._rest.unresolved.values())

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
            self._rest.forget(pending.wallet_address, pending.outside_nonce)
        return result

    async def wait_for_outcome(
        self,
        outcome: UnknownOutcomeError | SubmitInfo,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> OutcomeResolution:
        """Poll :meth:`resolve_unknown_outcome` until it is not ``PENDING`` (or ``timeout``)."""
        return await poll_until_settled(
            lambda: self.resolve_unknown_outcome(outcome), timeout, poll_interval
        )
