"""LocalChain: an in-process Starknet with Chipi v33 wallets, ERC-20 tokens and a paymaster.

The protocol layer lives here: transactions (INVOKE with its validate/execute phases, outside
executions through a relayer), nonces, blocks, receipts and transaction hashes. The contracts
themselves are in :mod:`.account` and :mod:`.erc20`, deploying them in :mod:`.deployment`, the
sponsoring relayer in :mod:`.paymaster`, the async ``SessionBackend`` methods in :mod:`.backend`.

Block time is ``int(clock.now())``; every included transaction gets its own block (an INVOKE's
``__validate__`` sees time and number rounded down, docs/contract.md §9.1). Transaction
hashes are Poseidon hashes (see :meth:`LocalChain.invoke_hash`), deterministic for a given
chain history and unique.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..clock import Clock, SystemClock
from ..errors import ChipiSessionError, ErrorCode
from ..felts import (
    encode_short_string,
    join_u256,
    parse_felt,
    parse_felts,
    parse_selector,
    selector,
    to_hex,
)
from ..hashing import SN_MAIN, poseidon_many
from ..logs import get_logger
from ..types import Call, SessionStatus, SpendingPolicy
from ..validate import check_clock, check_vault
from . import account as v33
from . import erc20
from .abi import decode_spans, encode_calls
from .backend import PaymasterSessionBackend
from .deployment import ACCOUNT_KIND, ERC20_KIND, ChainSetup
from .model import (
    REVERTED,
    SUCCEEDED,
    ChainEvent,
    ContractPanic,
    Invocation,
    Receipt,
    TxInfo,
)
from .paymaster import IssuedRequest, Paymaster
from .runtime import Runtime
from .state import ChainState

if TYPE_CHECKING:
    from ..backends.base import SessionBackend
    from ..vault import Vault

__all__ = ["LocalChain", "ChainSnapshot", "DEFAULT_RELAYER", "default_chain"]

log = get_logger(__name__)

#: The paymaster's relayer account (the immediate caller of ``execute_from_outside_v2``).
DEFAULT_RELAYER = encode_short_string("CHIPI_LOCAL_RELAYER")

_VALIDATE = selector("__validate__")
_EXECUTE = selector("__execute__")
_EXECUTE_FROM_OUTSIDE = selector("execute_from_outside_v2")
_INVOKE_PREFIX = encode_short_string("invoke")
_OUTSIDE_PREFIX = encode_short_string("outside_execution")


class _NotValidated(Exception):
    pass


@attrs.frozen
class ChainSnapshot:
    """Everything :meth:`LocalChain.restore` needs to rewind the chain (not the clock)."""

    state: dict[str, Any] = attrs.field(repr=False)
    receipts: dict[str, Receipt] = attrs.field(repr=False)
    block_number: int
    paymaster: Any = attrs.field(repr=False)


class LocalChain(ChainSetup, PaymasterSessionBackend):
    """An embedded chain that behaves like Starknet with the Chipi v33 wallet contract.

    Synchronous inside; the ``SessionBackend`` methods are async wrappers around the paymaster
    flow. Not thread-safe: use it from one thread (the engine's event loop).
    """

    requires_bearer_token = False

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        chain_id: int = SN_MAIN,
        vault: Vault | None = None,
        relayer: int = DEFAULT_RELAYER,
    ) -> None:
        self.clock: Clock = SystemClock() if clock is None else check_clock(clock)
        self.chain_id = parse_felt(chain_id, "chain_id")
        self.vault = None if vault is None else check_vault(vault)
        self.relayer = parse_felt(relayer, "relayer")
        self._state = ChainState()
        self._runtime = Runtime(
            self._state, {ACCOUNT_KIND: v33.ACCOUNT_CLASS, ERC20_KIND: erc20.ERC20_CLASS}
        )
        self._receipts: dict[str, Receipt] = {}
        self._block_number = 0
        self._paymaster = Paymaster(self)

    def __repr__(self) -> str:
        return (
            f"LocalChain(chain_id={to_hex(self.chain_id)}, block_number={self._block_number}, "
            f"contracts={len(self._state.contracts)})"
        )

    # -- time, blocks, events ----------------------------------------------------------------

    def now(self) -> int:
        """The block timestamp a transaction sent now would see (in its execute phase; a direct
        INVOKE's ``__validate__`` sees it rounded down to a multiple of 3600)."""
        return int(self.clock.now())

    @property
    def block_number(self) -> int:
        """Number of the latest block (0 = genesis; each transaction adds one)."""
        return self._block_number

    @property
    def events(self) -> list[ChainEvent]:
        """Every event emitted so far, oldest first (a copy)."""
        return self._state.events.copy_items()

    def get_receipt(self, tx_hash: str) -> Receipt | None:
        return self._receipts.get(_normalize_hash(tx_hash))

    def get_transaction_status(self, tx_hash: str) -> str | None:
        """``"ACCEPTED_ON_L2"`` for any included transaction (reverted ones included: their
        receipt says ``REVERTED``); None if unknown. Rejected transactions are never included."""
        return "ACCEPTED_ON_L2" if self.get_receipt(tx_hash) is not None else None

    def snapshot(self) -> ChainSnapshot:
        return ChainSnapshot(
            state=self._state.snapshot(),
            receipts=dict(self._receipts),
            block_number=self._block_number,
            paymaster=self._paymaster.snapshot(),
        )

    def restore(self, snapshot: ChainSnapshot) -> None:
        self._state.restore(snapshot.state)
        self._receipts = dict(snapshot.receipts)
        self._block_number = snapshot.block_number
        self._paymaster.restore(snapshot.paymaster)

    # -- token and account reads (setup is ChainSetup's) -------------------------------------

    def balance_of(self, token: int, owner: int) -> int:
        return join_u256(*self.view(token, "balance_of", [owner]))

    def allowance(self, token: int, owner: int, spender: int) -> int:
        return join_u256(*self.view(token, "allowance", [owner, spender]))

    def is_account(self, address: int) -> bool:
        return self._state.contracts.get(address) == ACCOUNT_KIND

    # -- contract level ----------------------------------------------------------------------

    def _call_tx(
        self, caller: int, signature: Sequence[int] = (), nonce: int = 0, tx_hash: int = 0
    ) -> TxInfo:
        """The tx_info of a plain call: transaction hash and nonce 0 unless given."""
        return TxInfo(
            account=caller,
            transaction_hash=tx_hash,
            signature=tuple(signature),
            nonce=nonce,
            chain_id=self.chain_id,
        )

    def call(
        self,
        contract: int,
        entrypoint: int | str,
        calldata: Sequence[int] = (),
        *,
        caller: int = 0,
        signature: Sequence[int] = (),
        nonce: int = 0,
        transaction_hash: int = 0,
    ) -> list[int]:
        """Run any entrypoint as ``caller`` and commit its writes; a panic raises
        :class:`ContractPanic` and changes nothing.

        ``signature``, ``nonce`` and ``transaction_hash`` set the tx_info the contract sees
        (what the Cairo tests cheat), e.g. to call ``__validate__`` directly. Left alone they
        are empty / 0, which is also what we assume an RPC ``starknet_call`` sees.
        """
        return self._run_call(
            contract, entrypoint, calldata, caller, signature, nonce, transaction_hash, True
        )

    def view(
        self,
        contract: int,
        entrypoint: int | str,
        calldata: Sequence[int] = (),
        *,
        caller: int = 0,
        signature: Sequence[int] = (),
        nonce: int = 0,
        transaction_hash: int = 0,
    ) -> list[int]:
        """Like :meth:`call`, but every write is discarded: an RPC ``starknet_call``."""
        return self._run_call(
            contract, entrypoint, calldata, caller, signature, nonce, transaction_hash, False
        )

    def _run_call(
        self,
        contract: int,
        entrypoint: int | str,
        calldata: Sequence[int],
        caller: int,
        signature: Sequence[int],
        nonce: int,
        transaction_hash: int,
        commit: bool,
    ) -> list[int]:
        sel = parse_selector(entrypoint, "entrypoint")
        data = parse_felts(calldata)
        tx = self._call_tx(
            parse_felt(caller, "caller"),
            parse_felts(signature, "signature"),
            parse_felt(nonce, "nonce"),
            parse_felt(transaction_hash, "transaction_hash"),
        )
        self._runtime.begin_block(self.now(), self._block_number + 1)
        self._runtime.inner_failures = []
        journal = self._state.journal
        with journal.atomic() if commit else journal.discarding():
            return self._runtime.execute(
                parse_felt(contract, "contract"), sel, data, caller=tx.account, tx=tx
            )

    def class_hash_at(self, address: int) -> int | None:
        """The class hash of the contract at ``address`` (v33's for accounts), None if none."""
        return self._state.class_hashes.get(address) or None

    def get_nonce(self, account: int) -> int:
        """The account's protocol nonce (the next INVOKE must carry it)."""
        if not self.is_account(account):
            raise ContractPanic("Contract not found")
        return self._state.protocol_nonces.get(account)

    def is_outside_nonce_used(self, account: int, nonce: int) -> bool:
        """``is_valid_outside_execution_nonce`` read as the view does, without running it (the
        paymaster asks twice per execute); a non-account gets the view's own panic."""
        if not self.is_account(account):
            return self.view(account, "is_valid_outside_execution_nonce", [nonce]) == [0]
        return bool(self._state.src9_nonces.get((account, parse_felt(nonce, "calldata[0]"))))

    def invoke_hash(self, account: int, calls: Sequence[Call], *, nonce: int | None = None) -> int:
        """The hash an owner signs for :meth:`invoke` (LocalChain's own INVOKE hash, not
        Starknet's): ``Poseidon('invoke', account, chain_id, nonce, n, (to, selector, len,
        calldata...)...)``, with the account's current nonce by default."""
        if nonce is None:
            nonce = self.get_nonce(account)
        return poseidon_many([_INVOKE_PREFIX, account, self.chain_id, nonce, *encode_calls(calls)])

    def invoke(
        self,
        account: int,
        calls: Sequence[Call],
        signature: Sequence[int],
        *,
        nonce: int | None = None,
    ) -> Receipt:
        """A protocol INVOKE from ``account`` (docs/contract.md §5).

        ``__validate__`` runs with caller 0 and sees the block timestamp rounded down to a
        multiple of 3600 s (and the block number to a multiple of 100), as on Starknet: a
        session key passes its expiry checks here until the end of the hour of ``valid_until``.
        Unless it returns ``'VALID'`` the transaction is rejected (``TRANSACTION_REJECTED``,
        nothing changes, the nonce does not move). Otherwise the nonce is bumped, the validate
        writes (a session's ``calls_used``) stay, and ``__execute__`` runs with the real block
        info: if it panics (a spending limit) the receipt is ``REVERTED`` and only the
        execute-phase writes are undone. An owner ``[r, s]`` signs :meth:`invoke_hash`; an
        account that is not deployed raises ``Contract not found``.
        """
        account = parse_felt(account, "account")
        call_list = tuple(calls)
        sig = parse_felts(signature, "signature")
        current = self.get_nonce(account)
        if nonce is not None and nonce != current:
            raise ChipiSessionError(
                ErrorCode.TRANSACTION_REJECTED,
                f"invalid transaction nonce: expected {current}, got {nonce}",
            )
        tx_hash = self.invoke_hash(account, call_list, nonce=current)
        tx = TxInfo(account, tx_hash, sig, current, self.chain_id)
        calldata = encode_calls(call_list)
        runtime, state = self._runtime, self._state
        runtime.begin_block(self.now(), self._block_number + 1)
        runtime.inner_failures = []
        events_start = len(state.events)
        with runtime.tracing() as trace:
            try:
                with state.journal.atomic():
                    with runtime.validate_phase():
                        result = runtime.execute(account, _VALIDATE, calldata, caller=0, tx=tx)
                    if result != [v33.VALID]:
                        raise _NotValidated
                    state.protocol_nonces.set(account, current + 1)
            except ContractPanic as panic:
                raise ChipiSessionError(
                    ErrorCode.TRANSACTION_REJECTED, f"__validate__ failed: {panic.message}"
                ) from None
            except _NotValidated:
                raise ChipiSessionError(
                    ErrorCode.TRANSACTION_REJECTED, "__validate__ did not return 'VALID'"
                ) from None
            try:
                with state.journal.atomic():
                    output = runtime.execute(account, _EXECUTE, calldata, caller=0, tx=tx)
            except ContractPanic as panic:
                runtime.inner_failures = []
                return self._include(
                    tx_hash, events_start, (), revert_reason=panic.message, trace=trace
                )
            return self._include(tx_hash, events_start, decode_spans(output), trace=trace)

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
    ) -> Receipt:
        """``execute_from_outside_v2`` called by ``relayer`` (default :attr:`relayer`) inside
        the relayer's transaction. Atomic: any panic raises :class:`ContractPanic` and changes
        nothing (no receipt, no nonce mark, no ``calls_used``)."""
        account = parse_felt(account, "account")
        relayer = self.relayer if relayer is None else parse_felt(relayer, "relayer")
        sig = parse_felts(signature, "signature")
        call_list = tuple(calls)
        encoded = encode_calls(call_list)
        if not all(type(c) is Call for c in call_list):  # a Call's fields are felts already
            encoded = list(parse_felts(encoded, "outside execution calls"))
        head = parse_felts([caller, nonce, execute_after, execute_before], "outside execution")
        calldata = [*head, *encoded, len(sig), *sig]
        state, runtime = self._state, self._runtime
        relayer_nonce = state.protocol_nonces.get(relayer)
        tx_hash = poseidon_many(
            [_OUTSIDE_PREFIX, relayer, relayer_nonce, account, self.chain_id, calldata[1]]
        )
        tx = TxInfo(relayer, tx_hash, (), relayer_nonce, self.chain_id)
        runtime.begin_block(self.now(), self._block_number + 1)
        runtime.inner_failures = []
        events_start = len(state.events)
        with runtime.tracing() as trace, state.journal.atomic():
            output = runtime.execute(
                account, _EXECUTE_FROM_OUTSIDE, calldata, caller=relayer, tx=tx
            )
            state.protocol_nonces.set(relayer, relayer_nonce + 1)
        return self._include(tx_hash, events_start, decode_spans(output), trace=trace)

    def _include(
        self,
        tx_hash: int,
        events_start: int,
        results: tuple[tuple[int, ...], ...],
        *,
        revert_reason: str | None = None,
        trace: Sequence[Invocation] = (),
    ) -> Receipt:
        self._block_number += 1
        receipt = Receipt(
            tx_hash=to_hex(tx_hash),
            status=SUCCEEDED if revert_reason is None else REVERTED,
            revert_reason=revert_reason,
            events=self._state.events.since(events_start),
            block_number=self._block_number,
            block_timestamp=self._runtime.block_timestamp,
            results=results,
            inner_failures=tuple(self._runtime.inner_failures),
            trace=tuple(trace),
        )
        self._receipts[receipt.tx_hash] = receipt
        if log.isEnabledFor(logging.DEBUG):  # every transaction: build nothing unless wanted
            log.debug(
                "block %d: %s %s%s",
                receipt.block_number,
                receipt.tx_hash,
                receipt.status,
                f" ({revert_reason})" if revert_reason else "",
                extra={"chipi_tx_hash": receipt.tx_hash},  # the write has not returned it yet
            )
        return receipt

    # -- reads -------------------------------------------------------------------------------

    def session_status(self, wallet_address: int, session_public_key: int) -> SessionStatus:
        """``get_session_data`` plus the whitelist read slot by slot, as a client does."""
        data = self.view(wallet_address, "get_session_data", [session_public_key])
        allowed = [
            self.view(wallet_address, "get_session_allowed_entrypoint_at", [session_public_key, i])[
                0
            ]
            for i in range(data[3])
        ]
        return SessionStatus.from_felts(data, allowed)

    def spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy:
        return SpendingPolicy.from_felts(
            self.view(wallet_address, "get_spending_policy", [session_public_key, token])
        )

    # -- the paymaster -----------------------------------------------------------------------

    def prepare_typed_data(self, wallet_address: int, calls: Sequence[Call]) -> dict[str, Any]:
        """SNIP-9 v2 typed data for ``calls`` (u128 times, caller ANY_CALLER, a fresh random
        nonce, window ``[now - 60, now + 3600]``), remembered for :meth:`execute_sponsored`."""
        return self._paymaster.prepare_typed_data(wallet_address, calls)

    def issue_request(self, wallet_address: int, calls: Sequence[Call]) -> IssuedRequest:
        return self._paymaster.issue(wallet_address, calls)

    def execute_issued(self, request: IssuedRequest, signature: Sequence[int]) -> str:
        return self._paymaster.execute_issued(request, signature)

    def execute_sponsored(
        self, wallet_address: int, typed_data: Mapping[str, Any], signature: Sequence[int]
    ) -> str:
        """Execute issued, unaltered typed data once through the relayer; returns the tx hash.
        Failures are :class:`ChipiSessionError` with Chipi's codes and the panic text."""
        return self._paymaster.execute_sponsored(wallet_address, typed_data, signature)


def _normalize_hash(tx_hash: str) -> str:
    try:
        return to_hex(parse_felt(tx_hash, "tx_hash"))
    except ChipiSessionError:
        return tx_hash


_default_chain: LocalChain | None = None
_default_lock = threading.Lock()


def default_chain() -> LocalChain:
    """The process-wide LocalChain (system clock, SN_MAIN) a session uses when it is given no
    backend; created on first use."""
    global _default_chain
    with _default_lock:
        if _default_chain is None:
            _default_chain = LocalChain()
        return _default_chain


if TYPE_CHECKING:

    def _implements_session_backend(chain: LocalChain) -> SessionBackend:
        return chain  # mypy checks LocalChain against the protocol here
