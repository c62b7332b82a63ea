"""Structured logging: every record of the library says which session, slot and action it is
about, as ``extra`` fields a JSON formatter can index (docs/observability.md, "Logging").

Why a context variable and a filter rather than a ``LoggerAdapter``: the context is set in a
few places only — where an action starts (``ChipiSession``'s action runner), where a hub
opens or closes a slot, where background work of a session runs — and contextvars follow the
work into every anyio task it spawns (asyncio and trio copy the spawner's context), so the
backends, stores, journal and local chain that run inside an action carry it without knowing
about it; their log calls stay plain ``log.info(...)``. Concurrent sessions never see each
other's context: each task has its own copy.

Every module logger is made by :func:`get_logger`, which attaches :class:`ContextFilter`; the
filter stamps the fields in :data:`FIELDS` on each record (``None`` outside any session) and
never overwrites a field the caller passed in ``extra``. Only public values are stamped: the
session's *public* key, the wallet address, the hub's slot name, the action name and the
transaction hash.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from .felts import to_hex

if TYPE_CHECKING:
    from .types import SessionKeyData, WalletData

__all__ = [
    "FIELDS",
    "ContextFilter",
    "LogContext",
    "SessionLike",
    "action",
    "adopt",
    "bind",
    "current",
    "get_logger",
    "note_tx_hash",
    "session_context",
]

#: The ``extra`` field names stamped on every record of the library (stable: index on them).
FIELDS = ("chipi_session_key", "chipi_slot", "chipi_action", "chipi_tx_hash", "chipi_wallet")


class SessionLike(Protocol):
    """What the context reads from a session, lazily, when a record is made (public only)."""

    @property
    def session(self) -> SessionKeyData | None: ...

    @property
    def wallet(self) -> WalletData: ...


class _TxBox:
    """The transaction hash of one action, filled once a write returns it (shared with the
    action's background tasks, which inherit the same context)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: str | None = None


class LogContext:
    """Who and what the records made under it are about.

    The session key is read from ``owner`` when a record is made, so records after a create
    or a renewal carry the new key.
    """

    __slots__ = ("owner", "slot", "action", "wallet", "_tx")

    def __init__(
        self,
        *,
        owner: SessionLike | None = None,
        slot: str | None = None,
        action: str | None = None,
        wallet: int | None = None,
        tx: _TxBox | None = None,
    ) -> None:
        self.owner = owner
        self.slot = slot
        self.action = action
        self.wallet = wallet
        self._tx = tx

    @property
    def tx_hash(self) -> str | None:
        return None if self._tx is None else self._tx.value

    def derive(
        self,
        *,
        owner: SessionLike | None = None,
        slot: str | None = None,
        action: str | None = None,
        wallet: int | None = None,
    ) -> LogContext:
        """This context with the given fields replaced; a new action starts a new tx hash."""
        return LogContext(
            owner=self.owner if owner is None else owner,
            slot=self.slot if slot is None else slot,
            action=self.action if action is None else action,
            wallet=self.wallet if wallet is None else wallet,
            tx=self._tx if action is None else _TxBox(),
        )

    def values(self) -> tuple[str | None, str | None, str | None, str | None, str | None]:
        """The values of :data:`FIELDS`, in order. Never raises (a filter must not)."""
        key: str | None = None
        wallet = self.wallet
        owner = self.owner
        if owner is not None:
            try:
                data = owner.session
                key = None if data is None else to_hex(data.public_key)
                wallet = owner.wallet.address
            except Exception:  # an owner still being built: what we know so far
                pass
        return (
            key,
            self.slot,
            self.action,
            self.tx_hash,
            None if wallet is None else to_hex(wallet),
        )

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(FIELDS, self.values(), strict=True))
        return f"LogContext({shown})"


_current: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "chipi_session_log_context", default=None
)
_EMPTY = LogContext()


def current() -> LogContext | None:
    """The context of the running task, if any."""
    return _current.get()


class _Set:
    """Makes ``context`` current for a ``with`` block (a class: an action enters one, and a
    generator-based context manager costs several times more)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: LogContext) -> None:
        self._context = context
        self._token: contextvars.Token[LogContext | None] | None = None

    def __enter__(self) -> LogContext:
        self._token = _current.set(self._context)
        return self._context

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def bind(
    *,
    owner: SessionLike | None = None,
    slot: str | None = None,
    action: str | None = None,
    wallet: int | None = None,
) -> AbstractContextManager[LogContext]:
    """Add fields to the current context for the ``with`` block (and the tasks it spawns).

    Applications can use it too, e.g. ``with bind(slot=f"user-{uid}")`` around building a
    standalone ``ChipiSession`` names its records' slot.
    """
    ambient = _current.get() or _EMPTY
    return _Set(ambient.derive(owner=owner, slot=slot, action=action, wallet=wallet))


def session_context(owner: SessionLike) -> LogContext:
    """The base context of a new session: itself, and the slot of the context it is built in
    (a ``SessionHub`` builds its sessions inside its slot's context)."""
    ambient = _current.get()
    return LogContext(owner=owner, slot=None if ambient is None else ambient.slot)


def action(base: LogContext, name: str) -> AbstractContextManager[LogContext]:
    """Run an action of the session ``base`` belongs to under its own context."""
    return _Set(base.derive(action=name))


def adopt(base: LogContext, name: str) -> AbstractContextManager[LogContext]:
    """Background work of a session: keep the context it was spawned in if that is already
    this session's (an execute's confirmation keeps ``execute`` and its tx hash), else run
    it as action ``name`` of the session (work a timer or the shared poller started)."""
    ambient = _current.get()
    if ambient is not None and ambient.owner is base.owner and ambient.action is not None:
        return _Set(ambient)
    return _Set(base.derive(action=name))


def note_tx_hash(tx_hash: str) -> None:
    """The current action's write returned ``tx_hash``: its later records carry it."""
    context = _current.get()
    if context is not None and context._tx is not None:
        context._tx.value = tx_hash


class ContextFilter(logging.Filter):
    """Stamps :data:`FIELDS` on every record that passes through it; lets every record pass.

    Attached to each library logger by :func:`get_logger`; add it to your own handler to stamp
    other libraries' records (e.g. httpx's) made inside a session's action too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        values = (None,) * len(FIELDS) if context is None else context.values()
        attrs = record.__dict__
        for name, value in zip(FIELDS, values, strict=True):
            if name not in attrs:  # the caller's extra wins
                attrs[name] = value
        return True


_FILTER = ContextFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the context filter attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ContextFilter) for f in logger.filters):
        logger.addFilter(_FILTER)
    return logger
