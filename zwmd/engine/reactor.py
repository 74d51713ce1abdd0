"""The reactor: watch events in, one state machine per workload, Kubernetes writes out.

Design notes (kopf's split: the watch loop lives in :mod:`zwmd.kube.watching`, the
processing here):

- The reactor is the :class:`~zwmd.kube.watching.WatchHandler` of both watches. An event
  only updates the cache (Jobs by name, pods by Job) and *kicks* the workload it belongs
  to; it never waits on Kubernetes. So one slow workload never delays the watch stream,
  and the stream never races a workload's processing.
- Each kicked workload gets a worker task that runs :meth:`Reactor._reconcile` until no
  kick arrived while it ran: events of one workload are applied in order, one at a
  time; different workloads never block each other.
- Reconciling a workload is: :func:`~zwmd.engine.reasons.observe` the cached Job, pods and
  (for Jobs that have no pod) Events, let :meth:`Workload.apply` decide whether the state
  moves, and record the new state in the Job's annotations. Kubernetes is the database.
- After every (re-)list of Jobs, every workload whose Job is not in the list and is not
  being created becomes ``failed``/``JobLost``: nothing waits forever on an object that
  is gone.
- Admission (the queue) runs after any change, under one lock: :func:`queueing.admit`
  says which suspended Jobs to un-suspend, in submission order.
- Time-based verdicts (image pull grace, unschedulable deadline) come from
  ``Observation.recheck_at``: a ticker kicks those workloads when their time comes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from zwmd.engine.queueing import admit
from zwmd.engine.reasons import observe
from zwmd.engine.workload import RecordError, Transition, Workload
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.watching import WatchHandler

log = logging.getLogger(__name__)


class ReactorListener(Protocol):
    """Told about what the reactor does (metrics, hooks, the log pipeline)."""

    def transitioned(self, workload: Workload, transition: Transition) -> None: ...

    async def finished(self, workload: Workload) -> None:
        """Awaited once a workload is terminal, before its Job gets a TTL (log flush)."""


class _QuietListener:
    def transitioned(self, workload: Workload, transition: Transition) -> None:
        pass

    async def finished(self, workload: Workload) -> None:
        pass


@dataclass
class ReactorTiming:
    image_pull_grace: timedelta = timedelta(minutes=5)
    unschedulable_deadline: timedelta = timedelta(minutes=10)
    events_poll_after: float = 2.0  # seconds a started Job may have no pod before Events are read
    tick: float = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Tracked:
    """What the reactor keeps beside a workload's record."""

    workload: Workload
    finished: anyio.Event = field(default_factory=anyio.Event)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    recheck_at: datetime | None = None
    events: list[Obj] = field(default_factory=list)
    creating: bool = False
    cancelling: bool = False
    finalized: bool = False


