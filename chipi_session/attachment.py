"""How a ``SessionHub`` attaches a session: the one internal interface between the two.

A standalone ``ChipiSession`` owns its scheduler and has no journal. A hub instead gives each
session the hub's shared :class:`~chipi_session.scheduling.Scheduler`, the hub's event sink,
a journal over the hub's store and what the store remembered (``seen_registered``), through
:meth:`ChipiSession.attach` — once, before the session starts. After that the hub drives the
session only through :class:`AttachedSession` (docs/architecture.md, "Hub attachment"): it
never reads another object's private attributes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from .errors import ChipiSessionError
    from .events import Event
    from .journal import ActionJournal
    from .pubsub import Broadcaster
    from .scheduling import Scheduler
    from .types import SessionKeyData, SubmitInfo, WalletData

__all__ = ["AttachedSession", "HubAttachment"]


@attrs.frozen
class HubAttachment:
    """What a hub gives a session it opens."""

    scheduler: Scheduler
    #: every event of the session is also published here (the hub's subscribers)
    events: Broadcaster[Event]
    #: builds the session's journal (it reads the session's record through AttachedSession)
    journal: Callable[[AttachedSession], ActionJournal] | None = None
    #: the store's record says the chain has seen the stored key registered
    seen_registered: bool = False


class AttachedSession(Protocol):
    """What a hub may do with a session it attached (implemented by ``ChipiSession``)."""

    @property
    def closed(self) -> bool: ...

    @property
    def wallet(self) -> WalletData: ...

    @property
    def seen_registered(self) -> bool: ...

    @property
    def journal(self) -> ActionJournal | None: ...

    def learn_registered(self) -> bool:
        """The journal proved a register/revoke of this key executed; True if news."""
        ...

    async def start_attached(self) -> None:
        """Restore the stored session and reconcile it with the chain."""
        ...

    def shutdown(self) -> None:
        """Cancel the session's actions and timers, zero its key (synchronous)."""
        ...

    def hold_in_doubt(
        self, info: SubmitInfo, *, count: bool, token: object, mine: bool
    ) -> None: ...

    async def resolve_outcome(self, info: SubmitInfo | None) -> bool | None: ...

    async def resume_renewal(
        self,
        successor: SessionKeyData | None,
        retiring: Iterable[int],
        in_doubt: SubmitInfo | None = None,
    ) -> None: ...

    def persist(self) -> None: ...

    def record_failure(self, action: str, error: ChipiSessionError) -> None: ...

    def spawn(self, coro: Awaitable[Any]) -> None: ...
