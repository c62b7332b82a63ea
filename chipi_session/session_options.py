"""The constructor parameters ``ChipiSession`` and ``SessionHub.open`` share, declared once.

``ChipiSession(wallet=..., encrypt_key=..., ...)`` and ``await hub.open(wallet=...,
encrypt_key=..., ...)`` take the same per-session keywords. They are declared here, once:

* :class:`SessionOptions` — the validated values: one field per keyword, with its default and
  its documentation, and every check in one place (``__attrs_post_init__``). A refused value
  is ``INVALID_INPUT``; an unknown or missing keyword is a ``TypeError``, as for any call.
* :class:`SessionParams` — the same keywords as a ``TypedDict``, so that both public
  signatures are typed from this one list: ``ChipiSession.__init__(..., **options:
  Unpack[SessionParams])`` and ``SessionHub.open(*, key=None, **options:
  Unpack[SessionParams])`` (PEP 692). Type checkers and IDEs complete and check the keywords
  exactly as with an explicit signature; at run time the dict goes straight into
  ``SessionOptions``.

Why not two explicit signatures? They would repeat ten parameters, their types and their
defaults in ``engine.py`` and ``hub.py`` (and the checks, which drifted apart: the hub checked
four of them, the session all of them, twice for a hub session). The ``TypedDict`` only
repeats names and types next to the class it describes, and ``tests/test_session_options.py``
fails if the two ever differ.

:class:`SessionRuntime` holds what a session *runs on* — backend, clock, vault, bearer token
source, status interval, event buffer size — resolved and checked once: per standalone
``ChipiSession``, or once per ``SessionHub`` for every session it opens
(``ChipiSession.from_options``), so opening a session checks nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypedDict

import attrs

from . import validate
from .backends.base import ClockProvider
from .clock import Clock, SystemClock
from .felts import U32_MAX, U64_MAX
from .renewal import RenewalPolicy
from .types import SessionKeyData, WalletData

if TYPE_CHECKING:
    from .backends.base import SessionReader
    from .keys import KeySource
    from .vault import HighEntropyKey, Vault

__all__ = [
    "BearerTokenSource",
    "SessionCreatedCallback",
    "SessionOptions",
    "SessionParams",
    "SessionRuntime",
]

#: ``async () -> str | None``: the user's bearer token (a JWT) for backends that need one.
BearerTokenSource = Callable[[], Awaitable[str | None]]
#: Called with every new session key's public data (persist it: it holds the encrypted key).
SessionCreatedCallback = Callable[[SessionKeyData], Any]


@attrs.frozen(kw_only=True)
class SessionOptions:
    """One session's options, validated (``INVALID_INPUT`` on a bad value)."""

    wallet: WalletData
    """The Chipi wallet whose session key this is (only ``CHIPI`` wallets support sessions)."""

    encrypt_key: str | HighEntropyKey
    """The user's PIN or a ``HighEntropyKey``: decrypts the owner key for owner-signed writes
    and encrypts new session keys. Never shown in a repr, log or event."""

    stored_session: SessionKeyData | None = None
    """A session key saved earlier (``on_session_created``): restored and reconciled with the
    chain on start. Under a hub with a store, the store's record is used when this is None."""

    on_session_created: SessionCreatedCallback | None = None
    """Called with each new session key's public data (sync or async), so it can be saved."""

    default_duration_seconds: int = 21600
    """How long a new session key is valid when ``create_session`` is given no duration."""

    default_max_calls: int = 1000
    """The call budget ``register_session`` asks for when it is given none."""

    auto_check_status: bool = True
    """Poll the session's status every ``status_interval`` seconds (batched under a hub)."""

    renewal: RenewalPolicy | None = None
    """Renew the session key automatically before it runs out (under a hub: the hub's policy
    when None)."""

    key_source: KeySource | None = None
    """Where new session keys come from (default: the OS's secure random source)."""

    def __attrs_post_init__(self) -> None:
        validate.check_instance(self.wallet, "wallet", WalletData, "a WalletData")
        validate.check_encrypt_key(self.encrypt_key)
        if self.stored_session is not None:
            validate.check_instance(
                self.stored_session, "stored_session", SessionKeyData, "a SessionKeyData"
            )
        validate.check_optional_callable(self.on_session_created, "on_session_created")
        validate.check_int(
            self.default_duration_seconds, "default_duration_seconds", low=1, high=U64_MAX
        )
        validate.check_int(self.default_max_calls, "default_max_calls", low=0, high=U32_MAX)
        validate.check_instance(self.auto_check_status, "auto_check_status", bool, "a bool")
        if self.renewal is not None:
            validate.check_instance(self.renewal, "renewal", RenewalPolicy, "a RenewalPolicy")
            # a successor the defaults make due at once would renew in a loop
            self.renewal.check_successor(
                self.renewal.duration_seconds or self.default_duration_seconds,
                self.renewal.max_calls or self.default_max_calls,
            )
        validate.check_optional_callable(self.key_source, "key_source")

    def __repr__(self) -> str:  # encrypt_key is never shown
        return f"SessionOptions(wallet={self.wallet!r}, stored_session={self.stored_session!r})"


class _RequiredParams(TypedDict):
    # the two required keywords in a total base, not ``Required[...]``: with postponed
    # annotations Python 3.11 would not see ``Required`` (``__required_keys__`` stays right)
    wallet: WalletData
    encrypt_key: str | HighEntropyKey


class SessionParams(_RequiredParams, total=False):
    """The keywords of :class:`SessionOptions`, for typing ``**options`` (PEP 692).

    Documented field by field on :class:`SessionOptions`; ``wallet`` and ``encrypt_key`` are
    required, the rest have its defaults.
    """

    stored_session: SessionKeyData | None
    on_session_created: SessionCreatedCallback | None
    default_duration_seconds: int
    default_max_calls: int
    auto_check_status: bool
    renewal: RenewalPolicy | None
    key_source: KeySource | None


@attrs.frozen
class SessionRuntime:
    """What sessions run on, resolved and checked once (:meth:`resolve`)."""

    backend: SessionReader
    clock: Clock
    vault: Vault
    get_bearer_token: BearerTokenSource | None
    status_interval: float
    event_buffer_size: int

    @classmethod
    def resolve(
        cls,
        *,
        backend: SessionReader | None = None,
        clock: Clock | None = None,
        vault: Vault | None = None,
        get_bearer_token: BearerTokenSource | None = None,
        status_interval: float = 30.0,
        event_buffer_size: int = 256,
    ) -> SessionRuntime:
        """Check the arguments and fill in the defaults: ``LocalChain``'s default chain, the
        backend's clock if it has one (else the system clock), a default ``Vault``."""
        validate.check_shared_options(
            backend=backend,
            clock=clock,
            vault=vault,
            get_bearer_token=get_bearer_token,
            status_interval=status_interval,
            event_buffer_size=event_buffer_size,
        )
        if backend is None:
            from .localchain import default_chain

            backend = default_chain()
        if clock is None:
            found = backend.clock if isinstance(backend, ClockProvider) else None
            clock = found or SystemClock()
        if vault is None:
            from .vault import Vault

            vault = Vault()
        return cls(
            backend, clock, vault, get_bearer_token, float(status_interval), event_buffer_size
        )
