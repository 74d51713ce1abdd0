"""The reconciler: one per-key work queue and one timer for every kind of workload.

Design notes (controller-runtime's controller: an informer feeding a work queue, pure
reconcile functions behind it; kopf's per-object processing):

- Work is keyed by ``(kind, key)``: a runner's key is its workload id, a build's is its
  builder Job's name. A kind (:class:`WorkloadKind`) says which keys a change of the
  informer's cache concerns and how to reconcile one key; the reconciler owns *when*.
- **One key, one worker, in order.** A kicked key gets a worker task that reconciles it
  until no kick arrived while it ran: the changes of one key are applied one at a time
  and in order, different keys never wait for each other, and the watch stream never
  waits for any of them.
- **One timer.** Time-based verdicts (an image pull's grace period, the unschedulable
  deadline, a Job that has no pod yet, a retry after an error) come from
  :meth:`Reconciler.recheck`: a heap of due times, popped by one ticker. Nothing scans
  every workload on a timer.
- A reconcile that fails is logged and retried (:meth:`Reconciler.retry_later`): an
  apiserver error (429, 5xx, a dropped connection) or a bug in one key never ends the
  daemon or the other keys. Each failing key backs off on its own
  (:class:`~zwmd.backoff.Backoff`: from :data:`RETRY_SECONDS`, doubling up to
  :data:`RETRY_MAX_SECONDS`, with jitter, never sooner than the apiserver's
  ``Retry-After``), and starts again from the shortest delay once it succeeds.
- After every worker, the kinds' ``after_work`` runs (admission: which queued runners
  start), under the same error handling.
- Background work that belongs to no key (log followers, a build's log notes) runs in
  the reconciler's task group through :meth:`Reconciler.spawn`.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from zwmd.backoff import Backoff
from zwmd.engine.workload import Transition, Workload
from zwmd.kube.client import KubeError
from zwmd.kube.informer import Change

log = logging.getLogger(__name__)

__all__ = [
    "RETRY_MAX_SECONDS",
    "RETRY_SECONDS",
    "EngineListener",
    "EngineTiming",
    "Reconciler",
    "WorkloadKind",
    "utcnow",
]

RETRY_SECONDS = 2.0  # the first retry of a failed key, about (jittered)
RETRY_MAX_SECONDS = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class EngineTiming:
    """The engine's grace periods and deadlines (from ``ZWMD_*`` settings)."""

    image_pull_grace: timedelta = timedelta(minutes=5)
    unschedulable_deadline: timedelta = timedelta(minutes=10)
    events_poll_after: float = 2.0  # seconds a started Job may have no pod before Events are read
    #: seconds a queued Job may wait for its environment Secret (a submission cut short)
    environment_grace: float = 60.0
    tick: float = 1.0


class EngineListener(Protocol):
    """Told about what the engine does (metrics, hooks, the log pipeline)."""

    def transitioned(self, workload: Workload, transition: Transition) -> None: ...

    def submitted(self, workload: Workload, environment: Mapping[str, str]) -> None:
        """A run's Job exists; ``environment`` is its (secret) environment."""

    def redact(self, job_name: str, text: str) -> str:
        """``text`` with the secret values of the Job's run masked (a reason's message
        may quote the container's termination message)."""
        ...

    async def finished(self, workload: Workload) -> None:
        """Awaited once a workload is terminal, before its Job gets a TTL (log flush)."""


class WorkloadKind(Protocol):
    """What a kind of workload (runner, builder) tells the reconciler."""

    name: str

    def keys_listed(self, resource: str) -> Iterable[str]:
        """The keys to reconcile after a (re-)list of ``resource``."""

    def keys_changed(self, change: Change) -> Iterable[str]:
        """The keys a change of the informer's cache concerns."""

    async def reconcile(self, key: str) -> None:
        """Bring one key's workloads in line with what the informer holds."""

    async def after_work(self) -> None:
        """Runs after every worker (admission)."""


