"""The informer: one list+watch of Jobs and one of Pods, one cache of both, one index.

Design notes (client-go's shared informer, kopf's watch loop / processing split):

- The informer owns the two :class:`~zwmd.kube.watching.Watcher` loops (never more,
  however many workloads) and is their handler. Everything in zwmd that needs to know
  what a Job or a Pod looks like reads it here: the engine's reconcilers, the log
  pipeline, the image builds. Nobody else keeps a copy of the cluster.
- The cache holds *trimmed* objects: what zwmd reads of them, not the whole object.
  ``managedFields`` go from everything; a Job keeps its metadata, status and the few
  ``spec`` fields zwmd reads (not its pod template); a Pod keeps its metadata without
  annotations, its status, and of its spec only each container's name, image and
  resources. A finished Job costs a few hundred bytes, not kilobytes.
- **Which Job owns a pod** is answered here only (:func:`job_of`): the controller
  ``ownerReference`` (set by the Job controller on every version), else the
  ``batch.kubernetes.io/job-name`` label (1.27+), else the legacy ``job-name`` label.
  ``pods_by_job`` is the index of that answer.
- Subscribers are told, in order and one call at a time, after the cache is updated:
  :meth:`InformerSubscriber.on_listed` after every (re-)list of a resource, and
  :meth:`InformerSubscriber.on_changed` for every change, with the owning Job's name
  for pods. A subscriber must not wait on Kubernetes there (it kicks work and returns):
  a subscriber that blocks stalls the watch, which the health probe then reports.
- Writes that zwmd makes are folded in with :meth:`Informer.remember` (a create's
  answer), so code that created a Job sees it before the watch delivers it; the watch's
  later version replaces it.
- :meth:`Informer.list_pods_of` reads a Job's pods from the apiserver when the pod watch
  may lag behind the Job watch. It selects by zwmd's own workload label (present on
  every version) and keeps the pods this Job owns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from zwmd.kube import naming
from zwmd.kube.client import KubeClient, Obj
from zwmd.kube.watching import Watcher, WatchObserver, WatchTiming

__all__ = ["Change", "Informer", "InformerSubscriber", "job_of", "trim"]

RESOURCES = ("jobs", "pods")

_JOB_SPEC_KEPT = (
    "suspend",
    "activeDeadlineSeconds",
    "backoffLimit",
    "ttlSecondsAfterFinished",
    "completions",
    "parallelism",
)
_CONTAINER_KEPT = ("name", "image", "resources")


@dataclass(frozen=True)
class Change:
    """One object that changed: its kind, name, owning Job, and latest (trimmed) body."""

    resource: str
    name: str
    job_name: str  # the Job itself for jobs; the owning Job for pods ("" when none)
    obj: Obj
    deleted: bool = False


class InformerSubscriber(Protocol):
    """Told what the informer saw, after its cache holds it."""

    async def on_listed(self, resource: str) -> None: ...

    async def on_changed(self, change: Change) -> None: ...


def job_of(pod: Obj) -> str:
    """The name of the Job that owns ``pod``, or ``""``."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or ():
        if owner.get("kind") == "Job" and owner.get("controller"):
            return str(owner.get("name") or "")
    labels = meta.get("labels") or {}
    return str(labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or "")


