"""The execution engine: entrypoint dispatch, the ``call_contract`` syscall, events.

A contract class is a mapping ``selector -> handler``; a handler receives a :class:`Frame` (what
Cairo code gets from syscalls: its own address, the caller, tx_info, the block timestamp) and
its :class:`~chipi_session.localchain.abi.Calldata`, and returns its serialized result or raises
:class:`~chipi_session.localchain.model.ContractPanic`. Everything is synchronous: a
transaction runs to completion before anything else touches the state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

from ..logs import get_logger
from .abi import Calldata
from .model import ChainEvent, ContractPanic, Invocation, TxInfo
from .state import ChainState

__all__ = [
    "Frame",
    "Handler",
    "ContractClass",
    "Runtime",
    "VALIDATE_TIMESTAMP_ROUNDING",
    "VALIDATE_BLOCK_NUMBER_ROUNDING",
]

log = get_logger(__name__)

#: Starknet's versioned constants ``validate_timestamp_rounding`` and
#: ``validate_block_number_rounding``.
VALIDATE_TIMESTAMP_ROUNDING = 3600
VALIDATE_BLOCK_NUMBER_ROUNDING = 100

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

    @property
    def block_number(self) -> int:
        """``get_block_number()``."""
        return self.runtime.block_number

    def emit(self, keys: Sequence[int], data: Sequence[int] = ()) -> None:
        event = ChainEvent(self.address, tuple(keys), tuple(data))
        self.state.events.append(event)
        self.runtime.record_event(event)

    def call_contract(self, to: int, selector: int, calldata: Sequence[int]) -> list[int]:
        """The ``call_contract`` syscall: the callee sees this contract as its caller."""
        return self.runtime.execute(to, selector, calldata, caller=self.address, tx=self.tx)

    def try_call_contract(
        self, to: int, selector: int, calldata: Sequence[int]
    ) -> list[int] | ContractPanic:
        """A call whose failure is caught: its own writes (and events) are undone and the
        panic is returned instead of raised (the v33 multicall, docs/contract.md §5)."""
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
        #: ``get_block_timestamp()`` / ``get_block_number()`` for the transaction being executed.
        self.block_timestamp = 0
        self.block_number = 0
        #: ``(call index, panic message)`` of inner calls caught during the current transaction.
        self.inner_failures: list[tuple[int, str]] = []
        # the invocation tree of the transaction being traced (None: not tracing, e.g. a view)
        self._trace: list[Invocation] | None = None
        self._stack: list[Invocation] = []
        self._event_order = 0

    def begin_block(self, timestamp: int, number: int) -> None:
        """The block info the next transaction (or call) sees."""
        self.block_timestamp, self.block_number = timestamp, number

    @contextlib.contextmanager
    def validate_phase(self) -> Iterator[None]:
        """Inside ``__validate__`` (and all it calls) Starknet shows the block timestamp rounded
        down to a multiple of 3600 s and the block number to a multiple of 100; the execute phase
        sees the real values (docs/contract.md §9.1)."""
        timestamp, number = self.block_timestamp, self.block_number
        self.block_timestamp = timestamp - timestamp % VALIDATE_TIMESTAMP_ROUNDING
        self.block_number = number - number % VALIDATE_BLOCK_NUMBER_ROUNDING
        try:
            yield
        finally:
            self.block_timestamp, self.block_number = timestamp, number

    @contextlib.contextmanager
    def tracing(self) -> Iterator[list[Invocation]]:
        """Record the invocation tree of one transaction (the root invocations, in order)."""
        roots: list[Invocation] = []
        self._trace, self._stack, self._event_order = roots, [], 0
        try:
            yield roots
        finally:
            self._trace, self._stack = None, []

    def record_event(self, event: ChainEvent) -> None:
        if self._stack:
            self._stack[-1].events.append((self._event_order, event))
            self._event_order += 1

    def execute(
        self, to: int, selector: int, calldata: Sequence[int], *, caller: int, tx: TxInfo
    ) -> list[int]:
        if self._trace is None:
            return self._run(to, selector, calldata, caller, tx)
        node = Invocation(
            to, selector, tuple(calldata), caller, self.state.class_hashes.get(to) or 0
        )
        (self._stack[-1].calls if self._stack else self._trace).append(node)
        self._stack.append(node)
        try:
            result = self._run(to, selector, calldata, caller, tx)
        except ContractPanic as panic:
            node.revert(panic.message)
            raise
        finally:
            self._stack.pop()
        node.result = tuple(result)
        return result

    def _run(
        self, to: int, selector: int, calldata: Sequence[int], caller: int, tx: TxInfo
    ) -> list[int]:
        kind = self.state.contracts.get(to)
        if not kind:
            raise ContractPanic("Contract not found")
        handler = self.classes[kind].get(selector)
        if handler is None:
            raise ContractPanic("ENTRYPOINT_NOT_FOUND")
        return handler(Frame(self, to, caller, tx), Calldata(calldata))
