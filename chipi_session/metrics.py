"""Prometheus metrics for sessions and hubs (the ``metrics`` extra: ``prometheus-client``).

Why Prometheus rather than OpenTelemetry: a bot is one long-lived process whose operators want
a ``/metrics`` page to scrape and alert on; ``prometheus-client`` is one small dependency with a
thread-safe registry and a built-in HTTP exporter, while OpenTelemetry needs an SDK, a reader
and an exporter configured before anything is recorded.

Nothing here touches the engine's internals: counters follow the events a session or hub
publishes (:meth:`ChipiMetrics.observe` adds a listener), gauges are read from the sessions'
public properties when the registry is scraped, and latencies are measured by a thin wrapper
around the backend (:meth:`ChipiMetrics.instrument`). Nothing imports this module unless you do,
so without the extra it costs nothing. Series (``chipi_session_`` prefix):

* ``sessions{state}`` (gauge): observed sessions by lifecycle state;
  ``sessions_renewing`` and ``in_doubt_writes`` (gauges): renewals in progress, writes whose
  outcome is still being resolved;
* ``transactions_submitted_total{action}``, ``executes_total`` (executes the backend accepted),
  ``action_failures_total{action,code}`` (every ``ActionFailed``, by ``ErrorCode``),
  ``transactions_failed_on_chain_total{code}``, ``renewals_total``,
  ``state_changes_total{to,reason}`` (counters);
* ``backend_request_seconds{method}`` (histogram): each backend call (``execute_with_session``
  is the execute latency, ``add_or_update_session_key`` the register latency), and
  ``backend_errors_total{method,code}``;
* ``subscriber_dropped_events{subscriber}`` (gauge): events a watched subscription lost;
* ``status_poll_batches_total`` and ``status_poll_reads_total`` (counters, observed hubs): the
  status poller's batched reads and the sessions they covered, read from its public counters.
  Every batch is followed by the rate limit's gap, so rate-limit waits equal batches; the time
  spent waiting is not measured.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .engine import ChipiSession
from .errors import ChipiSessionError
from .events import (
    ActionFailed,
    Event,
    SessionRenewed,
    StateChanged,
    TransactionFailed,
    TransactionSubmitted,
)
from .hub import SessionHub
from .pubsub import Subscription
from .types import SessionState

__all__ = ["ChipiMetrics", "BACKEND_METHODS"]

B = TypeVar("B")

#: Backend methods whose latency is measured.
BACKEND_METHODS = frozenset(
    {
        "add_or_update_session_key",
        "revoke_session_key",
        "execute_with_session",
        "set_spending_policy",
        "remove_spending_policy",
        "get_session_status",
        "get_session_statuses",
        "get_spending_policy",
        "outside_nonce_used",
        "chain_time",
    }
)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ChipiMetrics:
    """The metrics of the sessions and hubs you :meth:`observe`, in ``registry`` (default: a
    new :class:`CollectorRegistry`; pass ``prometheus_client.REGISTRY`` to use the global one).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "chipi_session"
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        ns = namespace
        reg = self.registry
        self.submitted = Counter(
            "transactions_submitted", "Transactions sent", ["action"], namespace=ns, registry=reg
        )
        self.executes = Counter(
            "executes", "Executes the backend accepted", namespace=ns, registry=reg
        )
        self.failures = Counter(
            "action_failures", "Failed actions by error code", ["action", "code"],
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.failed_on_chain = Counter(
            "transactions_failed_on_chain", "Executes that failed on chain", ["code"],
            namespace=ns, registry=reg,
        )  # fmt: skip
        self.renewals = Counter("renewals", "Sessions renewed", namespace=ns, registry=reg)
        self.state_changes = Counter(
            "state_changes", "Lifecycle transitions", ["to", "reason"], namespace=ns, registry=reg
        )
        self.latency = Histogram(
            "backend_request_seconds", "Backend call latency", ["method"],
            namespace=ns, registry=reg, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.backend_errors = Counter(
            "backend_errors", "Backend calls that raised", ["method", "code"],
            namespace=ns, registry=reg,
        )  # fmt: skip
        self._sources: list[SessionHub | ChipiSession] = []
        self._subscriptions: dict[str, Subscription[Any]] = {}
        reg.register(_Gauges(self, ns))

    # ------------------------------------------------------------------ sources
    def observe(self, source: SessionHub | ChipiSession) -> Callable[[], None]:
        """Count ``source``'s events and include its sessions in the gauges; returns a
        function that stops observing it."""
        remove_listener = source.add_listener(self.record)
        self._sources.append(source)

        def stop() -> None:
            remove_listener()
            if source in self._sources:
                self._sources.remove(source)

        return stop

    def watch_subscription(self, name: str, subscription: Subscription[Any]) -> None:
        """Export ``subscription.dropped`` as ``subscriber_dropped_events{subscriber=name}``."""
        self._subscriptions[name] = subscription

    def instrument(self, backend: B) -> B:
        """``backend`` with each call's latency (and failures) recorded; use it in its place."""
        return cast(B, _TimedBackend(backend, self))

    # ------------------------------------------------------------------ events
    def record(self, event: Event) -> None:
        """Count one event (the listener :meth:`observe` installs)."""
        if isinstance(event, TransactionSubmitted):
            self.submitted.labels(event.action).inc()
            if event.action == "execute":
                self.executes.inc()
        elif isinstance(event, ActionFailed):
            self.failures.labels(event.action, event.error.code.value).inc()
        elif isinstance(event, TransactionFailed):
            self.failed_on_chain.labels(event.error.code.value).inc()
        elif isinstance(event, SessionRenewed):
            self.renewals.inc()
        elif isinstance(event, StateChanged):
            self.state_changes.labels(event.current.value, event.reason).inc()

    def sessions(self) -> Iterator[ChipiSession]:
        for source in tuple(self._sources):
            if isinstance(source, SessionHub):
                yield from tuple(source)  # one C-level copy: safe from a scraping thread
            else:
                yield source

    def hubs(self) -> tuple[SessionHub, ...]:
        return tuple(s for s in tuple(self._sources) if isinstance(s, SessionHub))

    def subscriptions(self) -> Iterable[tuple[str, Subscription[Any]]]:
        return tuple(self._subscriptions.items())


class _Gauges(Collector):
    """Gauges computed at scrape time from the observed sessions' public properties."""

    def __init__(self, metrics: ChipiMetrics, namespace: str) -> None:
        self._metrics = metrics
        self._ns = namespace

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        ns = self._ns
        by_state = dict.fromkeys(SessionState, 0)
        renewing = in_doubt = 0
        for session in self._metrics.sessions():
            by_state[session.session_state] += 1
            renewing += session.is_renewing
            in_doubt += len(session.in_doubt)
        states = GaugeMetricFamily(f"{ns}_sessions", "Sessions by state", labels=["state"])
        for state, count in by_state.items():
            states.add_metric([state.value], count)
        yield states
        yield GaugeMetricFamily(f"{ns}_sessions_renewing", "Renewals in progress", value=renewing)
        yield GaugeMetricFamily(
            f"{ns}_in_doubt_writes", "Writes whose outcome is being resolved", value=in_doubt
        )
        dropped = GaugeMetricFamily(
            f"{ns}_subscriber_dropped_events", "Events a subscriber lost", labels=["subscriber"]
        )
        for name, subscription in self._metrics.subscriptions():
            dropped.add_metric([name], subscription.dropped)
        yield dropped
        batches = reads = 0
        for hub in self._metrics.hubs():
            batches += hub.scheduler.poller.batches
            reads += hub.scheduler.poller.reads
        yield CounterMetricFamily(
            f"{ns}_status_poll_batches", "Batched status reads of the hubs' pollers", value=batches
        )
        yield CounterMetricFamily(
            f"{ns}_status_poll_reads", "Session statuses the pollers read", value=reads
        )


class _TimedBackend:
    """Forwards everything to the inner backend; times the :data:`BACKEND_METHODS` calls."""

    def __init__(self, inner: Any, metrics: ChipiMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in BACKEND_METHODS or not inspect.iscoroutinefunction(attr):
            return attr
        metrics = self._metrics

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            except ChipiSessionError as exc:
                metrics.backend_errors.labels(name, exc.code.value).inc()
                raise
            finally:
                metrics.latency.labels(name).observe(time.perf_counter() - started)

        return timed

    def __repr__(self) -> str:
        return f"Instrumented({self._inner!r})"
