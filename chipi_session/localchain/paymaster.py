"""The sponsoring relayer: what Chipi's backend does around ``execute_from_outside_v2``.

It issues SNIP-9 v2 typed data for a wallet's calls (``prepare_typed_data``), and later runs the
signed request through its relayer (``execute_sponsored``). It only executes typed data it
issued, unchanged, once; it turns contract panics into the :class:`ChipiSessionError` codes the
Chipi API reports, so ChipiApiBackend tests and the localnet server see Chipi-shaped failures.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, parse_felts
from ..hashing import ANY_CALLER, outside_execution_typed_data
from ..logs import get_logger
from ..policy import check_session_allowed, denial_error
from ..types import Call, SessionStatus, coerce_calls
from ..validate import check_int
from .model import ContractPanic, Receipt

__all__ = ["Paymaster", "IssuedRequest", "call_tuple", "map_outside_execution_panic"]

log = get_logger(__name__)

#: The typed data's window: starts a minute in the past (clock skew), lasts an hour.
WINDOW_BEFORE = 60
WINDOW_AFTER = 3600
#: How long a request is remembered after its window closed, so a late submission still gets
#: the contract's own ``'SRC9: now >= execute_before'`` rather than "not issued".
RETENTION = 3600
#: Caps on what the paymaster remembers, so a client preparing without ever executing cannot
#: grow it without bound: at most this many requests, and about this much memory (estimated
#: per felt of calldata); the oldest request is forgotten first.
MAX_ISSUED_REQUESTS = 10_000
MAX_ISSUED_BYTES = 64 * 1024 * 1024
#: Estimated memory of one remembered request, and of each felt its calls carry (measured on
#: CPython 3.11 when requests also kept their typed data; they now rebuild it when it is handed
#: back, so the estimate is on the safe side).
_REQUEST_BYTES = 4096
_FELT_BYTES = 256


class _Chain(Protocol):
    chain_id: int
    relayer: int

    def now(self) -> int: ...

    def is_account(self, address: int) -> bool: ...

    def is_outside_nonce_used(self, account: int, nonce: int) -> bool: ...

    def session_status(self, wallet_address: int, session_public_key: int) -> SessionStatus: ...

    def execute_from_outside(
        self,
        account: int,
        *,
        caller: int,
        nonce: int,
        execute_after: int,
        execute_before: int,
        calls: Sequence[Call],
        signature: Sequence[int],
        relayer: int | None = None,
    ) -> Receipt: ...


@attrs.frozen
class IssuedRequest:
    """A typed-data request the paymaster handed out and will accept back."""

    wallet: int
    nonce: int
    calls: tuple[Call, ...]
    execute_after: int
    execute_before: int

    def typed_data(self, chain_id: int) -> dict[str, Any]:
        """The SNIP-9 v2 typed data of this request (a fresh dict each time)."""
        return outside_execution_typed_data(
            caller=ANY_CALLER,
            nonce=self.nonce,
            execute_after=self.execute_after,
            execute_before=self.execute_before,
            calls=self.calls,
            chain_id=chain_id,
            time_type="u128",
        )

    @property
    def size(self) -> int:
        """Estimated memory held for this request (what the byte cap counts)."""
        felts = sum(2 + len(call.calldata) for call in self.calls)
        return _REQUEST_BYTES + _FELT_BYTES * felts


def map_outside_execution_panic(
    panic: ContractPanic,
    signature: Sequence[int],
    *,
    status: SessionStatus | None,
    wallet: int,
    calls: Sequence[Call],
    now: int,
) -> ChipiSessionError:
    """A failed sponsored execution as Chipi reports it; the message is the panic text.

    For a session signature rejected by the session pre-checks, the stored session decides the
    code (not registered / expired / exhausted / entrypoint not allowed) through
    :func:`chipi_session.policy.check_session_allowed`, the same function the contract ran.
    """
    message = panic.message
    if len(signature) == 4 and status is not None and message.startswith("Session: "):
        denial = check_session_allowed(status, wallet, calls, now)
        if denial is not None:
            return ChipiSessionError(denial_error(denial).code, message)
    if message == "SRC9: invalid signature":
        return ChipiSessionError(ErrorCode.INVALID_SIGNATURE, message)
    if message.startswith("Spending: exceeds"):
        return ChipiSessionError(ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED, message)
    if message.startswith("Spending: "):  # calldata too short / invalid amount
        return ChipiSessionError(ErrorCode.INVALID_INPUT, message)
    return ChipiSessionError(ErrorCode.TRANSACTION_REJECTED, message)


class Paymaster:
    """Issues and executes sponsored outside executions for one :class:`LocalChain`."""

    def __init__(
        self,
        chain: _Chain,
        *,
        max_requests: int = MAX_ISSUED_REQUESTS,
        max_bytes: int = MAX_ISSUED_BYTES,
    ) -> None:
        self._chain = chain
        self._max_requests = check_int(max_requests, "max_requests", low=1)
        self._max_bytes = check_int(max_bytes, "max_bytes", low=1)
        # insertion order == issue order == deadline order (the clock never goes back), so
        # the oldest request, first to expire and first to evict, is always at the front
        self._issued: dict[tuple[int, int], IssuedRequest] = {}
        self._issued_bytes = 0

    @property
    def issued_count(self) -> int:
        return len(self._issued)

    @property
    def issued_bytes(self) -> int:
        """Estimated memory of the remembered requests (bounded by ``max_bytes``)."""
        return self._issued_bytes

    def prepare_typed_data(self, wallet_address: int, calls: Sequence[Call]) -> dict[str, Any]:
        return self.issue(wallet_address, calls).typed_data(self._chain.chain_id)

    def issue(self, wallet_address: int, calls: Sequence[Call]) -> IssuedRequest:
        """Issue a request for ``calls`` and remember it (:meth:`prepare_typed_data` hands out
        its typed data; an in-process client may hand the request itself to
        :meth:`execute_issued`)."""
        chain = self._chain
        wallet = parse_felt(wallet_address, "wallet_address")
        if not chain.is_account(wallet):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, f"no wallet is deployed at {hex(wallet)}"
            )
        call_list = call_tuple(calls)
        now = chain.now()
        self._prune(now)
        nonce = self._fresh_nonce(wallet)
        after, before = max(now - WINDOW_BEFORE, 0), now + WINDOW_AFTER
        request = IssuedRequest(wallet, nonce, call_list, after, before)
        self._remember(request)
        return request

    def execute_sponsored(
        self, wallet_address: int, typed_data: Mapping[str, Any], signature: Sequence[int]
    ) -> str:
        wallet = parse_felt(wallet_address, "wallet_address")
        request = self._issued_request(wallet, _typed_data_nonce(typed_data))
        if dict(typed_data) != request.typed_data(self._chain.chain_id):
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "typed data was altered")
        return self._execute(request, signature)

    def execute_issued(self, request: IssuedRequest, signature: Sequence[int]) -> str:
        """:meth:`execute_sponsored` for a request handed back as :meth:`issue` returned it
        (nothing to re-read or compare: it is still the very request, issued and pending)."""
        if self._issued_request(request.wallet, request.nonce) != request:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "typed data was altered")
        return self._execute(request, signature)

    def _issued_request(self, wallet: int, nonce: int) -> IssuedRequest:
        request = self._issued.get((wallet, nonce))
        if request is not None:
            return request
        chain = self._chain
        if chain.is_account(wallet) and chain.is_outside_nonce_used(wallet, nonce):
            raise ChipiSessionError(
                ErrorCode.TRANSACTION_REJECTED,
                "SRC9: duplicated nonce (this request was already executed)",
            )
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, "typed data was not issued by this paymaster"
        )

    def _execute(self, request: IssuedRequest, signature: Sequence[int]) -> str:
        chain, wallet = self._chain, request.wallet
        sig = parse_felts(signature, "signature")
        try:
            receipt = chain.execute_from_outside(
                wallet,
                caller=ANY_CALLER,
                nonce=request.nonce,
                execute_after=request.execute_after,
                execute_before=request.execute_before,
                calls=request.calls,
                signature=sig,
                relayer=chain.relayer,
            )
        except ContractPanic as panic:
            status = chain.session_status(wallet, sig[0]) if len(sig) == 4 else None
            error = map_outside_execution_panic(
                panic, sig, status=status, wallet=wallet, calls=request.calls, now=chain.now()
            )
            log.debug("sponsored execution for %#x refused: %s", wallet, error)
            raise error from None
        self._forget((wallet, request.nonce))
        return receipt.tx_hash

    # -- internals -------------------------------------------------------------------------

    def _fresh_nonce(self, wallet: int) -> int:
        while True:
            nonce = secrets.randbits(128)
            if (wallet, nonce) not in self._issued and not self._chain.is_outside_nonce_used(
                wallet, nonce
            ):
                return nonce

    def _remember(self, request: IssuedRequest) -> None:
        self._issued[(request.wallet, request.nonce)] = request
        self._issued_bytes += request.size
        evicted = 0
        while len(self._issued) > 1 and (
            len(self._issued) > self._max_requests or self._issued_bytes > self._max_bytes
        ):
            self._forget(next(iter(self._issued)))
            evicted += 1
        if evicted:
            log.info("paymaster at its cap: forgot the %d oldest prepared request(s)", evicted)

    def _forget(self, key: tuple[int, int]) -> None:
        request = self._issued.pop(key, None)
        if request is not None:
            self._issued_bytes -= request.size

    def _prune(self, now: int) -> None:
        """Forget requests whose window closed more than RETENTION ago (they can never run)."""
        while self._issued:
            key, oldest = next(iter(self._issued.items()))
            if oldest.execute_before + RETENTION > now:
                break
            self._forget(key)

    def snapshot(self) -> tuple[dict[tuple[int, int], IssuedRequest], int]:
        return dict(self._issued), self._issued_bytes

    def restore(self, snapshot: tuple[dict[tuple[int, int], IssuedRequest], int]) -> None:
        self._issued = dict(snapshot[0])
        self._issued_bytes = snapshot[1]


def call_tuple(calls: Sequence[Call]) -> tuple[Call, ...]:
    """:func:`~chipi_session.types.coerce_calls`, at no cost for calls it already checked."""
    if type(calls) is tuple and calls and all(type(c) is Call for c in calls):
        return calls
    return coerce_calls(calls)


def _typed_data_nonce(typed_data: Mapping[str, Any]) -> int:
    try:
        message = typed_data["message"]
        return parse_felt(message["Nonce"], "typedData.message.Nonce")
    except (KeyError, TypeError):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, "typed data has no message.Nonce"
        ) from None
