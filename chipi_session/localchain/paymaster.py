"""The sponsoring relayer: what Chipi's backend does around ``execute_from_outside_v2``.

It issues SNIP-9 v2 typed data for a wallet's calls (``prepare_typed_data``), and later runs the
signed request through its relayer (``execute_sponsored``). It only executes typed data it
issued, unchanged, once; it turns contract panics into the :class:`ChipiSessionError` codes the
Chipi API reports, so ChipiApiBackend tests and the localnet server see Chipi-shaped failures.
"""

from __future__ import annotations

import collections
import copy
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, parse_felts
from ..hashing import ANY_CALLER, outside_execution_typed_data
from ..policy import check_session_allowed, denial_error
from ..types import Call, SessionStatus, coerce_calls
from .model import ContractPanic, Receipt

__all__ = ["Paymaster", "IssuedRequest", "map_outside_execution_panic"]

log = logging.getLogger(__name__)

#: The typed data's window: starts a minute in the past (clock skew), lasts an hour.
WINDOW_BEFORE = 60
WINDOW_AFTER = 3600
#: How long a request is remembered after its window closed, so a late submission still gets
#: the contract's own ``'SRC9: now >= execute_before'`` rather than "not issued".
RETENTION = 3600


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
    typed_data: dict[str, Any] = attrs.field(repr=False)


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

    def __init__(self, chain: _Chain) -> None:
        self._chain = chain
        self._issued: dict[tuple[int, int], IssuedRequest] = {}
        # issue order == deadline order (the clock never goes back): cheap pruning
        self._deadlines: collections.deque[tuple[int, tuple[int, int]]] = collections.deque()

    def prepare_typed_data(self, wallet_address: int, calls: Sequence[Call]) -> dict[str, Any]:
        chain = self._chain
        wallet = parse_felt(wallet_address, "wallet_address")
        if not chain.is_account(wallet):
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, f"no wallet is deployed at {hex(wallet)}"
            )
        call_list = coerce_calls(calls)
        now = chain.now()
        self._prune(now)
        nonce = self._fresh_nonce(wallet)
        after, before = max(now - WINDOW_BEFORE, 0), now + WINDOW_AFTER
        typed_data = outside_execution_typed_data(
            caller=ANY_CALLER,
            nonce=nonce,
            execute_after=after,
            execute_before=before,
            calls=call_list,
            chain_id=chain.chain_id,
            time_type="u128",
        )
        request = IssuedRequest(wallet, nonce, call_list, after, before, typed_data)
        self._issued[(wallet, nonce)] = request
        self._deadlines.append((before, (wallet, nonce)))
        return copy.deepcopy(typed_data)

    def execute_sponsored(
        self, wallet_address: int, typed_data: Mapping[str, Any], signature: Sequence[int]
    ) -> str:
        chain = self._chain
        wallet = parse_felt(wallet_address, "wallet_address")
        nonce = _typed_data_nonce(typed_data)
        request = self._issued.get((wallet, nonce))
        if request is None:
            if chain.is_account(wallet) and chain.is_outside_nonce_used(wallet, nonce):
                raise ChipiSessionError(
                    ErrorCode.TRANSACTION_REJECTED,
                    "SRC9: duplicated nonce (this request was already executed)",
                )
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "typed data was not issued by this paymaster"
            )
        if dict(typed_data) != request.typed_data:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "typed data was altered")
        sig = parse_felts(signature, "signature")
        try:
            receipt = chain.execute_from_outside(
                wallet,
                caller=ANY_CALLER,
                nonce=nonce,
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
        del self._issued[(wallet, nonce)]
        return receipt.tx_hash

    # -- internals -------------------------------------------------------------------------

    def _fresh_nonce(self, wallet: int) -> int:
        while True:
            nonce = secrets.randbits(128)
            if (wallet, nonce) not in self._issued and not self._chain.is_outside_nonce_used(
                wallet, nonce
            ):
                return nonce

    def _prune(self, now: int) -> None:
        """Forget requests whose window closed more than RETENTION ago (they can never run)."""
        while self._deadlines and self._deadlines[0][0] + RETENTION <= now:
            _, key = self._deadlines.popleft()
            self._issued.pop(key, None)

    def snapshot(self) -> tuple[dict[tuple[int, int], IssuedRequest], list[Any]]:
        return dict(self._issued), list(self._deadlines)

    def restore(self, snapshot: tuple[dict[tuple[int, int], IssuedRequest], list[Any]]) -> None:
        self._issued = dict(snapshot[0])
        self._deadlines = collections.deque(snapshot[1])


def _typed_data_nonce(typed_data: Mapping[str, Any]) -> int:
    try:
        message = typed_data["message"]
        return parse_felt(message["Nonce"], "typedData.message.Nonce")
    except (KeyError, TypeError):
        raise ChipiSessionError(
            ErrorCode.INVALID_INPUT, "typed data has no message.Nonce"
        ) from None
