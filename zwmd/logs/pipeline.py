"""The log pipeline: which containers to follow, and when a workload's logs are complete.

Design notes:

- The pipeline is a subscriber of the reactor's two watches: it sees every Job (to learn
  which workload and attempt a pod belongs to) and every Pod. It starts one
  :class:`~zwmd.logs.following.ContainerLogFollower` per pod whose container has started
  (running or already terminated), whether the daemon saw it start or found it after a
  restart; the follower resumes from the store's checkpoint.
- Followers of one workload attempt and source take turns (a fair lock, in the order
  the pods were seen): the pods of a Job's retries run one after another anyway, and
  one writer per source keeps the store's resume mark exact.
- :meth:`LogPipeline.finish` is what the reactor awaits before it gives a finished Job a
  TTL: it waits until the pods were listed, lists the Job's pods itself (the pod watch
  may lag behind the Job watch) and waits until every follower of the Job has done its
  final fetch, appends the failure summary (reason, message and the last lines of the
  container) when the workload failed, and closes the attempt in the store, which ends
  every ``follow`` reader. Only then may Kubernetes' garbage collector take the pods.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.logs.following import ContainerLogFollower
from zwmd.logs.merging import message_records
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey, LogStore

log = logging.getLogger(__name__)

SUMMARY_TAIL_LINES = 20
_SOURCES = {naming.KIND_RUNNER: "runner", naming.KIND_BUILDER: "builder"}
_JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclass
class _JobInfo:
    key: LogKey
    source: str
    flushed: bool
    ended_pods: int = 0  # pods the Job counts as succeeded or failed


@dataclass
class _Follow:
    follower: ContainerLogFollower
    job: str
    done: anyio.Event = field(default_factory=anyio.Event)


class LogPipeline:
    """Follows the containers of zwmd's pods into the log store."""

    def __init__(
        self,
        kube: KubeClient,
        store: LogStore,
        *,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
        on_stored: Callable[[int, int], None] = lambda lines, nbytes: None,
        finish_timeout: float = 120.0,
    ):
        self.kube = kube
        self.store = store
        self.spawn = spawn
        self.on_stored = on_stored
        self.finish_timeout = finish_timeout
        self.jobs: dict[str, _JobInfo] = {}  # Job name -> where its logs go
        self.pods: dict[str, Obj] = {}  # pod name -> latest pod
        self.follows: dict[str, _Follow] = {}  # pod name -> its follower
        self.pods_listed = anyio.Event()
        self._turns: dict[tuple[LogKey, str], anyio.Lock] = {}

    # -- watch subscriber ---------------------------------------------------------------

    async def on_listed(self, resource: str, items: list[Obj]) -> None:
        if resource == "jobs":
            self.jobs = {}
            for job in items:
                self._learn_job(job)
        elif resource == "pods":
            self.pods = {pod["metadata"]["name"]: pod for pod in items}
            for pod in items:
                self._consider(pod)
            self.pods_listed.set()

    async def on_event(self, resource: str, event_type: str, obj: Obj) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if resource == "jobs" and event_type != "DELETED":
            self._learn_job(obj)
        elif resource == "pods":
            if event_type == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
                self._consider(obj)

    def _learn_job(self, job: Obj) -> None:
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        notes = meta.get("annotations") or {}
        source = _SOURCES.get(labels.get(naming.LABEL_KIND, ""))
        workload_id = labels.get(naming.LABEL_WORKLOAD_ID)
        if source is None or not workload_id:
            return
        attempt = int(notes.get(naming.ANN_ATTEMPT) or 1)
        status = job.get("status") or {}
        self.jobs[meta["name"]] = _JobInfo(
            LogKey(workload_id, attempt),
            source,
            notes.get(naming.ANN_LOGS_FLUSHED) == "true",
            int(status.get("succeeded") or 0) + int(status.get("failed") or 0),
        )

    def _consider(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if name in self.follows:
            return
        info = self.jobs.get(_job_of(pod))
        container = _started_container(pod)
        if info is None or container is None or info.flushed:
            return
        follower = ContainerLogFollower(
            self.kube,
            self.store,
            info.key,
            name,
            container,
            info.source,
            ended=lambda: self._ended(name, container),
            on_stored=self.on_stored,
        )
        follow = _Follow(follower, _job_of(pod))
        self.follows[name] = follow
        turn = self._turns.setdefault((info.key, info.source), anyio.Lock())

        async def run() -> None:
            try:
                async with turn:
                    await follower.run()
            except Exception:
                log.exception("following the log of pod %s failed", name)
            finally:
                follow.done.set()

        self.spawn(run)

    def _ended(self, pod: str, container: str) -> bool:
        current = self.pods.get(pod)
        if current is None:
            return True
        for status in (current.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container:
                return "terminated" in (status.get("state") or {})
        return (current.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    # -- completion ---------------------------------------------------------------------

    async def finish(
        self, key: LogKey, job_name: str, *, failure: tuple[str, str] | None = None
    ) -> None:
        """Wait for the final lines of ``job_name``'s pods, add the failure summary, close."""
        await self.settle(job_name)
        if failure is not None:
            await self._summarize(key, *failure)
        await self.store.close(key)

    async def settle(self, job_name: str) -> None:
        """Return once every pod of ``job_name`` had its final fetch (or the time is up).

        After this, Kubernetes may delete the pods: their lines are in the store.
        """
        with anyio.move_on_after(self.finish_timeout) as scope:
            await self.pods_listed.wait()
            await self._catch_up(job_name)
            for follow in list(self.follows.values()):
                if follow.job == job_name:
                    await follow.done.wait()
        if scope.cancelled_caught:
            log.warning(
                "logs of %s: followers still running after %ss", job_name, self.finish_timeout
            )

    async def _catch_up(self, job_name: str) -> None:
        """Follow every pod the Job has had, even those the pod watch has not shown yet.

        The Job watch and the Pod watch are separate streams: a Job can be seen finished
        before its pod was seen running (the pod watch reconnecting, say). Asking
        Kubernetes for the Job's pods here means no pod's log is skipped for that; it is
        not asked when a follower exists for every pod the Job counts as ended.
        """
        info = self.jobs.get(job_name)
        followed = sum(1 for follow in self.follows.values() if follow.job == job_name)
        if info is not None and 0 < info.ended_pods <= followed:
            return
        try:
            pods, _ = await self.kube.list("pods", label_selector=f"{_JOB_NAME_LABEL}={job_name}")
        except KubeError as exc:
            log.warning("logs of %s: cannot list its pods (%s)", job_name, exc)
            return
        for pod in pods:
            name = pod["metadata"]["name"]
            if name not in self.follows:
                self.pods.setdefault(name, pod)
                self._consider(pod)

    async def _summarize(self, key: LogKey, reason: str, message: str) -> None:
        tail: deque[str] = deque(maxlen=SUMMARY_TAIL_LINES)
        async for record in self.store.read(key.workload_id, attempt=key.attempt):
            if record.source != "zwmd":
                tail.append(record.message)
        text = f"zwmd: the run failed ({reason}): {message}"
        if tail:
            text += "\nLast lines of the container log:\n" + "\n".join(tail)
        now = datetime.now(UTC)
        records: list[LogRecord] = message_records(
            text, level=logging.ERROR, ts_ns=int(now.timestamp() * 1e9), attempt=key.attempt
        )
        await self.store.append(key, records)


def _job_of(pod: Obj) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return str(labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or "")


def _started_container(pod: Obj) -> str | None:
    """The first container that runs or ran (its log exists), else None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return str(status.get("name"))
    return None
