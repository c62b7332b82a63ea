"""Status polling: one session's side of the scheduler's batched status poller.

The poller (:class:`~chipi_session.scheduling.StatusPoller`) reads the status of many
sessions in one batched request and hands each result back to its session; this module is the
session's side of that exchange, moved out of ``engine.py`` (docs/architecture.md, "Module
map"). ``ChipiSession`` only wires it: with ``auto_check_status`` (and a wallet that supports
sessions) it registers a :class:`StatusPolling` with its scheduler's poller when it starts and
removes it when it closes.

The contract with the poller (``scheduling.Pollable``), round by round:

1. :meth:`StatusPolling.poll_target` — right before a batch is read: what to read (the wallet
   and the current session key), or None to sit this round out (no session, closed, or an
   explicit ``refetch_status`` already reading). It notes the core's version: the read starts
   now.
2. Exactly one of :meth:`~StatusPolling.poll_result` (a status) or
   :meth:`~StatusPolling.poll_failed` (an exception, for the batch or this session alone) for
   each target returned, on the poller's task once the batch is back. Both are synchronous and
   never raise or block; whatever they start runs in the session's task group.

A result is applied only if nothing changed locally since its target was taken (the core's
rule, ``SessionCore.fresh``: no write in flight or applied, same key) — otherwise it may
predate a local write and is dropped; the next round reads again. Applying it is the session's
own effect (``PollingContext.apply_status``: publish ``StatusRefreshed``, reconcile the state,
re-check in-doubt writes). A failure is kept in ``session.error`` and published as
``ActionFailed`` (action ``refetch_status``), like an explicit read's; an error that is not a
``ChipiSessionError`` (a bug in a backend) is logged. Records made meanwhile carry the session
and action ``status_poll`` (docs/observability.md, "Logging").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import ChipiSessionError
from ..logs import get_logger
from ..types import SessionStatus

if TYPE_CHECKING:
    from .context import PollingContext

__all__ = ["StatusPolling"]

#: the poll's records keep the engine's logger, as before the move
log = get_logger("chipi_session.engine")

#: the log records of a poll carry this action
POLL_ACTION = "status_poll"


class StatusPolling:
    """The :class:`~chipi_session.scheduling.Pollable` of one session."""

    __slots__ = ("_session", "_version")

    def __init__(self, session: PollingContext) -> None:
        self._session = session
        #: the core's version when the last target was taken (-1: none yet)
        self._version = -1

    def poll_target(self) -> tuple[int, int] | None:
        """``(wallet address, session public key)`` to read, or None to skip this round."""
        s = self._session
        session = s.session
        if s.closed or session is None or s.is_loading_status:
            return None
        self._version = s.core.version  # a result older than a local write is dropped
        return (s.wallet.address, session.public_key)

    def poll_result(self, status: Any) -> None:
        """Apply the status read for the last target, if it is still fresh."""
        s = self._session
        session = s.session
        if (
            not s.closed
            and session is not None
            and isinstance(status, SessionStatus)
            and s.core.fresh(self._version, session.public_key)
        ):
            with logs.action(s.log_context, POLL_ACTION):  # the shared poller's task
                s.apply_status(status)

    def poll_failed(self, error: Exception) -> None:
        """The read for the last target failed."""
        s = self._session
        with logs.action(s.log_context, POLL_ACTION):
            if isinstance(error, ChipiSessionError):
                s.record_failure("refetch_status", error)
            else:
                log.warning("status poll failed: %s", type(error).__name__)
