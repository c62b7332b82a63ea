"""``SessionBackend`` (docs/architecture.md, "Backends") on top of a sponsoring paymaster.

Every write goes the way Chipi's API makes it go: build the call, ask the paymaster for SNIP-9
typed data, sign its SNIP-12 hash (owner ``[r, s]`` or session ``[pubkey, r, s, valid_until]``),
hand it back for execution. Keys are used to sign and never kept. Each method starts with a
checkpoint, so it is a real await point, then runs synchronously: a transaction is never
interleaved with another one.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import anyio.lowlevel

from .. import selfcalls
from ..backends.base import OnSubmit, notify_submit
from ..errors import ChipiSessionError, ErrorCode
from ..execution_results import OUTSIDE_EXECUTION_SELECTORS, InnerCall, build_execution_result
from ..felts import parse_felt
from ..hashing import ANY_CALLER, outside_execution_hash
from ..keys import SecretKey, session_signature
from ..types import (
    Call,
    ExecutedEvent,
    ExecutionResult,
    SessionStatus,
    SpendingPolicy,
    SubmitInfo,
    WalletData,
)
from .model import ContractPanic, Invocation, Receipt
from .paymaster import IssuedRequest, call_tuple

__all__ = ["PaymasterSessionBackend", "receipt_result"]


def _require_session_wallet(wallet: WalletData) -> None:
    if not wallet.supports_session:
        raise ChipiSessionError(
            ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION,
            f"session keys need a CHIPI wallet, not {wallet.wallet_type.value}",
        )


def _read_error(panic: ContractPanic, wallet_address: int) -> ChipiSessionError:
    if panic.message == "Contract not found":
        return ChipiSessionError(
            ErrorCode.INVALID_INPUT, f"no wallet is deployed at {hex(wallet_address)}"
        )
    return ChipiSessionError(ErrorCode.SESSION_INVALID_RESPONSE, panic.message)


def receipt_result(receipt: Receipt) -> ExecutionResult:
    """A LocalChain receipt as an :class:`ExecutionResult` (docs/execution-results.md)."""
    multicall = _multicall(receipt.trace)
    inner = None
    if multicall is not None:
        inner = [InnerCall(c.is_reverted, c.result, c.revert_reason) for c in multicall.calls]
    return build_execution_result(
        receipt.tx_hash,
        reverted=not receipt.succeeded,
        revert_reason=receipt.revert_reason,
        events=(ExecutedEvent(e.from_address, e.keys, e.data) for e in receipt.events),
        inner=inner,
        block_number=receipt.block_number,
    )


def _multicall(trace: Sequence[Invocation]) -> Invocation | None:
    """The outside execution (a sponsored execute), else an INVOKE's ``__execute__``."""
    for root in trace:
        if root.selector in OUTSIDE_EXECUTION_SELECTORS:
            return root
    return trace[-1] if len(trace) == 2 else None


