"""``FaultInjectingBackend``: any ``SessionBackend`` with the failures a real network has.

Why: the engine's promises (no over-spent budget, nothing executed twice, typed errors, a local
state that converges to the chain's) only mean something if they survive the failures that
happen in production: a paymaster that is down, a request that timed out after it was sent, a
response lost on the way back, a backend that restarts. This wrapper produces those failures
deterministically (``random.Random(seed)``, draws made in call order) around any backend, so a
test can replay them exactly, or script them one by one with :meth:`fail_next`.

Fault kinds (see :data:`FAULT_KINDS`):

* ``error_before_send``: ``BACKEND_UNAVAILABLE`` (retryable); the inner backend is not called.
* ``timeout_after_send``: the inner write runs (``on_submit``, then it executes), then, after
  ``timeout_seconds`` of clock time, ``UNKNOWN_OUTCOME`` (not retryable) instead of the result.
* ``drop_response``: the same effect, immediately: the response was lost on the way back.
* ``lost_request``: ``on_submit`` is reported, then the request vanishes before it reaches the
  chain; after ``timeout_seconds``: ``UNKNOWN_OUTCOME``. Nothing was applied, and once chain
  time passes the SNIP-9 window it never will be: the "did not execute" resolution.
* ``restart``: the call fails before send and the backend stays down (``BACKEND_UNAVAILABLE``)
  for the next ``restart_down_calls`` calls of any method; then it is back with the chain state
  intact (nothing is rolled back).

Reads (``get_session_status``, ``get_spending_policy``, ``outside_nonce_used``) only fail before
send (``error_before_send``, ``restart``): a read has no effect to lose. Latency (event-loop
checkpoints and clock time) is added before each call so that concurrent actions interleave.

The wrapper has each optional capability exactly when the inner backend has it
(``FaultInjectingBackend(inner)`` returns a subclass with those methods): a
:class:`~chipi_session.backends.base.NonceReader` (nonce and chain-time reads go through the
fault plan, so the engine resolves unknown outcomes faults included), a
:class:`~chipi_session.backends.base.TransactionConfirmer` and an
:class:`~chipi_session.backends.base.ExecutionResultReader` (:data:`RESULT_METHODS`). The
confirmation reads pass straight through unless ``per_method`` or :meth:`fail_next` names them
(then they get that latency and before-send faults): wrapping a backend must not hide what it
can tell about an execute (docs/execution-results.md), and a seed's fault sequence over the
other methods stays what it was.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio

from ..clock import Clock
from ..errors import ChipiSessionError, ErrorCode
from ..keys import SecretKey
from ..types import Call, SessionStatus, SpendingPolicy, SubmitInfo, WalletData
from .base import (
    ClockProvider,
    NonceReader,
    OnSubmit,
    SessionBackend,
    notify_submit,
)
from .fault_plan import (
    AFTER_SEND,
    DOWN,
    FAULT_KINDS,
    NO_FAULTS,
    READ_METHODS,
    RESULT_METHODS,
    WRITE_METHODS,
    FaultKind,
    FaultRates,
    FaultSchedule,
    Plan,
)

__all__ = [
    "FaultKind",
    "FAULT_KINDS",
    "WRITE_METHODS",
    "READ_METHODS",
    "RESULT_METHODS",
    "FaultRates",
    "FaultInjectingBackend",
]

T = TypeVar("T")


class _RequestLost(Exception):
    """Raised from ``on_submit`` to abort the inner call after it reported its nonce."""


class FaultInjectingBackend:
    """A :class:`SessionBackend` wrapper that injects faults deterministically from ``seed``.

    ``rates`` apply to every method unless ``per_method`` names the method; both can be
    changed later through :attr:`rates` / :attr:`per_method`. ``clock`` (default: the inner
    backend's ``clock``) is what delays and timeouts wait on. Counters: :attr:`calls`,
    :attr:`injected` (by ``(method, kind)``; refusals while down count as kind ``"down"``) and
    :attr:`applied` (writes the inner backend completed, whether or not the caller heard) and
    :attr:`rejected` (the inner backend's own errors, by ``(method, code)``, heard or not).
    """

    requires_bearer_token: bool

    def __new__(cls, inner: SessionBackend, *args: Any, **kwargs: Any) -> FaultInjectingBackend:
        # Expose an optional method only if the inner backend has it: the engine decides by
        # isinstance (e.g. NonceReader) what it can do through this wrapper.
        if cls is FaultInjectingBackend:
            from .fault_variants import variant_for  # its classes subclass this one

            return object.__new__(variant_for(inner))
        return object.__new__(cls)

    def __init__(
        self,
        inner: SessionBackend,
        *,
        seed: int = 0,
        rates: FaultRates = NO_FAULTS,
        per_method: Mapping[str, FaultRates] | None = None,
        clock: Clock | None = None,
        restart_down_calls: int = 3,
        timeout_seconds: float = 0.0,
    ) -> None:
        if isinstance(restart_down_calls, bool) or not (
            isinstance(restart_down_calls, int) and restart_down_calls >= 0
        ):
            raise ValueError("restart_down_calls must be an int >= 0")
        if not isinstance(timeout_seconds, (int, float)) or timeout_seconds < 0:
            raise ValueError("timeout_seconds must be >= 0")
        self._inner = inner
        self.requires_bearer_token = bool(inner.requires_bearer_token)
        found = inner.clock if isinstance(inner, ClockProvider) else None
        self.clock: Clock | None = clock if clock is not None else found
        self.rates = rates
        self.per_method: dict[str, FaultRates] = {}
        for method, method_rates in (per_method or {}).items():
            self._check_method(method)
            self.per_method[method] = method_rates
        self.timeout_seconds = float(timeout_seconds)
        self._schedule = FaultSchedule(seed, restart_down_calls)
        self._waiting = 0
        #: the schedule's own counters (one object each, so they stay in step)
        self.calls: collections.Counter[str] = self._schedule.calls
        self.injected: collections.Counter[tuple[str, str]] = self._schedule.injected
        self.applied: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[tuple[str, str]] = collections.Counter()

    # ------------------------------------------------------------------ control
    @property
    def inner(self) -> SessionBackend:
        return self._inner

    @property
    def restart_down_calls(self) -> int:
        """Calls refused after a restart (injected or :meth:`restart` without a count)."""
        return self._schedule.restart_down_calls

    @restart_down_calls.setter
    def restart_down_calls(self, value: int) -> None:
        self._schedule.restart_down_calls = value

    @property
    def down_for(self) -> int:
        """Calls still to be refused by a restart in progress."""
        return self._schedule.down

    @property
    def waiting_on_clock(self) -> int:
        """Calls now sleeping on the clock (a test driving a ManualClock advances it then)."""
        return self._waiting

    def fail_next(self, method: str, kind: FaultKind, *, times: int = 1) -> None:
        """Script the next ``times`` calls of ``method`` to suffer ``kind`` (before any random
        fault; queued kinds run in order). Reads accept only before-send kinds."""
        self._check_method(method)
        if method == "outside_nonce_used" and not isinstance(self, NonceReader):
            raise ValueError("the inner backend has no outside_nonce_used")
        self._schedule.script(method, kind, times)

    def restart(self, down_for: int | None = None) -> None:
        """Take the backend down now: the next ``down_for`` calls (default
        ``restart_down_calls``) fail with ``BACKEND_UNAVAILABLE``."""
        self._schedule.restart(down_for)

    def clear(self) -> None:
        """Drop scripted faults and any downtime (the rates stay)."""
        self._schedule.clear()

    def pending(self, method: str | None = None) -> int:
        """Scripted faults not yet consumed (for ``method``, or for all)."""
        return self._schedule.pending(method)

    def count(self, kind: str | None = None, method: str | None = None) -> int:
        """How many faults were injected, optionally of one kind and/or on one method."""
        return self._schedule.count(kind, method)

    def _check_method(self, method: str) -> None:
        if method in RESULT_METHODS:
            if not callable(getattr(type(self), method, None)):
                raise ValueError(f"the inner backend has no {method}")
            return
        if method not in WRITE_METHODS and method not in READ_METHODS:
            raise ValueError(f"unknown backend method {method!r}")

    def __repr__(self) -> str:
        return (
            f"FaultInjectingBackend(inner={type(self._inner).__name__}, "
            f"injected={sum(self.injected.values())}, down_for={self.down_for})"
        )

    # ------------------------------------------------------------------ machinery
    def _plan(self, method: str) -> Plan:
        return self._schedule.plan(method, self.per_method.get(method, self.rates))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        clock = self.clock
        if clock is None:
            raise ChipiSessionError(
                ErrorCode.INVALID_INPUT, "FaultInjectingBackend needs a clock for delays"
            )
        self._waiting += 1
        try:
            await clock.sleep_until(clock.now() + seconds)
        finally:
            self._waiting -= 1

    async def _latency(self, plan: Plan) -> None:
        for _ in range(plan.checkpoints):
            await anyio.sleep(0)
        await self._sleep(plan.delay)

    @staticmethod
    def _unavailable(method: str, why: str) -> ChipiSessionError:
        return ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE, f"{method}: {why} (injected)", retryable=True
        )

    @staticmethod
    def _unknown(method: str, why: str) -> ChipiSessionError:
        return ChipiSessionError(
            ErrorCode.UNKNOWN_OUTCOME,
            f"{method}: {why}; the request may have executed (injected)",
            retryable=False,
        )

    async def _before_send(self, method: str, plan: Plan) -> None:
        await self._latency(plan)
        if plan.fault == DOWN:
            raise self._unavailable(method, "backend is restarting")
        if plan.fault == "restart":
            raise self._unavailable(method, "backend restarted")
        if plan.fault == "error_before_send":
            raise self._unavailable(method, "backend unavailable")

    async def _inner_call(self, method: str, call: Awaitable[T]) -> T:
        """Await the inner backend, counting what it refused."""
        try:
            return await call
        except ChipiSessionError as exc:
            self.rejected[(method, exc.code.value)] += 1
            raise

    async def _read(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        await self._before_send(method, self._plan(method))
        return await self._inner_call(method, call())

    async def _result_read(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        """A confirmation read: through the fault plan only when a test named ``method``
        (``per_method`` or :meth:`fail_next`), else straight to the inner backend."""
        if method in self.per_method or self._schedule.is_scripted(method):
            return await self._read(method, call)
        return await self._inner_call(method, call())

    async def _write(
        self,
        method: str,
        on_submit: OnSubmit | None,
        call: Callable[[OnSubmit | None], Awaitable[str]],
    ) -> str:
        plan = self._plan(method)
        await self._before_send(method, plan)
        if plan.fault in AFTER_SEND:
            try:
                await self._inner_call(method, call(on_submit))
                self.applied[method] += 1
            except ChipiSessionError:
                pass  # refused or not: the caller never hears which
            if plan.fault == "timeout_after_send":
                await self._sleep(self.timeout_seconds)
                raise self._unknown(method, "timed out after sending")
            raise self._unknown(method, "the response was lost")
        if plan.fault == "lost_request":
            reported: list[SubmitInfo] = []

            async def vanish(info: SubmitInfo) -> None:
                await notify_submit(on_submit, info)
                reported.append(info)
                raise _RequestLost

            try:
                await self._inner_call(method, call(vanish))
                self.applied[method] += 1  # the inner backend ignored on_submit: it was sent
            except _RequestLost:
                pass
            except ChipiSessionError:
                if not reported:
                    raise  # refused before anything was sent: an ordinary error
            await self._sleep(self.timeout_seconds)
            raise self._unknown(method, "timed out; the request was lost in transit")
        tx = await self._inner_call(method, call(on_submit))
        self.applied[method] += 1
        return tx

    # ------------------------------------------------------------------ SessionBackend
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
    ) -> str:
        return await self._write(
            "add_or_update_session_key",
            on_submit,
            lambda hook: self._inner.add_or_update_session_key(
                wallet,
                owner_key,
                session_public_key=session_public_key,
                valid_until=valid_until,
                max_calls=max_calls,
                allowed_entrypoints=allowed_entrypoints,
                bearer_token=bearer_token,
                on_submit=hook,
            ),
        )

    async def revoke_session_key(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        return await self._write(
            "revoke_session_key",
            on_submit,
            lambda hook: self._inner.revoke_session_key(
                wallet,
                owner_key,
                session_public_key=session_public_key,
                bearer_token=bearer_token,
                on_submit=hook,
            ),
        )

    async def execute_with_session(
        self,
        wallet: WalletData,
        session_key: SecretKey,
        *,
        valid_until: int,
        calls: Sequence[Call],
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        return await self._write(
            "execute_with_session",
            on_submit,
            lambda hook: self._inner.execute_with_session(
                wallet,
                session_key,
                valid_until=valid_until,
                calls=calls,
                bearer_token=bearer_token,
                on_submit=hook,
            ),
        )

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
    ) -> str:
        return await self._write(
            "set_spending_policy",
            on_submit,
            lambda hook: self._inner.set_spending_policy(
                wallet,
                owner_key,
                session_public_key=session_public_key,
                token=token,
                max_per_call=max_per_call,
                max_per_window=max_per_window,
                window_seconds=window_seconds,
                bearer_token=bearer_token,
                on_submit=hook,
            ),
        )

    async def remove_spending_policy(
        self,
        wallet: WalletData,
        owner_key: SecretKey,
        *,
        session_public_key: int,
        token: int,
        bearer_token: str | None = None,
        on_submit: OnSubmit | None = None,
    ) -> str:
        return await self._write(
            "remove_spending_policy",
            on_submit,
            lambda hook: self._inner.remove_spending_policy(
                wallet,
                owner_key,
                session_public_key=session_public_key,
                token=token,
                bearer_token=bearer_token,
                on_submit=hook,
            ),
        )

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus:
        return await self._read(
            "get_session_status",
            lambda: self._inner.get_session_status(wallet_address, session_public_key),
        )

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy:
        return await self._read(
            "get_spending_policy",
            lambda: self._inner.get_spending_policy(wallet_address, session_public_key, token),
        )
