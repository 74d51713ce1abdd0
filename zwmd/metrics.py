"""Prometheus metrics of one zwmd daemon: what it runs, how its watches and stores fare.

Responsibility: own every metric zwmd exposes and give the rest of the daemon small,
intention-named methods to record facts (``metrics.transition("queued", "starting")``,
``metrics.kube_request("list", "jobs", 200, 0.012)``), so no other module touches
prometheus-client objects. ``exposition()`` renders the scrape body.

Design notes:

- One ``CollectorRegistry`` per ``Metrics`` instance, never the process-global registry:
  two daemons in one test process (or a daemon and localkube) must not share series,
  and a restarted daemon object starts from zero.
- Every label value is bounded. States, outcomes, failure reasons, watch kinds, event
  types, restart causes and build results come from fixed vocabularies below; a value
  outside its vocabulary is recorded as ``other`` rather than creating a new series. No
  label ever carries a workload id, a job name, a namespace or anything from a request
  body. Kubernetes resources and verbs are mapped to bounded names by
  ``zwmd.kube.instrumentation``; HTTP codes are three digits or ``error``.
- Known label combinations are created at start so their series exist at 0: a rate()
  over a counter that appears only at its first increment misses that increment.
- Units are in the names (``_seconds``, ``_bytes``); counters end in ``_total`` (added by
  prometheus-client). The age of the last watch event is computed at scrape time from a
  monotonic timestamp, so it keeps growing while a watch is silent.
- ``zwmd_workloads{state}`` counts the workloads the daemon currently tracks, computed
  at scrape time from the daemon's own records (:meth:`Metrics.count_workloads_with`):
  a count kept up to date by increments drifts (adopted, replaced, forgotten workloads),
  a count derived from the records cannot.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

import zwmd
from zwmd.states import Reason, State

__all__ = [
    "BUILD_RESULTS",
    "FAILURE_REASONS",
    "OTHER",
    "OUTCOMES",
    "STATES",
    "WATCH_EVENT_TYPES",
    "WATCH_KINDS",
    "WATCH_RESTART_CAUSES",
    "Metrics",
]

OTHER = "other"
NONE = "none"

STATES: tuple[str, ...] = tuple(state.value for state in State)
OUTCOMES: tuple[str, ...] = tuple(state.value for state in State if state.is_terminal)
#: the reasons a workload fails for (a cancelled one has its own state, not a reason)
FAILURE_REASONS: tuple[str, ...] = tuple(r.value for r in Reason if r is not Reason.CANCELLED)
BUILD_RESULTS: tuple[str, ...] = ("cache_hit", "built", "failed")
WATCH_KINDS: tuple[str, ...] = ("Job", "Pod")
# Watchers name what they watch by resource ("jobs"); the label carries the kind ("Job").
_KIND_ALIASES = {"jobs": "Job", "job": "Job", "pods": "Pod", "pod": "Pod"}
WATCH_EVENT_TYPES: tuple[str, ...] = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
WATCH_RESTART_CAUSES: tuple[str, ...] = ("410", "timeout", "error")
LOG_STORE_OPERATIONS: tuple[str, ...] = ("append", "read", "follow", "checkpoint")

# Durations of whole phases: from sub-second (cache hits, fast starts) to hours (runs).
_PHASE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 43200)
# Kubernetes API calls: milliseconds to the apiserver's own 60 s request limit.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/+-]{1,63}$")


def _bounded(value: str | None, allowed: Iterable[str], *, empty: str = NONE) -> str:
    """``value`` when it is one of ``allowed``; ``empty`` for no value; else ``other``."""
    if value is None or value == "":
        return empty
    return value if value in allowed else OTHER


def _kind(value: str) -> str:
    """``Job``/``Pod`` from a kind or a resource name (``jobs``); else ``other``."""
    return _bounded(_KIND_ALIASES.get(value, value), WATCH_KINDS)


def _name(value: str) -> str:
    """A name from a finite, code-defined set (store, hook, plugin): checked for shape only."""
    return value if _NAME_RE.match(value) else OTHER


def _code(code: int | str | None) -> str:
    if code is None:
        return "error"
    text = str(code)
    return text if len(text) == 3 and text.isdigit() else "error"


class Metrics:
    """Every metric of one daemon instance, in a registry of its own.

    :param version: the daemon's version for ``zwmd_build_info`` (default: the package's).
    :param clock: a monotonic clock in seconds (tests may pass a fake one).
    """

    def __init__(
        self,
        *,
        version: str = zwmd.__version__,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._last_event: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        # Workloads and the state machine.
        self._count_workloads: Callable[[], Iterable[str]] = tuple
        r.register(_WorkloadsByState(lambda: self._count_workloads()))
        self._transitions = Counter(
            "zwmd_workload_transitions",
            "State transitions of workloads; from is 'none' for a new workload.",
            ["from", "to"],
            registry=r,
        )
        self._finished = Counter(
            "zwmd_workloads_finished",
            "Workloads that reached a terminal state, by outcome and failure reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self._queue_wait = Histogram(
            "zwmd_workload_queue_wait_seconds",
            "Time a runner Job waited suspended for a concurrency slot.",
            registry=r,
            buckets=_PHASE_BUCKETS,
        )
        self._build_duration = Histogram(
            "zwmd_workload_build_duration_seconds",
            "Time from a build request to its image being available, by result.",
            ["result"],
            registry=r,
            buckets=_PHASE_BUCKETS,
        )
        self._start_duration = Histogram(
            "zwmd_workload_start_duration_seconds",
            "Time from un-suspending a runner Job to its container running.",
            registry=r,
            buckets=_PHASE_BUCKETS,
        )
        self._run_duration = Histogram(
            "zwmd_workload_run_duration_seconds",
            "Time from a runner container starting to the workload ending, by outcome.",
            ["outcome"],
            registry=r,
            buckets=_PHASE_BUCKETS,
        )
        self._builds = Counter(
            "zwmd_builds", "Runner image requests by result.", ["result"], registry=r
        )

        # Watches.
        self._watch_events = Counter(
            "zwmd_watch_events",
            "Watch events received, by object kind and event type.",
            ["kind", "type"],
            registry=r,
        )
        self._watch_restarts = Counter(
            "zwmd_watch_restarts",
            "Watch streams restarted, by kind and cause (410, timeout, error).",
            ["kind", "cause"],
            registry=r,
        )
        self._relists = Counter(
            "zwmd_watch_relists", "Full re-lists of a watched kind.", ["kind"], registry=r
        )
        self._last_event_age = Gauge(
            "zwmd_watch_last_event_age_seconds",
            "Seconds since the last watch event of a kind (since start if none yet).",
            ["kind"],
            registry=r,
        )

        # Kubernetes API.
        self._kube_requests = Counter(
            "zwmd_kube_requests",
            "Kubernetes API requests by verb, resource and HTTP status code.",
            ["verb", "resource", "code"],
            registry=r,
        )
        self._kube_latency = Histogram(
            "zwmd_kube_request_duration_seconds",
            "Kubernetes API request latency (to response headers for streams).",
            ["verb", "resource"],
            registry=r,
            buckets=_REQUEST_BUCKETS,
        )

        # Logs.
        self._log_bytes = Counter(
            "zwmd_log_stored_bytes", "Log bytes written to a log store.", ["store"], registry=r
        )
        self._log_lines = Counter(
            "zwmd_log_stored_lines", "Log lines written to a log store.", ["store"], registry=r
        )
        self._log_errors = Counter(
            "zwmd_log_store_errors",
            "Failed log store operations, by store and operation.",
            ["store", "operation"],
            registry=r,
        )
        self._spooled = Gauge(
            "zwmd_log_spooled_bytes",
            "Log bytes held on local disk waiting for a remote store.",
            ["store"],
            registry=r,
        )

        # Plugins, leadership, build.
        self._hook_errors = Counter(
            "zwmd_hook_errors", "Exceptions raised by plugin hooks, by hook.", ["hook"], registry=r
        )
        self._plugins = Info("zwmd_plugin", "Plugins loaded by this daemon.", ["name"], registry=r)
        self._leader = Gauge(
            "zwmd_leader", "1 while this daemon holds the leader lease, else 0.", registry=r
        )
        self._build_info = Info("zwmd_build", "zwmd version and Python version.", registry=r)
        self._build_info.info({"version": version, "python": platform.python_version()})

        self._preinitialise()

    def _preinitialise(self) -> None:
        for reason in FAILURE_REASONS:
            self._finished.labels(outcome="failed", reason=reason)
        for outcome in ("succeeded", "cancelled"):
            self._finished.labels(outcome=outcome, reason=NONE)
        for outcome in OUTCOMES:
            self._run_duration.labels(outcome=outcome)
        for result in BUILD_RESULTS:
            self._builds.labels(result=result)
            self._build_duration.labels(result=result)
        for kind in WATCH_KINDS:
            for event_type in WATCH_EVENT_TYPES:
                self._watch_events.labels(kind=kind, type=event_type)
            for cause in WATCH_RESTART_CAUSES:
                self._watch_restarts.labels(kind=kind, cause=cause)
            self._relists.labels(kind=kind)
            self._last_event_age.labels(kind=kind).set_function(self._age_function(kind))
        self._leader.set(0)

    def _age_function(self, kind: str) -> Callable[[], float]:
        def age() -> float:
            return max(0.0, self._clock() - self._last_event.get(kind, self._started))

        return age

    # -- workloads ---------------------------------------------------------------------

    def transition(self, old: str | None, new: str, *, reason: str | None = None) -> None:
        """A workload moved from ``old`` (None: it is new) to ``new``.

        Counts the transition; when ``new`` is terminal, also counts the workload as
        finished with ``reason`` (failures only).
        """
        new_state = _bounded(new, STATES)
        old_state = _bounded(old, STATES)
        self._transitions.labels(old_state, new_state).inc()
        if new_state in OUTCOMES:
            self.finished(new_state, reason)

    def finished(self, outcome: str, reason: str | None = None) -> None:
        """Count a finished workload (``transition`` calls this for terminal states)."""
        bounded_outcome = _bounded(outcome, OUTCOMES)
        bounded_reason = _bounded(reason, FAILURE_REASONS) if bounded_outcome == "failed" else NONE
        self._finished.labels(outcome=bounded_outcome, reason=bounded_reason).inc()

    def count_workloads_with(self, states: Callable[[], Iterable[str]]) -> None:
        """``zwmd_workloads{state}`` counts, at each scrape, the states ``states()`` yields."""
        self._count_workloads = states

    def queue_wait(self, seconds: float) -> None:
        """A runner Job left the queue after waiting ``seconds``."""
        self._queue_wait.observe(seconds)

    def start_duration(self, seconds: float) -> None:
        """A runner container started ``seconds`` after its Job was un-suspended."""
        self._start_duration.observe(seconds)

    def run_duration(self, outcome: str, seconds: float) -> None:
        """A runner container ran for ``seconds`` and ended with ``outcome``."""
        self._run_duration.labels(outcome=_bounded(outcome, OUTCOMES)).observe(seconds)

    def build(self, result: str, seconds: float | None = None) -> None:
        """An image request ended: ``cache_hit``, ``built`` or ``failed``, taking ``seconds``."""
        bounded = _bounded(result, BUILD_RESULTS)
        self._builds.labels(result=bounded).inc()
        if seconds is not None:
            self._build_duration.labels(result=bounded).observe(seconds)

    # -- watches -----------------------------------------------------------------------

    def watch_event(self, kind: str, event_type: str) -> None:
        """A watch event of ``kind`` (``Job``/``Pod``, or ``jobs``/``pods``) and ``event_type``."""
        bounded_kind = _kind(kind)
        self._watch_events.labels(
            kind=bounded_kind, type=_bounded(event_type, WATCH_EVENT_TYPES)
        ).inc()
        self._last_event[bounded_kind] = self._clock()

    def watch_restart(self, kind: str, cause: str | int) -> None:
        """A watch stream of ``kind`` restarted because of ``cause`` (410, timeout, error)."""
        self._watch_restarts.labels(
            kind=_kind(kind), cause=_bounded(str(cause), WATCH_RESTART_CAUSES)
        ).inc()

    def watch_relist(self, kind: str) -> None:
        """``kind`` was listed in full (at start or after a 410)."""
        bounded_kind = _kind(kind)
        self._relists.labels(kind=bounded_kind).inc()
        self._last_event[bounded_kind] = self._clock()

    def last_event_age(self, kind: str) -> float:
        """Seconds since the last event (or list) of ``kind``: what the gauge reports."""
        bounded_kind = _kind(kind)
        return max(0.0, self._clock() - self._last_event.get(bounded_kind, self._started))

    # -- Kubernetes API ----------------------------------------------------------------

    def kube_request(
        self, verb: str, resource: str, code: int | str | None, seconds: float
    ) -> None:
        """A Kubernetes API request ended: ``code`` is the HTTP status, None if none came.

        ``verb`` and ``resource`` must already be bounded (see zwmd.kube.instrumentation).
        """
        verb_label, resource_label = _name(verb), _name(resource)
        self._kube_requests.labels(verb=verb_label, resource=resource_label, code=_code(code)).inc()
        self._kube_latency.labels(verb=verb_label, resource=resource_label).observe(seconds)

    # -- logs --------------------------------------------------------------------------

    def log_stored(self, store: str, lines: int, nbytes: int) -> None:
        """``lines`` lines of ``nbytes`` bytes reached log store ``store``."""
        label = _name(store)
        self._log_lines.labels(store=label).inc(lines)
        self._log_bytes.labels(store=label).inc(nbytes)

    def log_store_error(self, store: str, operation: str) -> None:
        """An ``append``/``read``/``follow``/``checkpoint`` on ``store`` failed."""
        self._log_errors.labels(
            store=_name(store), operation=_bounded(operation, LOG_STORE_OPERATIONS)
        ).inc()

    def set_spooled_bytes(self, store: str, nbytes: int) -> None:
        """``nbytes`` bytes wait on local disk for ``store`` to accept them."""
        self._spooled.labels(store=_name(store)).set(nbytes)

    # -- plugins, leadership -----------------------------------------------------------

    def hook_error(self, hook: str) -> None:
        """A plugin's implementation of ``hook`` raised."""
        self._hook_errors.labels(hook=_name(hook)).inc()

    def plugin_loaded(self, name: str, version: str) -> None:
        """Plugin ``name`` (distribution ``version``) is registered."""
        self._plugins.labels(name=_name(name)).info({"version": _name(version)})

    def set_leader(self, leader: bool) -> None:
        """Whether this daemon holds the leader lease."""
        self._leader.set(1 if leader else 0)

    # -- exposition --------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type, in the format ``accept`` asks for.

        Without an ``Accept`` header, Prometheus' text format 0.0.4; OpenMetrics when the
        scraper asks for it.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _WorkloadsByState:
    """The ``zwmd_workloads{state}`` gauge, counted from the daemon's records at scrape time."""

    def __init__(self, states: Callable[[], Iterable[str]]) -> None:
        self._states = states

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("zwmd_workloads", _WORKLOADS_HELP, labels=["state"])

    def collect(self) -> Iterable[GaugeMetricFamily]:
        totals = dict.fromkeys(STATES, 0)
        for state in self._states():
            key = _bounded(state, STATES)
            totals[key] = totals.get(key, 0) + 1
        family = GaugeMetricFamily("zwmd_workloads", _WORKLOADS_HELP, labels=["state"])
        for state, count in totals.items():
            family.add_metric([state], count)
        yield family


_WORKLOADS_HELP = "Workloads tracked by this daemon, by state."
