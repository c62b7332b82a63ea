"""The execution engine: entrypoint dispatch, the ``call_contract`` syscall, events.

A contract class is a mapping ``selector -> handler``; a handler receives a :class:`Frame` (what
Cairo code gets from syscalls: its own address, the caller, tx_info, the block timestamp) and
its :class:`~chipi_session.localchain.abi.Calldata`, and returns its serialized result or raises
:class:`~chipi_session.localchain.model.ContractPanic`. Everything is synchronous: a
transaction runs to completion before anything else touches the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from .abi import Calldata
from .model import ChainEvent, ContractPanic, TxInfo
from .state import ChainState

__all__ = ["Frame", "Handler", "ContractClass", "Runtime"]

log = logging.getLogger(__name__)

Handler = Callable[["Frame", Calldata], list[int]]
ContractClass = Mapping[int, Handler]


class Frame:
    """One contract invocation: the view a Cairo function has of the world."""

    __slots__ = ("runtime", "state", "address", "caller", "tx")

    def __init__(self, runtime: Runtime, address: int, caller: int, tx: TxInfo) -> None:
        self.runtime = runtime
        self.state = runtime.state
        self.address = address
        self.caller = caller
        self.tx = tx

    @property
    def now(self) -> int:
        """``get_block_timestamp()``."""
        return self.runtime.block_timestamp

    def emit(self, keys: Sequence[int], data: Sequence[int] = ()) -> None:
        self.state.events.append(ChainEvent(self.address, tuple(keys), tuple(data)))

    def call_contract(self, to: int, selector: int, calldata: Sequence[int]) -> list[int]:
        """The ``call_contract`` syscall: the callee sees this contract as its caller."""
        return self.runtime.execute(to, selector, calldata, caller=self.address, tx=self.tx)

    def try_call_contract(
        self, to: int, selector: int, calldata: Sequence[int]
    ) -> list[int] | ContractPanic:
        """A call whose failure is caught: its own writes (and events) are undone and the
        panic is returned instead of raised (the v33 multicall, contract.md §6.5)."""
        journal = self.state.journal
        checkpoint = journal.checkpoint()
        try:
            return self.call_contract(to, selector, calldata)
        except ContractPanic as panic:
            journal.revert(checkpoint)
            log.debug("inner call to %#x failed: %s", to, panic.message)
            return panic


class Runtime:
    """Holds the classes and runs entrypoints against :class:`ChainState`."""

    def __init__(self, state: ChainState, classes: Mapping[str, ContractClass]) -> None:
        self.state = state
        self.classes = dict(classes)
        #: ``get_block_timestamp()`` for the transaction being executed.
        self.block_timestamp = 0
        #: ``(call index, panic message)`` of inner calls caught during the current transaction.
        self.inner_failures: list[tuple[int, str]] = []

    def execute(
        self, to: int, selector: int, calldata: Sequence[int], *, caller: int, tx: TxInfo
    ) -> list[int]:
        kind = self.state.contracts.get(to)
        if not kind:
            raise ContractPanic("Contract not found")
        handler = self.classes[kind].get(selector)
        if handler is None:
            raise ContractPanic("ENTRYPOINT_NOT_FOUND")
        return handler(Frame(self, to, caller, tx), Calldata(calldata))
