"""Did this write execute? The one answer, used by the engine, the hub and ``ChipiApiBackend``.

A SNIP-9 nonce is single-use on chain, so a used nonce means the write executed (exactly once).
An unused nonce means "not yet" until the chain's time reaches the write's ``execute_before``;
from then on no block can run it. The nonce must be read again *after* the time: a block that
landed between the first nonce read and the time read may have used it (docs/wire-protocol.md,
"Retries and unknown outcomes").
"""

from __future__ import annotations

import enum

from .backends.base import ChainTimeReader, NonceReader
from .clock import Clock
from .errors import ChipiSessionError, ErrorCode
from .types import SubmitInfo

__all__ = ["OutcomeResolution", "ChainTimeReader", "resolve_outcome"]


class OutcomeResolution(enum.StrEnum):
    """What the chain says about a :class:`SubmitInfo`."""

    EXECUTED = "executed"  # the nonce is used: it happened (exactly once)
    NOT_EXECUTED = "not_executed"  # nonce unused and the window has closed: it never will
    PENDING = "pending"  # nonce unused but the window is open: it may still land

    @property
    def applied(self) -> bool | None:
        """True / False / None (not known yet), the ``applied`` of an error."""
        if self is OutcomeResolution.PENDING:
            return None
        return self is OutcomeResolution.EXECUTED


async def resolve_outcome(
    reader: NonceReader, info: SubmitInfo, *, clock: Clock | None = None
) -> OutcomeResolution:
    """Ask the chain whether the write ``info`` describes executed.

    "Never will" is decided by the chain's time where ``reader`` can read it (a local clock
    running ahead must not close a still-open window), else by ``clock``. Raises the reader's
    :class:`ChipiSessionError` if a read fails.
    """
    if await reader.outside_nonce_used(info.wallet_address, info.outside_nonce):
        return OutcomeResolution.EXECUTED
    if isinstance(reader, ChainTimeReader):
        now = float(await reader.chain_time())
    elif clock is not None:
        now = clock.now()
    else:
        raise ChipiSessionError(ErrorCode.NOT_SUPPORTED, "no chain time or clock to decide by")
    if now < info.execute_before:
        return OutcomeResolution.PENDING
    # the nonce was read before the time: a block may have landed in between
    if await reader.outside_nonce_used(info.wallet_address, info.outside_nonce):
        return OutcomeResolution.EXECUTED
    return OutcomeResolution.NOT_EXECUTED