def trim(resource: str, obj: Obj) -> Obj:
    """What zwmd reads of a Job or Pod (see the module notes); a new dict."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    spec = obj.get("spec") or {}
    if resource == "jobs":
        kept_spec = {key: spec[key] for key in _JOB_SPEC_KEPT if key in spec}
    elif resource == "pods":
        meta.pop("annotations", None)
        kept_spec = {
            part: [{key: c[key] for key in _CONTAINER_KEPT if key in c} for c in spec[part]]
            for part in ("initContainers", "containers")
            if spec.get(part)
        }
    else:
        return obj
    trimmed: Obj = {"metadata": meta, "spec": kept_spec}
    if "status" in obj:
        trimmed["status"] = obj["status"]
    return trimmed


@dataclass
class Informer:
    """The one cache of zwmd's Jobs and Pods in one namespace, fed by two watches."""

    kube: KubeClient
    timing: WatchTiming = field(default_factory=WatchTiming)
    observer: WatchObserver | None = None
    label_selector: str = naming.SELECTOR

    jobs: dict[str, Obj] = field(default_factory=dict)  # Job name -> Job
    pods_by_job: dict[str, dict[str, Obj]] = field(default_factory=dict)  # Job -> pod name -> pod
    listed: set[str] = field(default_factory=set)
    subscribers: list[InformerSubscriber] = field(default_factory=list)
    _pod_owner: dict[str, str] = field(default_factory=dict)  # pod name -> Job name

    def __post_init__(self) -> None:
        extra: dict[str, Any] = {} if self.observer is None else {"observer": self.observer}
        self.watchers = tuple(
            Watcher(self.kube, resource, self.label_selector, self, self.timing, **extra)
            for resource in RESOURCES
        )

    # -- running -------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run both watches; signals ``task_status`` once each has listed."""
        async with anyio.create_task_group() as tg:
            for watcher in self.watchers:
                await tg.start(_run_watcher, watcher)
            task_status.started()

    @property
    def synced(self) -> bool:
        """Both resources have been listed at least once."""
        return set(RESOURCES) <= self.listed

    # -- reading -------------------------------------------------------------------------

    def job(self, name: str) -> Obj | None:
        return self.jobs.get(name)

    def pods_of(self, job_name: str) -> list[Obj]:
        return list(self.pods_by_job.get(job_name, {}).values())

    def pod(self, name: str) -> Obj | None:
        job = self._pod_owner.get(name)
        return None if job is None else self.pods_by_job.get(job, {}).get(name)

    def jobs_labelled(self, key: str, value: str) -> Iterator[Obj]:
        """The cached Jobs whose label ``key`` is ``value``."""
        for job in self.jobs.values():
            if ((job.get("metadata") or {}).get("labels") or {}).get(key) == value:
                yield job

    async def list_pods_of(self, job_name: str) -> list[Obj]:
        """The Job's pods as the apiserver has them now (folded into the cache too)."""
        job = self.jobs.get(job_name)
        workload = (
            ((job or {}).get("metadata") or {}).get("labels", {}).get(naming.LABEL_WORKLOAD_ID)
        )
        selector = f"{naming.LABEL_WORKLOAD_ID}={workload}" if workload else self.label_selector
        items, _ = await self.kube.list("pods", label_selector=selector)
        pods = [trim("pods", pod) for pod in items if job_of(pod) == job_name]
        for pod in pods:
            self._store_pod(pod, only_if_new=True)
        return pods

    def remember(self, resource: str, obj: Obj) -> None:
        """Fold in an object zwmd just wrote, unless the watch already delivered it."""
        if resource == "jobs":
            self.jobs.setdefault(obj["metadata"]["name"], trim("jobs", obj))

    # -- the watch handler ---------------------------------------------------------------

    async def on_listed(self, resource: str, items: list[Obj]) -> None:
        if resource == "jobs":
            self.jobs = {job["metadata"]["name"]: trim("jobs", job) for job in items}
        elif resource == "pods":
            self.pods_by_job = {}
            self._pod_owner = {}
            for pod in items:
                self._store_pod(trim("pods", pod))
        self.listed.add(resource)
        for subscriber in self.subscribers:
            await subscriber.on_listed(resource)

    async def on_event(self, resource: str, event_type: str, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        deleted = event_type == "DELETED"
        trimmed = trim(resource, obj)
        if resource == "jobs":
            job_name = name
            if deleted:
                self.jobs.pop(name, None)
            else:
                self.jobs[name] = trimmed
        elif resource == "pods":
            job_name = job_of(obj)
            if deleted:
                self._drop_pod(name)
            else:
                self._store_pod(trimmed)
        else:
            return
        change = Change(resource, name, job_name, trimmed, deleted)
        for subscriber in self.subscribers:
            await subscriber.on_changed(change)

    def _store_pod(self, pod: Obj, *, only_if_new: bool = False) -> None:
        name = pod["metadata"]["name"]
        job = job_of(pod)
        if not job:
            return
        pods = self.pods_by_job.setdefault(job, {})
        if only_if_new and name in pods:
            return
        pods[name] = pod
        self._pod_owner[name] = job

    def _drop_pod(self, name: str) -> None:
        job = self._pod_owner.pop(name, None)
        if job is None:
            return
        pods = self.pods_by_job.get(job, {})
        pods.pop(name, None)
        if not pods:
            self.pods_by_job.pop(job, None)


async def _run_watcher(
    watcher: Watcher, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    await watcher.run(task_status=task_status)
