"""The log pipeline: which containers to follow, and when a workload's logs are complete.

Design notes:

- The pipeline is a subscriber of the informer, and reads its cache: a pod's Job (which
  workload and attempt its lines belong to) and the pod itself. It keeps no copy of
  either. It starts one
  :class:`~zwmd.logs.following.ContainerLogFollower` per pod whose container has started
  (running or already terminated), whether the daemon saw it start or found it after a
  restart; the follower resumes from the store's checkpoint.
- Followers of one workload attempt and source take turns (a fair lock, in the order
  the pods were seen): the pods of a Job's retries run one after another anyway, and
  one writer per source keeps the store's resume mark exact.
- :meth:`LogPipeline.finish` is what the engine awaits before it gives a finished Job a
  TTL: it waits until the pods were listed, lists the Job's pods itself (the pod watch
  may lag behind the Job watch) and waits until every follower of the Job has done its
  final fetch, appends the failure summary (reason, message and the last lines of the
  container) when the workload failed, and closes the attempt in the store, which ends
  every ``follow`` reader. Only then may Kubernetes' garbage collector take the pods.
- The run's secret values are masked before its lines are stored
  (:mod:`zwmd.logs.masking`). The engine hands over the environment of a run it submits
  (:meth:`LogPipeline.remember_environment`); for a Job adopted after a restart the
  environment is only in its Secret (``<job>-env``), read once per Job before its first
  pod is followed. A Secret that is gone means nothing to mask (the pod cannot have
  started without it); one that cannot be read after a few tries is reported, and the
  log is followed unmasked rather than lost. The failure summary is masked too, and so
  is the reason's message the engine records (:meth:`LogPipeline.redact`): both may
  quote the container's termination message.
- What it keeps is bounded by active work: a follower is forgotten once its Job's log is
  complete, and the Jobs whose logs are complete are remembered (so that no late pod
  event starts a follower again) only until the Job is deleted.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.informer import Change, Informer, job_of
from zwmd.logs.following import ContainerLogFollower
from zwmd.logs.masking import Masker
from zwmd.logs.merging import note_records
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey, LogStore
from zwmd.settings.envvalues import DEFAULT_SECRET_NAME_PATTERN, compile_name_pattern

log = logging.getLogger(__name__)

SUMMARY_TAIL_LINES = 20
SECRET_READ_TRIES = 5
_SOURCES = {naming.KIND_RUNNER: "runner", naming.KIND_BUILDER: "builder"}


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


@dataclass
class LogTiming:
    """How long the pipeline waits for what (``ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS``)."""

    #: a follow silent this long is renewed from its mark (None: never)
    inactivity_timeout: float | None = 60.0
    #: how long a finished Job's logs may take to be complete before they are closed
    finish_timeout: float = 120.0


class LogPipeline:
    """Follows the containers of zwmd's pods into the log store."""

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        store: LogStore,
        *,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
        on_stored: Callable[[int, int], None] = lambda lines, nbytes: None,
        timing: LogTiming | None = None,
        secret_names: re.Pattern[str] | None = None,
        retry_delay: float = 1.0,
    ):
        self.kube = kube
        self.informer = informer
        self.store = store
        self.spawn = spawn
        self.on_stored = on_stored
        self.timing = timing or LogTiming()
        self.secret_names = secret_names or compile_name_pattern(DEFAULT_SECRET_NAME_PATTERN)
        self.retry_delay = retry_delay
        self.follows: dict[str, _Follow] = {}  # pod name -> its follower
        self.pods_listed = anyio.Event()
        self._turns: dict[tuple[LogKey, str], anyio.Lock] = {}
        self._complete: set[str] = set()  # Jobs whose logs are complete (until deleted)
        self._maskers: dict[str, Masker | None] = {}  # Job name -> its run's masker

    def remember_environment(self, job_name: str, environment: Mapping[str, str]) -> None:
        """The environment of a run just submitted: its secret values are masked."""
        self._maskers[job_name] = Masker.for_environment(environment, self.secret_names)

    def redact(self, job_name: str, text: str) -> str:
        """``text`` with the secret values of the Job's run masked, as far as known."""
        masker = self._maskers.get(job_name)
        return text if masker is None else masker(text)

    # -- the informer's subscriber ------------------------------------------------------

    async def on_listed(self, resource: str) -> None:
        if resource == "pods":
            for pods in list(self.informer.pods_by_job.values()):
                for pod in list(pods.values()):
                    self._consider(pod)
            self.pods_listed.set()
        elif resource == "jobs":
            self._complete &= set(self.informer.jobs)

    async def on_changed(self, change: Change) -> None:
        if change.resource == "pods" and not change.deleted:
            self._consider(change.obj)
        elif change.resource == "jobs":
            if change.deleted:
                self._complete.discard(change.name)
                self._maskers.pop(change.name, None)
            else:  # pods seen before their Job was
                for pod in self.informer.pods_of(change.name):
                    self._consider(pod)

    def _consider(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if name in self.follows:
            return
        job_name = job_of(pod)
        container = _started_container(pod)
        if container is None or job_name in self._complete:
            return
        info = _job_info(self.informer.job(job_name))
        if info is None or info.flushed:
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
            inactivity_timeout=self.timing.inactivity_timeout,
        )
        follow = _Follow(follower, job_name)
        self.follows[name] = follow
        turn = self._turns.setdefault((info.key, info.source), anyio.Lock())

        async def run() -> None:
            try:
                async with turn:
                    follower.masker = await self._masker(job_name, info.source)
                    await follower.run()
            except Exception:
                log.exception("following the log of pod %s failed", name)
            finally:
                follow.done.set()

        self.spawn(run)

    async def _masker(self, job_name: str, source: str) -> Masker | None:
        """The masker of a runner Job's environment: remembered, or read from its Secret."""
        if source != _SOURCES[naming.KIND_RUNNER]:
            return None
        if job_name in self._maskers:
            return self._maskers[job_name]
        secret_name = naming.secret_name(job_name)
        for tries in range(1, SECRET_READ_TRIES + 1):
            try:
                secret = await self.kube.get("secrets", secret_name)
            except KubeError as exc:
                if exc.code == 404:
                    environment: dict[str, str] = {}
                    break
                if tries == SECRET_READ_TRIES:
                    log.warning(
                        "logs of %s are stored unmasked: cannot read the Secret %s (%s)",
                        job_name,
                        secret_name,
                        exc,
                    )
                    return None
                await anyio.sleep(self.retry_delay)
            else:
                environment = _secret_environment(secret)
                break
        masker = Masker.for_environment(environment, self.secret_names)
        self._maskers[job_name] = masker
        return masker

    def _ended(self, pod: str, container: str) -> bool:
        current = self.informer.pod(pod)
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
        masker = self._maskers.get(job_name)  # kept until closed: a failure is retried
        if failure is not None:
            await self._summarize(key, *failure, masker=masker)
        await self.store.close(key)
        self._maskers.pop(job_name, None)  # the Job's lines are all stored
        for source in _SOURCES.values():  # the attempt is closed: nobody takes turns on it
            turn = self._turns.get((key, source))
            if turn is not None and not turn.locked() and not turn.statistics().tasks_waiting:
                del self._turns[(key, source)]

    async def settle(self, job_name: str) -> None:
        """Return once every pod of ``job_name`` had its final fetch (or the time is up).

        After this, Kubernetes may delete the pods: their lines are in the store.
        """
        with anyio.move_on_after(self.timing.finish_timeout) as scope:
            await self.pods_listed.wait()
            await self._catch_up(job_name)
            for follow in list(self.follows.values()):
                if follow.job == job_name:
                    await follow.done.wait()
        if scope.cancelled_caught:
            log.warning(
                "logs of %s: followers still running after %ss",
                job_name,
                self.timing.finish_timeout,
            )
        self._settled(job_name)

    def _settled(self, job_name: str) -> None:
        """The Job's pods had their final fetch: forget their followers, follow no more."""
        if job_name in self.informer.jobs:
            self._complete.add(job_name)
        for pod in [name for name, f in self.follows.items() if f.job == job_name]:
            if self.follows[pod].done.is_set():
                del self.follows[pod]

    async def _catch_up(self, job_name: str) -> None:
        """Follow every pod the Job has had, even those the pod watch has not shown yet.

        The Job watch and the Pod watch are separate streams: a Job can be seen finished
        before its pod was seen running (the pod watch reconnecting, say). Asking
        Kubernetes for the Job's pods here means no pod's log is skipped for that; it is
        not asked when a follower exists for every pod the Job counts as ended.
        """
        info = _job_info(self.informer.job(job_name))
        followed = sum(1 for follow in self.follows.values() if follow.job == job_name)
        if info is not None and 0 < info.ended_pods <= followed:
            return
        try:
            pods = await self.informer.list_pods_of(job_name)
        except KubeError as exc:
            log.warning("logs of %s: cannot list its pods (%s)", job_name, exc)
            return
        for pod in pods:
            if pod["metadata"]["name"] not in self.follows:
                self._consider(pod)

    async def _summarize(
        self, key: LogKey, reason: str, message: str, *, masker: Masker | None = None
    ) -> None:
        tail: deque[str] = deque(maxlen=SUMMARY_TAIL_LINES)
        lines = 0
        async for record in self.store.read(key.workload_id, attempt=key.attempt):
            if record.source != "zwmd":
                tail.append(record.message)
                lines += 1
        text = f"zwmd: the run failed ({reason}): {message}"
        # a log no longer than the tail is right above the summary: quoting it doubles it
        if lines > SUMMARY_TAIL_LINES:
            text += "\nLast lines of the container log:\n" + "\n".join(tail)
        if masker is not None:
            text = masker(text)
        now = datetime.now(UTC)
        records: list[LogRecord] = note_records(
            text, level=logging.ERROR, ts_ns=int(now.timestamp() * 1e9), attempt=key.attempt
        )
        await self.store.append(key, records)


