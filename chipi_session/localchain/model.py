"""The chain's public value types: panics, events, receipts, and the tx_info contracts see."""

from __future__ import annotations

import attrs

__all__ = [
    "ContractPanic",
    "ChainEvent",
    "Invocation",
    "Receipt",
    "TxInfo",
    "SUCCEEDED",
    "REVERTED",
]

SUCCEEDED = "SUCCEEDED"
REVERTED = "REVERTED"


class ContractPanic(Exception):
    """A Cairo panic. ``message`` is the contract's exact text (``'SRC9: duplicated nonce'``,
    the ByteArray ``"Spending: invalid amount"``, ``'ENTRYPOINT_NOT_FOUND'``...)."""

    message: str

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __repr__(self) -> str:
        return f"ContractPanic({self.message!r})"


@attrs.frozen
class ChainEvent:
    """A Starknet event: ``keys[0]`` is sn_keccak of the variant name, then the ``#[key]``
    fields; ``data`` holds the other fields in Serde order (docs/contract.md, "Events")."""

    from_address: int
    keys: tuple[int, ...]
    data: tuple[int, ...]


@attrs.define(eq=False)
class Invocation:
    """One entrypoint invocation of a transaction, with its nested calls: what a node's
    ``starknet_traceTransaction`` reports as a FUNCTION_INVOCATION (RPC 0.8 adds
    ``is_reverted``). Built while the transaction runs; read-only once it is included.

    ``events`` are ``(order in the transaction, event)``; a reverted invocation keeps none
    (its writes and events were undone) and carries the panic text in ``revert_reason``.
    """

    contract_address: int
    selector: int
    calldata: tuple[int, ...]
    caller: int
    class_hash: int
    result: tuple[int, ...] = ()
    calls: list[Invocation] = attrs.field(factory=list)
    events: list[tuple[int, ChainEvent]] = attrs.field(factory=list)
    is_reverted: bool = False
    revert_reason: str | None = None

    def revert(self, reason: str) -> None:
        """This invocation panicked: its effects, and those of everything it called, are gone."""
        self.is_reverted = True
        self.revert_reason = reason
        stack = [self]
        while stack:
            node = stack.pop()
            node.events = []
            stack.extend(node.calls)


@attrs.frozen
class Receipt:
    """The outcome of an included transaction.

    ``results`` are the return spans of the executed calls (a failed inner call of a multicall
    gives an empty span); ``inner_failures`` lists ``(call index, panic message)`` for those
    failures, which the chain itself does not report but a developer wants to see.
    """

    tx_hash: str
    status: str  # "SUCCEEDED" | "REVERTED"
    revert_reason: str | None
    events: tuple[ChainEvent, ...]
    block_number: int
    block_timestamp: int
    results: tuple[tuple[int, ...], ...] = ()
    inner_failures: tuple[tuple[int, str], ...] = ()
    #: The root invocations, in order (an INVOKE: ``__validate__`` then ``__execute__``; an
    #: outside execution: ``execute_from_outside_v2`` called by the relayer).
    trace: tuple[Invocation, ...] = attrs.field(default=(), eq=False, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


@attrs.frozen
class TxInfo:
    """What ``get_tx_info()`` returns inside a transaction (the fields the v33 account reads)."""

    account: int
    transaction_hash: int
    signature: tuple[int, ...]
    nonce: int
    chain_id: int