class Reconciler:
    """Per-key workers and one timer, fed by the informer."""

    def __init__(self, *, clock: Callable[[], datetime] = utcnow, tick: float = 1.0) -> None:
        self.clock = clock
        self.tick = tick
        self.kinds: dict[str, WorkloadKind] = {}
        self._kicked: dict[tuple[str, str], bool] = {}  # key -> kicked again while working
        self._due: list[tuple[datetime, int, tuple[str, str]]] = []
        self._wanted: dict[tuple[str, str], datetime] = {}  # key -> when it asked to be looked at
        self._failing: dict[tuple[str, str], Backoff] = {}  # keys whose last try failed
        self._timers = 0
        self._tg: TaskGroup | None = None

    def add(self, kind: WorkloadKind) -> None:
        self.kinds[kind.name] = kind

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the workers and the timer until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._timer)
            task_status.started()
            await anyio.sleep_forever()

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` in the reconciler's task group (dropped before it runs)."""
        if self._tg is not None:
            self._tg.start_soon(fn)

    # -- the informer's subscriber -------------------------------------------------------

    async def on_listed(self, resource: str) -> None:
        for kind in list(self.kinds.values()):
            for key in kind.keys_listed(resource):
                self.kick(kind.name, key)

    async def on_changed(self, change: Change) -> None:
        for kind in self.kinds.values():
            for key in kind.keys_changed(change):
                self.kick(kind.name, key)

    # -- work ----------------------------------------------------------------------------

    def kick(self, kind: str, key: str) -> None:
        """Reconcile ``key`` soon (again, if it is being reconciled now)."""
        item = (kind, key)
        if item in self._kicked:
            self._kicked[item] = True
            return
        if self._tg is None:  # not running yet: the first list kicks everything again
            return
        self._kicked[item] = False
        self._tg.start_soon(self._work, item)

    def recheck(self, kind: str, key: str, at: datetime | None) -> None:
        """Reconcile ``key`` again at ``at`` even if nothing changes (None: no need).

        The latest call for a key wins: an earlier time it asked for no longer counts.
        """
        item = (kind, key)
        if at is None:
            self._wanted.pop(item, None)
            return
        self._wanted[item] = at
        self._timers += 1
        heapq.heappush(self._due, (at, self._timers, item))

    async def _work(self, item: tuple[str, str]) -> None:
        kind = self.kinds[item[0]]
        try:
            while True:
                if await self._guarded(kind, item, lambda: kind.reconcile(item[1])):
                    self._failing.pop(item, None)
                if not self._kicked.get(item):
                    break
                self._kicked[item] = False
        finally:
            self._kicked.pop(item, None)
        await self._guarded(kind, item, kind.after_work)

    async def _guarded(
        self,
        kind: WorkloadKind,
        item: tuple[str, str],
        step: Callable[[], Coroutine[Any, Any, None]],
    ) -> bool:
        """Run one step of ``item``'s work; whether it succeeded (if not, it is retried)."""
        try:
            await step()
        except Exception as exc:
            self.retry_later(item[0], item[1], exc)
            return False
        return True

    def retry_later(self, kind: str, key: str, exc: Exception) -> None:
        """``key``'s work failed with ``exc``: log it, and reconcile the key again after
        its backoff (the next failure waits longer, a success starts again)."""
        item = (kind, key)
        backoff = self._failing.get(item)
        if backoff is None:
            backoff = self._failing[item] = Backoff(RETRY_SECONDS / 2, RETRY_MAX_SECONDS)
        retry_after = exc.retry_after if isinstance(exc, KubeError) else None
        delay = backoff.next(retry_after)
        log.warning(
            "%s %s: %s (retrying in %.1fs)",
            kind,
            key,
            exc,
            delay,
            exc_info=not isinstance(exc, KubeError),
        )
        self.recheck(kind, key, self.clock() + timedelta(seconds=delay))

    async def _timer(self) -> None:
        while True:
            await anyio.sleep(self.tick)
            now = self.clock()
            while self._due and self._due[0][0] <= now:
                at, _, item = heapq.heappop(self._due)
                if self._wanted.get(item) == at:  # else superseded by a later recheck
                    del self._wanted[item]
                    self.kick(*item)