def _job_info(job: Obj | None) -> _JobInfo | None:
    """Where the logs of a Job's pods go, or None for a Job that is not zwmd's."""
    if job is None:
        return None
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    notes = meta.get("annotations") or {}
    source = _SOURCES.get(labels.get(naming.LABEL_KIND, ""))
    workload_id = labels.get(naming.LABEL_WORKLOAD_ID)
    if source is None or not workload_id:
        return None
    status = job.get("status") or {}
    return _JobInfo(
        LogKey(workload_id, int(notes.get(naming.ANN_ATTEMPT) or 1)),
        source,
        notes.get(naming.ANN_LOGS_FLUSHED) == "true",
        int(status.get("succeeded") or 0) + int(status.get("failed") or 0),
    )


def _secret_environment(secret: Obj) -> dict[str, str]:
    """The variables a runner's environment Secret holds, decoded."""
    environment: dict[str, str] = {}
    for name, value in (secret.get("data") or {}).items():
        try:
            environment[str(name)] = base64.b64decode(str(value)).decode("utf-8", "replace")
        except ValueError:  # not base64: Kubernetes would not have stored it
            continue
    return environment


def _started_container(pod: Obj) -> str | None:
    """The first container that runs or ran (its log exists), else None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return str(status.get("name"))
    return None