class Reactor:
    """Applies watch events to the workloads of one namespace, and acts on them."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        max_active: int,
        ttl_seconds_after_finished: int | None,
        timing: ReactorTiming | None = None,
        listener: ReactorListener | None = None,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.kube = kube
        self.max_active = max_active
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.timing = timing or ReactorTiming()
        self.listener: ReactorListener = listener or _QuietListener()
        self.clock = clock
        self.tracked: dict[str, _Tracked] = {}  # workload id -> its current attempt
        self.aliases: dict[str, str] = {}  # alias -> workload id
        self.jobs: dict[str, Obj] = {}  # Job name -> Job
        self.pods: dict[str, dict[str, Obj]] = {}  # Job name -> pod name -> pod
        self.listed: set[str] = set()
        self._kicked: dict[str, bool] = {}  # workload id -> kicked again while working
        self._admission = anyio.Lock()
        self._tg: TaskGroup | None = None
        #: also told every list and event, after the reactor's caches are updated
        #: (the build coordinator, the log pipeline); they must not block the stream.
        self.subscribers: list[WatchHandler] = []

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Host the workers and the ticker until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._tick)
            task_status.started()
            await anyio.sleep_forever()

    @property
    def ready(self) -> bool:
        return {"jobs", "pods"} <= self.listed

    # ------------------------------------------------------------------ lookups

    def resolve(self, id_or_alias: str) -> _Tracked | None:
        """The workload with this id or alias; a UUID may be spelled any way (ids and
        aliases are stored canonical: ``aliases_from_arguments``)."""
        with contextlib.suppress(ValueError):
            id_or_alias = str(uuid.UUID(id_or_alias))
        tracked = self.tracked.get(id_or_alias)
        if tracked is None and id_or_alias in self.aliases:
            tracked = self.tracked.get(self.aliases[id_or_alias])
        return tracked

    def track(self, workload: Workload, *, creating: bool = False) -> _Tracked:
        tracked = _Tracked(workload, creating=creating)
        if workload.state.is_terminal:
            tracked.finished.set()
        self.tracked[workload.id] = tracked
        for alias in workload.aliases:
            self.aliases[alias] = workload.id
        return tracked

    # ------------------------------------------------------------------ watch handler

    async def on_listed(self, resource: str, items: list[Obj]) -> None:
        if resource == "jobs":
            self.jobs = {job["metadata"]["name"]: job for job in items}
            for job in items:
                self._adopt(job)
            for tracked in list(self.tracked.values()):
                self._kick(tracked.workload.id)
        elif resource == "pods":
            self.pods = {}
            for pod in items:
                self._store_pod(pod)
            for wid in list(self.tracked):
                self._kick(wid)
        self.listed.add(resource)
        for subscriber in self.subscribers:
            await subscriber.on_listed(resource, items)

    async def on_event(self, resource: str, event_type: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if resource == "jobs":
            name = meta.get("name", "")
            if event_type == "DELETED":
                self.jobs.pop(name, None)
                self.pods.pop(name, None)
            else:
                self.jobs[name] = obj
                self._adopt(obj)
        elif resource == "pods":
            if event_type == "DELETED":
                job = _pod_job(obj)
                self.pods.get(job, {}).pop(meta.get("name", ""), None)
            else:
                self._store_pod(obj)
        wid = (meta.get("labels") or {}).get(naming.LABEL_WORKLOAD_ID)
        if wid:
            self._kick(wid)
        for subscriber in self.subscribers:
            await subscriber.on_event(resource, event_type, obj)

    def _store_pod(self, pod: Obj) -> None:
        job = _pod_job(pod)
        if job:
            self.pods.setdefault(job, {})[pod["metadata"]["name"]] = pod

    def _adopt(self, job: Obj) -> None:
        """Track a Job's workload when this daemon does not know it yet (restart)."""
        labels = job["metadata"].get("labels") or {}
        if labels.get(naming.LABEL_KIND) != naming.KIND_RUNNER:
            return
        known = self.resolve(str(labels.get(naming.LABEL_WORKLOAD_ID, "")))
        if known is not None and known.workload.job_name == job["metadata"].get("name"):
            return  # the usual case on the watch path: nothing to parse
        try:
            workload = Workload.from_job(job)
        except RecordError as exc:
            log.warning("ignoring Job %s: %s", job["metadata"].get("name"), exc)
            return
        current = self.tracked.get(workload.id)
        if current is None or workload.attempt > current.workload.attempt:
            self.track(workload)

    # ------------------------------------------------------------------ workers

    def _kick(self, wid: str) -> None:
        if wid not in self.tracked:
            return
        if wid in self._kicked:
            self._kicked[wid] = True
            return
        self._kicked[wid] = False
        if self._tg is None:  # not running yet: the first list kicks everything again
            del self._kicked[wid]
            return
        self._tg.start_soon(self._work, wid)

    async def _work(self, wid: str) -> None:
        try:
            while True:
                try:
                    await self._reconcile(wid)
                except KubeError as exc:
                    log.warning("workload %s: %s (retrying on the next event or tick)", wid, exc)
                    self.tracked[wid].recheck_at = self.clock() + timedelta(seconds=2)
                if not self._kicked.get(wid):
                    break
                self._kicked[wid] = False
        finally:
            self._kicked.pop(wid, None)
        await self._admit()

    async def _tick(self) -> None:
        while True:
            await anyio.sleep(self.timing.tick)
            now = self.clock()
            for wid, tracked in list(self.tracked.items()):
                if tracked.recheck_at is not None and tracked.recheck_at <= now:
                    tracked.recheck_at = None
                    self._kick(wid)

    # ------------------------------------------------------------------ reconciling

    async def _reconcile(self, wid: str) -> None:
        tracked = self.tracked[wid]
        workload = tracked.workload
        if workload.state.is_terminal:
            await self._finalize(tracked)
            return
        job = self.jobs.get(workload.job_name)
        if job is None:
            if tracked.creating or not self.listed >= {"jobs"}:
                return
            if tracked.cancelling:
                return
            await self._after(tracked, workload.lost(self.clock()), record=False)
            return
        pods = list(self.pods.get(workload.job_name, {}).values())
        if _failed_pods_unseen(job, pods):
            # The Job's verdict can come before the pod that explains it (two watches,
            # or one resumed later): read this Job's pods now rather than record a vaguer
            # reason for ever (BackoffLimitExceeded instead of OOMKilled or the exit code).
            pods, _ = await self.kube.list(
                "pods", label_selector=f"{_JOB_NAME_LABEL}={workload.job_name}"
            )
        now = self.clock()
        events_again = None
        if not pods and not _suspended(job):
            events_again = await self._read_events(tracked, job, now)
        obs = observe(
            job,
            pods,
            tracked.events,
            now,
            image_pull_grace=self.timing.image_pull_grace,
            unschedulable_deadline=self.timing.unschedulable_deadline,
            first_seen=tracked.first_seen,
        )
        tracked.first_seen = dict(obs.first_seen)
        tracked.recheck_at = min(
            (t for t in (obs.recheck_at, events_again) if t is not None), default=None
        )
        await self._after(tracked, workload.apply(obs, now))

    async def _read_events(self, tracked: _Tracked, job: Obj, now: datetime) -> datetime | None:
        """Read Events of a started Job that has no pod yet (e.g. FailedCreate).

        Returns when to look again: Events are not watched, so nothing else would tell
        the workload that one has appeared.
        """
        again = now + timedelta(seconds=self.timing.events_poll_after)
        started = _job_start(job)
        if started is None or (now - started).total_seconds() < self.timing.events_poll_after:
            return again
        uid = job["metadata"].get("uid")
        items, _ = await self.kube.list("events")
        tracked.events = [e for e in items if (e.get("involvedObject") or {}).get("uid") == uid]
        return None if tracked.events else again

    async def _after(
        self, tracked: _Tracked, transition: Transition | None, *, record: bool = True
    ) -> None:
        """Record a transition that happened (if any) and tell the listener."""
        workload = tracked.workload
        if transition is None:
            return
        if record and transition.state_changed:  # a new message alone stays in memory
            patch: Obj = {"metadata": {"annotations": workload.annotations()}}
            job = self.jobs.get(workload.job_name)
            if workload.state.is_terminal and job is not None and not _job_finished(job):
                # The verdict is zwmd's own (ImagePullError, CrashLoopBackOff,
                # Unschedulable, CreateFailed): end the Job too, or its pod would go on
                # pulling, crashing or waiting for a node (and might still run the
                # pipeline), and the TTL never applies to a Job that never finishes.
                patch["spec"] = {"activeDeadlineSeconds": 1}
            await self.kube.patch("jobs", workload.job_name, patch)
        self.listener.transitioned(workload, transition)
        if workload.state.is_terminal:
            try:
                await self._finalize(tracked)  # waiters see the end once the logs are complete
            finally:
                tracked.finished.set()

    async def _finalize(self, tracked: _Tracked) -> None:
        """Once terminal: let the logs flush, then hand the Job to Kubernetes' TTL."""
        if tracked.finalized:
            return
        tracked.finalized = True
        workload = tracked.workload
        await self.listener.finished(workload)
        job = self.jobs.get(workload.job_name)
        if job is None or self.ttl_seconds_after_finished is None or tracked.cancelling:
            return
        if job.get("spec", {}).get("ttlSecondsAfterFinished") is not None:
            return
        try:
            await self.kube.patch(
                "jobs",
                workload.job_name,
                {
                    "metadata": {"annotations": {naming.ANN_LOGS_FLUSHED: "true"}},
                    "spec": {"ttlSecondsAfterFinished": self.ttl_seconds_after_finished},
                },
            )
        except KubeError as exc:
            if exc.code != 404:
                tracked.finalized = False
                raise

    # ------------------------------------------------------------------ admission

    async def _admit(self) -> None:
        async with self._admission:
            runners = [t.workload for t in self.tracked.values() if not t.cancelling]
            for wid in admit(runners, self.max_active):
                tracked = self.tracked[wid]
                if tracked.creating or tracked.workload.job_name not in self.jobs:
                    continue
                transition = tracked.workload.admit(self.clock())
                if transition is None:
                    continue
                await self.kube.patch(
                    "jobs",
                    tracked.workload.job_name,
                    {
                        "metadata": {"annotations": tracked.workload.annotations()},
                        "spec": {"suspend": False},
                    },
                )
                self.listener.transitioned(tracked.workload, transition)

    async def kick_admission(self) -> None:
        await self._admit()

    # ------------------------------------------------------------------ commands

    async def cancel(self, tracked: _Tracked) -> None:
        workload = tracked.workload
        if workload.state.is_terminal:
            return
        tracked.cancelling = True
        transition = workload.cancel(self.clock())
        await self.kube.delete("jobs", workload.job_name, propagation="Background")
        if transition is not None:
            self.listener.transitioned(workload, transition)
        await self._admit()
        try:
            await self._finalize(tracked)
        finally:
            tracked.finished.set()

    async def wait(self, tracked: _Tracked, timeout: float) -> Workload:
        with anyio.move_on_after(timeout if math.isfinite(timeout) else None):
            await tracked.finished.wait()
        return tracked.workload

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._tg is not None:
            self._tg.start_soon(fn)


_JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _job_finished(job: Obj) -> bool:
    return any(
        condition.get("type") in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
        and condition.get("status") == "True"
        for condition in (job.get("status") or {}).get("conditions") or ()
    )


def _failed_pods_unseen(job: Obj, pods: list[Obj]) -> bool:
    """Whether the Job has failed and counts more failed pods than the cache holds."""
    status = job.get("status") or {}
    verdicts = {
        condition.get("type")
        for condition in status.get("conditions") or ()
        if condition.get("status") == "True"
    }
    if not verdicts & {"Failed", "FailureTarget"}:
        return False
    seen = sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Failed")
    return seen < int(status.get("failed") or 0)


def _pod_job(pod: Obj) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return str(labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or "")


def _suspended(job: Obj) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def _job_start(job: Obj) -> datetime | None:
    value = (job.get("status") or {}).get("startTime")
    if not value:
        return None
    return datetime.fromisoformat(value)