class PaymasterSessionBackend(abc.ABC):
    """The async ``SessionBackend`` methods, given the paymaster and two sync reads."""

    requires_bearer_token = False

    @abc.abstractmethod
    def prepare_typed_data(self, wallet_address: int, calls: Sequence[Call]) -> dict[str, Any]: ...

    @abc.abstractmethod
    def issue_request(self, wallet_address: int, calls: Sequence[Call]) -> IssuedRequest:
        """:meth:`prepare_typed_data`, returning the issued request itself."""

    @abc.abstractmethod
    def execute_issued(self, request: IssuedRequest, signature: Sequence[int]) -> str:
        """:meth:`execute_sponsored` of a request from :meth:`issue_request`, as it is."""

    @abc.abstractmethod
    def execute_sponsored(
        self, wallet_address: int, typed_data: Mapping[str, Any], signature: Sequence[int]
    ) -> str: ...

    @abc.abstractmethod
    def session_status(self, wallet_address: int, session_public_key: int) -> SessionStatus: ...

    @abc.abstractmethod
    def spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy: ...

    # -- signing helpers ---------------------------------------------------------------------

    @abc.abstractmethod
    def is_outside_nonce_used(self, account: int, nonce: int) -> bool: ...

    chain_id: int

    def _message_hash(self, wallet_address: int, typed_data: Mapping[str, Any]) -> int:
        """The SNIP-12 hash of typed data this paymaster issued (so its shape is known): the
        contract's own Poseidon construction (~0.5 ms) rather than TypedData (~2 ms). The
        tests check both give the same hash."""
        message = typed_data["message"]
        calls = [
            Call(to=c["To"], selector=c["Selector"], calldata=c["Calldata"])
            for c in message["Calls"]
        ]
        return outside_execution_hash(
            account=wallet_address,
            chain_id=self.chain_id,
            caller=parse_felt(message["Caller"]),
            nonce=parse_felt(message["Nonce"]),
            execute_after=parse_felt(message["Execute After"]),
            execute_before=parse_felt(message["Execute Before"]),
            calls=calls,
            felt_times=typed_data["types"]["OutsideExecution"][2]["type"] == "felt",
        )

    @abc.abstractmethod
    def now(self) -> int: ...

    async def chain_time(self) -> int:
        """The block timestamp the next transaction would see."""
        await anyio.lowlevel.checkpoint()
        return self.now()

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return self.is_outside_nonce_used(wallet_address, nonce)

    def _request_hash(self, request: IssuedRequest) -> int:
        """The SNIP-12 hash of an issued request, from the fields its typed data was built
        from (equal to :meth:`_message_hash` of that typed data; the tests check both)."""
        return outside_execution_hash(
            account=request.wallet,
            chain_id=self.chain_id,
            caller=ANY_CALLER,
            nonce=request.nonce,
            execute_after=request.execute_after,
            execute_before=request.execute_before,
            calls=request.calls,
        )

    async def _submit(
        self,
        action: str,
        wallet: WalletData,
        request: IssuedRequest,
        msg_hash: int,
        signature: Sequence[int],
        on_submit: OnSubmit | None,
    ) -> str:
        info = SubmitInfo(action, wallet.address, request.nonce, msg_hash, request.execute_before)
        await notify_submit(on_submit, info)
        return self.execute_issued(request, signature)

    async def _owner_execute(
        self,
        action: str,
        wallet: WalletData,
        owner_key: SecretKey,
        call: Call,
        on_submit: OnSubmit | None,
    ) -> str:
        request = self.issue_request(wallet.address, [call])
        msg_hash = self._request_hash(request)
        r, s = owner_key.sign(msg_hash)
        return await self._submit(action, wallet, request, msg_hash, [r, s], on_submit)

    # -- SessionBackend ----------------------------------------------------------------------

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
        await anyio.lowlevel.checkpoint()
        _require_session_wallet(wallet)
        call = selfcalls.add_or_update_session_key_call(
            wallet.address, session_public_key, valid_until, max_calls, allowed_entrypoints
        )
        return await self._owner_execute("register", wallet, owner_key, call, on_submit)

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        await anyio.lowlevel.checkpoint()
        _require_session_wallet(wallet)
        call = selfcalls.revoke_session_key_call(wallet.address, session_public_key)
        return await self._owner_execute("revoke", wallet, owner_key, call, on_submit)

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
        await anyio.lowlevel.checkpoint()
        _require_session_wallet(wallet)
        call = selfcalls.set_spending_policy_call(
            wallet.address,
            session_public_key,
            token,
            max_per_call,
            max_per_window,
            window_seconds,
        )
        return await self._owner_execute("set_spending_policy", wallet, owner_key, call, on_submit)

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
        await anyio.lowlevel.checkpoint()
        _require_session_wallet(wallet)
        call = selfcalls.remove_spending_policy_call(wallet.address, session_public_key, token)
        return await self._owner_execute(
            "remove_spending_policy", wallet, owner_key, call, on_submit
        )

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
        await anyio.lowlevel.checkpoint()
        _require_session_wallet(wallet)
        call_list = call_tuple(calls)
        request = self.issue_request(wallet.address, call_list)
        msg_hash = self._request_hash(request)
        signature = session_signature(session_key, msg_hash, valid_until)
        return await self._submit("execute", wallet, request, msg_hash, signature, on_submit)

    @abc.abstractmethod
    def get_receipt(self, tx_hash: str) -> Any: ...

    async def confirm_transaction(self, tx_hash: str) -> None:
        """Transactions are included as they are sent: confirmed unless reverted."""
        await anyio.lowlevel.checkpoint()
        receipt = self.get_receipt(tx_hash)
        if receipt is None:
            raise ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, f"unknown transaction {tx_hash}")
        if receipt.status != "SUCCEEDED":
            raise ChipiSessionError(
                ErrorCode.TRANSACTION_REJECTED,
                f"transaction reverted: {receipt.revert_reason or 'no reason'}",
            )

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        """ExecutionResultReader: the receipt and the recorded call tree, as a result."""
        await anyio.lowlevel.checkpoint()
        return self.final_execution_result(tx_hash)

    def final_execution_result(self, tx_hash: str) -> ExecutionResult:
        """FinalExecutionResults: a transaction is included (or not) as it is sent, so its
        result is final and read without waiting."""
        receipt = self.get_receipt(tx_hash)
        if receipt is None:
            raise ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, f"unknown transaction {tx_hash}")
        return receipt_result(receipt)

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus:
        await anyio.lowlevel.checkpoint()
        try:
            return self.session_status(wallet_address, session_public_key)
        except ContractPanic as panic:
            raise _read_error(panic, wallet_address) from None

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy:
        await anyio.lowlevel.checkpoint()
        try:
            return self.spending_policy(wallet_address, session_public_key, token)
        except ContractPanic as panic:
            raise _read_error(panic, wallet_address) from None
