"""The variants of ``FaultInjectingBackend``: one subclass per set of optional capabilities.

``FaultInjectingBackend(inner)`` (:mod:`chipi_session.backends.faults`) returns an instance of
the class built here for ``inner``: a :class:`~chipi_session.backends.base.NonceReader` wrapper
sends nonce and chain-time reads through the fault plan, a
:class:`~chipi_session.backends.base.TransactionConfirmer` /
:class:`~chipi_session.backends.base.ExecutionResultReader` wrapper passes confirmations
through (faulted only when named, see :data:`~chipi_session.backends.fault_plan.RESULT_METHODS`).
The engine decides by ``isinstance`` what it can do, so a wrapper must have exactly the inner
backend's capabilities.
"""

from __future__ import annotations

from typing import Final

from ..errors import ChipiSessionError, ErrorCode
from ..types import ExecutionResult
from .base import ChainTimeReader, ExecutionResultReader, NonceReader, TransactionConfirmer
from .faults import FaultInjectingBackend

__all__ = ["variant_for"]


class _NonceReadingFaultBackend(FaultInjectingBackend):
    """The wrapper of a NonceReader: nonce reads go through the fault plan as well."""

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        inner = self._inner
        assert isinstance(inner, NonceReader)
        return await self._read(
            "outside_nonce_used", lambda: inner.outside_nonce_used(wallet_address, nonce)
        )

    async def chain_time(self) -> int:
        """The inner backend's chain time (through the fault plan), else the wrapper's clock."""
        inner = self._inner
        if not isinstance(inner, ChainTimeReader):
            if self.clock is None:
                raise ChipiSessionError(ErrorCode.NOT_SUPPORTED, "no chain time available")
            return int(self.clock.now())
        return await self._read("chain_time", inner.chain_time)


class _ConfirmingFaultBackend(FaultInjectingBackend):
    """The wrapper of a TransactionConfirmer."""

    async def confirm_transaction(self, tx_hash: str) -> None:
        inner = self._inner
        assert isinstance(inner, TransactionConfirmer)
        await self._result_read("confirm_transaction", lambda: inner.confirm_transaction(tx_hash))


class _ResultReadingFaultBackend(FaultInjectingBackend):
    """The wrapper of an ExecutionResultReader."""

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult:
        inner = self._inner
        assert isinstance(inner, ExecutionResultReader)
        return await self._result_read(
            "get_execution_result", lambda: inner.get_execution_result(tx_hash)
        )


_MIXINS: Final[dict[str, type[FaultInjectingBackend]]] = {
    "nonce": _NonceReadingFaultBackend,
    "confirm": _ConfirmingFaultBackend,
    "result": _ResultReadingFaultBackend,
}
_VARIANTS: dict[tuple[str, ...], type[FaultInjectingBackend]] = {}


def variant_for(inner: object) -> type[FaultInjectingBackend]:
    """The wrapper class for ``inner``: its optional capabilities, no more, no fewer."""
    return _variant(_capabilities(inner))


def _capabilities(inner: object) -> tuple[str, ...]:
    found = []
    if isinstance(inner, NonceReader):
        found.append("nonce")
    if isinstance(inner, TransactionConfirmer):
        found.append("confirm")
    if isinstance(inner, ExecutionResultReader):
        found.append("result")
    return tuple(found)


def _variant(capabilities: tuple[str, ...]) -> type[FaultInjectingBackend]:
    """The wrapper class with exactly these optional methods (one class per combination)."""
    if not capabilities:
        return FaultInjectingBackend
    if len(capabilities) == 1:
        return _MIXINS[capabilities[0]]
    cls = _VARIANTS.get(capabilities)
    if cls is None:
        bases = tuple(_MIXINS[c] for c in capabilities)
        cls = type("FaultInjectingBackend_" + "_".join(capabilities), bases, {})
        _VARIANTS[capabilities] = cls
    return cls
