"""Every interface a backend implements, in one place (docs/architecture.md, "Backends").

A backend is what the engine reads session state from and sends transactions through. What
*every* backend must do is :class:`SessionReader`; a backend that can also send is a
:class:`SessionWriter`, and :class:`SessionBackend` is both (``LocalChain``,
``ChipiApiBackend``). ``StarknetRpcBackend`` is only a reader: the engine refuses writes on it
with ``NOT_SUPPORTED`` (:func:`require_writer`) instead of the backend carrying methods that
only raise.

Everything else is an optional *capability*, a ``runtime_checkable`` protocol the engine tests
with ``isinstance`` (never ``getattr`` probing), so "what can this backend do" is answered by
its type:

* :class:`ClockProvider`: sessions share the backend's clock (else the system clock);
* :class:`ChainTimeReader`: a SNIP-9 window is closed by chain time (else the local clock);
* :class:`BatchStatusReader`: the hub's poller reads many statuses per request (else one read
  per session);
* :class:`NonceReader`: writes in doubt are resolved from the chain (else they stay in doubt,
  an execute counted against the budget);
* :class:`TransactionConfirmer`: ``active`` / ``revoked`` only once the chain accepted the
  write (else on send);
* :class:`ExecutionResultReader`: per-call outcomes of an execute (else ``UNKNOWN``, never
  success);
* :class:`FinalExecutionResults`: an execute's outcome is final once its send returned and is
  read without waiting (``LocalChain``): the engine confirms it in the execute itself instead
  of a background task.

Owner-signed actions (register, revoke, spending policies) receive the decrypted owner key and
session-signed executes receive the session key; the backend computes what must be signed (for
the Chipi API, the typed data the paymaster prepares) and signs with the key it is handed. Keys
are :class:`~chipi_session.keys.SecretKey` objects: a backend must not store them.

Every method raises :class:`~chipi_session.errors.ChipiSessionError`; ``BACKEND_UNAVAILABLE`` is
retryable, ``UNKNOWN_OUTCOME`` means a write may or may not have happened (read the chain).
Transaction hashes are ``0x`` hex strings. Write methods call ``on_submit`` (if given) with a
:class:`~chipi_session.types.SubmitInfo` after signing and right before sending.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from ..errors import ChipiSessionError, ErrorCode
from ..keys import SecretKey
from ..types import (
    Call,
    ExecutionResult,
    SessionStatus,
    SpendingPolicy,
    SubmitInfo,
    WalletData,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import Clock

__all__ = [
    "SessionReader",
    "SessionWriter",
    "SessionBackend",
    "ClockProvider",
    "ChainTimeReader",
    "BatchStatusReader",
    "NonceReader",
    "TransactionConfirmer",
    "ExecutionResultReader",
    "FinalExecutionResults",
    "OnSubmit",
    "notify_submit",
    "require_writer",
    "needs_bearer_token",
    "is_reader",
    "has_capability",
    "reads_final_results",
]


OnSubmit = Callable[[SubmitInfo], "Awaitable[None] | None"]


async def notify_submit(on_submit: OnSubmit | None, info: SubmitInfo) -> None:
    """Call a sync or async ``on_submit`` hook (backends call this right before sending)."""
    if on_submit is None:
        return
    result = on_submit(info)
    if inspect.isawaitable(result):
        await result


# -- what every backend does -------------------------------------------------------------------


@runtime_checkable
class SessionReader(Protocol):
    """Reads every backend answers: a session's on-chain status and its spending policies."""

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus: ...

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy: ...


@runtime_checkable
class SessionWriter(Protocol):
    """Writes: owner-signed session-key administration and session-signed executes."""

    #: True if writes need a bearer token (remote backends); LocalChain needs none.
    requires_bearer_token: bool

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
    ) -> str: ...

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str: ...

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str: ...

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
    ) -> str: ...

    async def remove_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str: ...


@runtime_checkable
class SessionBackend(SessionReader, SessionWriter, Protocol):
    """A backend that reads and writes: what a session needs for its whole lifecycle."""


#: ``isinstance`` answers, remembered: on Python 3.11 checking a runtime protocol costs
#: ~15-70 us (it walks every member), and the engine asks on every execute and every session
#: construction (a hub opens a session in ~12 us). A "yes" is remembered per class when the
#: class itself has every member (so every instance does); anything else per object.
_BY_CLASS: dict[tuple[type, type], bool] = {}
_BY_OBJECT: weakref.WeakKeyDictionary[object, dict[type, bool]] = weakref.WeakKeyDictionary()
_MEMBERS: dict[type, tuple[str, ...]] = {}


def _members(capability: type) -> tuple[str, ...]:
    names = _MEMBERS.get(capability)
    if names is None:
        found: set[str] = set()
        for base in capability.__mro__:
            if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
                continue
            found.update(n for n in vars(base) if not n.startswith("_"))
            found.update(getattr(base, "__annotations__", {}))
        names = _MEMBERS[capability] = tuple(sorted(found))
    return names


def _has(backend: object, capability: type) -> bool:
    cls = type(backend)
    if _BY_CLASS.get((cls, capability)):
        return True
    try:
        known = _BY_OBJECT.get(backend)
        if known is None:
            known = _BY_OBJECT.setdefault(backend, {})
    except TypeError:  # not weak-referenceable or not hashable
        known = {}
    found = known.get(capability)
    if found is None:
        found = known[capability] = isinstance(backend, capability)
        if found and all(hasattr(cls, name) for name in _members(capability)):
            _BY_CLASS[(cls, capability)] = True
    return found


def has_capability(backend: object, capability: type) -> bool:
    """``isinstance(backend, capability)`` for a ``runtime_checkable`` capability of this
    module, remembered (per class when the class has every member, else per object)."""
    return _has(backend, capability)


_FINAL_BY_CLASS: dict[type, bool] = {}


def _defined_by(cls: type, name: str) -> type | None:
    return next((k for k in cls.__mro__ if name in vars(k)), None)


def reads_final_results(backend: object) -> bool:
    """Whether the engine may confirm an execute through ``backend`` in the execute itself
    (:class:`FinalExecutionResults`): only when the class that defines its
    ``final_execution_result`` also defines its ``get_execution_result``, so a subclass
    or a wrapper that reads results its own way (a tracer, a fault injector, a proxy
    forwarding what it wraps) is always read through its ``get_execution_result``.
    Remembered per class."""
    cls = type(backend)
    found = _FINAL_BY_CLASS.get(cls)
    if found is None:
        owner = _defined_by(cls, "final_execution_result")
        found = owner is not None and owner is _defined_by(cls, "get_execution_result")
        _FINAL_BY_CLASS[cls] = found
    return found and _has(backend, FinalExecutionResults)


def is_reader(backend: object) -> bool:
    """``isinstance(backend, SessionReader)``, remembered per backend object."""
    return _has(backend, SessionReader)


def require_writer(backend: SessionReader, what: str) -> SessionWriter:
    """``backend`` as a writer, or ``NOT_SUPPORTED`` (not retryable) for a read-only one."""
    if _has(backend, SessionWriter):
        return cast(SessionWriter, backend)
    raise ChipiSessionError(
        ErrorCode.NOT_SUPPORTED,
        f"{type(backend).__name__} is read-only: it cannot {what} "
        "(use ChipiApiBackend, LocalChain or another SessionWriter)",
    )


def needs_bearer_token(backend: SessionReader) -> bool:
    """Whether writes through ``backend`` need a bearer token (a reader never sends any)."""
    return _has(backend, SessionWriter) and bool(cast(SessionWriter, backend).requires_bearer_token)


# -- optional capabilities -----------------------------------------------------------------------


@runtime_checkable
class ClockProvider(Protocol):
    """The backend's time source (``LocalChain``'s clock): sessions on it share it, so a
    ``ManualClock`` drives chain and engine alike. ``None`` means "use the system clock"."""

    @property
    def clock(self) -> Clock | None: ...


@runtime_checkable
class ChainTimeReader(Protocol):
    """The chain's current (block) time: a write's SNIP-9 window is closed only once the
    *chain* says so (a local clock running ahead must not decide it)."""

    async def chain_time(self) -> int: ...


@runtime_checkable
class BatchStatusReader(Protocol):
    """Many ``(wallet, session_public_key)`` statuses in few requests (the hub's poller).

    Per-target failures come back as errors in the list, in order; a failed request raises.
    """

    async def get_session_statuses(
        self, targets: Sequence[tuple[int, int]]
    ) -> list[SessionStatus | ChipiSessionError]: ...


@runtime_checkable
class NonceReader(Protocol):
    """Whether a SNIP-9 nonce was used on chain: the one exact answer to "did this write
    execute?" (docs/engine.md, "In-doubt writes")."""

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool: ...


@runtime_checkable
class TransactionConfirmer(Protocol):
    """Wait until a transaction is accepted on chain.

    The engine reports a registration ``active`` (and a revoke ``revoked``) only once the
    backend confirms it, so a status read racing the transaction cannot mislabel the session.
    Raises ``TRANSACTION_REJECTED`` if it reverted, ``UNKNOWN_OUTCOME`` if it cannot tell.
    """

    async def confirm_transaction(self, tx_hash: str) -> None: ...


@runtime_checkable
class ExecutionResultReader(Protocol):
    """What an executed transaction did, call by call.

    Waits, like ``confirm_transaction``, until the transaction is accepted, then reads its
    status and per-call outcomes (docs/execution-results.md). A reverted transaction is a
    ``REVERTED`` result, not an error; what the backend cannot tell is ``UNKNOWN`` (never
    success). Raises ``UNKNOWN_OUTCOME`` if the transaction is not settled in time.
    """

    async def get_execution_result(self, tx_hash: str) -> ExecutionResult: ...


@runtime_checkable
class FinalExecutionResults(Protocol):
    """An execute's outcome is final when its send returns, and known without waiting
    (``LocalChain``: the transaction is included, or not, by the send itself).

    ``final_execution_result`` returns what ``get_execution_result`` would, without awaiting
    anything, so the engine confirms the execute inside the execute (the same events, in the
    same order, as a background confirmation). Raises ``UNKNOWN_OUTCOME`` for a transaction
    it does not know. A backend whose results only settle later must not implement it.
    """

    def final_execution_result(self, tx_hash: str) -> ExecutionResult: ...
