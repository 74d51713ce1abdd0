"""localkube's Job controller: turns ``batch/v1`` Jobs into pods and pods into Job status.

It behaves like kube-controller-manager's job controller of the release its store
models (:mod:`zwmd.localkube.versions`: the condition sequence and status fields differ
from 1.24 to 1.34) for NonIndexed Jobs: pods from the template, ``parallelism``/``completions``, ``suspend``,
``backoffLimit``, ``activeDeadlineSeconds``, ``podFailurePolicy``,
``ttlSecondsAfterFinished``, the status counters and the ``FailureTarget``/``Failed``,
``SuccessCriteriaMet``/``Complete`` and ``Suspended`` conditions, the pod failure
backoff, and a ``FailedCreate`` Event when the pod's service account does not exist.
The rules themselves live in :mod:`zwmd.localkube.jobrules`, the backoff in
:mod:`zwmd.localkube.podbackoff`, creating pods in :mod:`zwmd.localkube.podcreation` and
the Events in :mod:`zwmd.localkube.jobevents`; this module observes, decides and writes.

Design notes:

* An informer in miniature. A store listener (called synchronously after every change)
  keeps a cache of Jobs and an index of pods by the uid of the Job that controls them,
  and marks the Job dirty; the loop in :meth:`JobController.run` syncs each dirty Job
  once per wake-up, so a burst of pod changes costs one sync, not one per event.
* Timers instead of polling: a sync returns when it next needs to look again (an
  ``activeDeadlineSeconds`` deadline, a TTL expiry, a retry after a missing service
  account, a backoff delay); those instants sit in a heap and the loop sleeps until the
  earliest. A TTL patched later makes the Job dirty, so the new value is re-read.
* Counting is by pod uid and happens once: a pod that turns Succeeded or Failed, or
  vanishes without reaching a terminal phase (deleted by someone else), is counted the
  first time it is seen so, whether it is still in the store or not. Pods the controller deletes
  because the Job was suspended, or left over once it succeeded, are not counted as
  failures; those it kills for a deadline or a failure are. What is counted also feeds
  the pod failure backoff: a failure (or a pod a failure policy ignores) lengthens the
  wait before the next pod, a success ends it.
* Status is written only when it differs from what is stored, and with the store's
  ``update_status`` (it changes nothing but ``.status``); every write is a watch event
  for every client, so redundant writes would flood them.
* ``backoff_scale`` multiplies upstream's backoff (10 s doubling to 6 min): 1.0 by
  default, as upstream; ``LocalKube`` passes its ``pod_backoff_scale``.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from zwmd.localkube import jobrules as rules
from zwmd.localkube.errors import ApiError
from zwmd.localkube.jobevents import JobEvents
from zwmd.localkube.podbackoff import UPSTREAM_SCALE, Finished, PodBackoff, finished_at
from zwmd.localkube.podcreation import PodCreator

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

__all__ = ["JobController"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Key = tuple[str, str]


class JobController:
    """Reconciles every Job in ``store``; :meth:`run` runs until cancelled.

    ``backoff_scale`` multiplies the pod failure backoff (1.0: upstream's 10 s, 20 s,
    40 s, ... at most 6 min; 0: replace a failed pod at once); ``pod_backoff`` holds
    each Job's record, for tests that check what the controller decided."""

    def __init__(
        self,
        store: Store,
        *,
        retry_interval: float = 1.0,
        backoff_scale: float = UPSTREAM_SCALE,
        emit_events: bool = True,
    ) -> None:
        self._store = store
        self._retry_interval = retry_interval
        self.pod_backoff = PodBackoff(backoff_scale)
        self._events = JobEvents(store, emit=emit_events)
        self._creator = PodCreator(store, self._events, retry_interval=retry_interval)
        self._jobs: dict[Key, JsonDict] = {}
        self._keys: dict[str, Key] = {}  # job uid -> key
        self._pods: dict[str, dict[str, JsonDict]] = {}  # job uid -> pod name -> pod
        self._gone: dict[str, list[JsonDict]] = {}  # job uid -> pods deleted before counted
        self._counted: dict[str, dict[str, str]] = {}  # job uid -> pod uid -> outcome
        self._counts: dict[str, list[int]] = {}  # job uid -> [succeeded, failed]
        self._uncounted: set[str] = set()  # pod uids deleted on suspension or after success
        self._started: dict[str, float] = {}  # job uid -> precise start (deadlines)
        self._finished: dict[str, float] = {}  # job uid -> precise finish (TTL)
        self._dirty: dict[Key, None] = {}
        self._timers: list[tuple[float, Key]] = []
        self._wake: anyio.Event | None = None  # made in run(): needs the event loop
        self._listening = False

    # --- observing --------------------------------------------------------------------

    def _mark(self, key: Key) -> None:
        self._dirty[key] = None
        if self._wake is not None:
            self._wake.set()

    def _on_change(
        self, event_type: str, resource: str, obj: JsonDict, old: JsonDict | None
    ) -> None:
        if resource == "jobs":
            self._observe_job(event_type, obj)
        elif resource == "pods":
            self._observe_pod(event_type, obj)
        elif resource == "serviceaccounts" and event_type == "ADDED":
            namespace = obj.get("metadata", {}).get("namespace")
            for key in list(self._jobs):
                if key[0] == namespace and self._events.failing_create(
                    str(self._jobs[key]["metadata"]["uid"])
                ):
                    self._mark(key)

    def _observe_job(self, event_type: str, job: JsonDict) -> None:
        meta = job.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        uid = str(meta.get("uid"))
        if event_type == "DELETED":
            self._jobs.pop(key, None)
            self._keys.pop(uid, None)
            self._gone.pop(uid, None)
            self._counted.pop(uid, None)
            self._counts.pop(uid, None)
            self._started.pop(uid, None)
            self._finished.pop(uid, None)
            self.pod_backoff.forget(uid)
            self._events.forget(uid)
            self._dirty.pop(key, None)
            return
        self._jobs[key] = job
        self._keys[uid] = key
        self._mark(key)

    def _observe_pod(self, event_type: str, pod: JsonDict) -> None:
        owner = rules.controller_uid(pod)
        if owner is None:
            return
        name = str(pod.get("metadata", {}).get("name"))
        pods = self._pods.setdefault(owner, {})
        if event_type == "DELETED":
            pods.pop(name, None)
            if not pods:
                self._pods.pop(owner, None)
            if owner in self._keys:
                self._gone.setdefault(owner, []).append(pod)
        else:
            pods[name] = pod
        key = self._keys.get(owner)
        if key is not None:
            self._mark(key)

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Sync Jobs as they change and as their timers come due, until cancelled."""
        if not self._listening:
            self._listening = True
            self._store.add_listener(self._on_change)
            pods, _ = self._store.list("pods", None)
            for pod in pods:
                self._observe_pod("ADDED", pod)
            jobs, _ = self._store.list("jobs", None)
            for job in jobs:
                self._observe_job("ADDED", job)
        while True:
            wake = self._wake = anyio.Event()
            if not self._dirty:
                delay = self._timers[0][0] - time.time() if self._timers else math.inf
                if delay > 0:
                    with anyio.move_on_after(delay):
                        await wake.wait()
            now = time.time()
            while self._timers and self._timers[0][0] <= now:
                _, key = heapq.heappop(self._timers)
                if key in self._jobs:
                    self._dirty[key] = None
            batch = list(self._dirty)
            self._dirty.clear()
            for key in batch:
                found = self._jobs.get(key)
                if found is None:
                    continue
                job = found
                try:
                    wake_at = self._sync(job)
                except ApiError as error:
                    logger.debug("job %s/%s: %s", key[0], key[1], error.message)
                    wake_at = time.time() + 0.1
                except Exception:
                    logger.exception("job %s/%s: sync failed", key[0], key[1])
                    wake_at = time.time() + self._retry_interval
                if wake_at is not None:
                    heapq.heappush(self._timers, (wake_at, key))
            await anyio.lowlevel.checkpoint()

    # --- one sync ---------------------------------------------------------------------

    def _sync(self, job: JsonDict) -> float | None:
        meta, spec = job["metadata"], job.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return None
        uid = str(meta["uid"])
        now = time.time()
        stamp = rules.now_rfc3339(now)
        status: JsonDict = {
            k: (list(v) if isinstance(v, list) else v) for k, v in (job.get("status") or {}).items()
        }
        original = dict(job.get("status") or {})
        wake: list[float] = []

        pods = list(self._pods.get(uid, {}).values())
        fail_job = self._count(job, pods, status)
        succeeded, failed = self._counts[uid]
        active = [p for p in pods if not rules.is_terminal(p) and not rules.is_terminating(p)]
        terminating = [p for p in pods if rules.is_terminating(p)]
        finished = rules.has_condition(status, "Complete") or rules.has_condition(status, "Failed")
        delayed = self._store.version.delays_terminal_conditions

        if not finished:
            failure = self._failure(job, status, fail_job, failed, active, now)
            completions = rules.wanted_completions(spec)
            success = (
                succeeded >= completions
                if completions is not None
                else succeeded > 0 and not active
            )
            if failure is not None:
                if delayed or fail_job is not None:
                    rules.set_condition(status, "FailureTarget", "True", *failure, stamp)
                self._delete_pods(active, counted=True)
                active = []
                if not delayed or not any(rules.is_terminating(p) for p in self._current(uid)):
                    rules.set_condition(status, "Failed", "True", *failure, stamp)
                    self._events.record(job, "Warning", failure[0], failure[1])
                    finished = True
                    self._finished[uid] = now
            elif success:
                if delayed:
                    rules.set_condition(
                        status, "SuccessCriteriaMet", "True", *rules.COMPLETIONS_REACHED, stamp
                    )
                self._delete_pods(active, counted=False)
                active = []
                if not delayed or not any(rules.is_terminating(p) for p in self._current(uid)):
                    rules.set_condition(
                        status, "Complete", "True", *rules.COMPLETIONS_REACHED, stamp
                    )
                    status["completionTime"] = stamp
                    self._events.record(job, "Normal", "Completed", "Job completed")
                    finished = True
                    self._finished[uid] = now
            elif spec.get("suspend"):
                if not rules.has_condition(status, "Suspended"):
                    rules.set_condition(
                        status, "Suspended", "True", "JobSuspended", "Job suspended", stamp
                    )
                    self._events.record(job, "Normal", "Suspended", "Job suspended")
                self._delete_pods(active, counted=False)
                active = []
                self._started.pop(uid, None)
            else:
                if rules.has_condition(status, "Suspended"):
                    rules.set_condition(
                        status, "Suspended", "False", "JobResumed", "Job resumed", stamp
                    )
                    self._events.record(job, "Normal", "Resumed", "Job resumed")
                    status["startTime"] = stamp
                    self._started[uid] = now
                if not status.get("startTime"):
                    status["startTime"] = stamp
                    self._started[uid] = now
                deadline = self._deadline(job, status)
                if deadline is not None:
                    wake.append(deadline)
                created, retry = self._creator.create_missing(
                    job, succeeded, active, terminating, now, self.pod_backoff.not_before(uid)
                )
                active += created
                if retry is not None:
                    wake.append(retry)

        pods = self._current(uid)
        self._count(job, pods, status)  # pods this sync deleted count in the same write
        succeeded, failed = self._counts[uid]
        active_count = sum(
            1 for p in pods if not rules.is_terminal(p) and not rules.is_terminating(p)
        )
        status["ready"] = sum(1 for p in pods if not rules.is_terminal(p) and rules.is_ready(p))
        if self._store.version.writes_terminating:
            status["terminating"] = sum(1 for p in pods if rules.is_terminating(p))
        for field, value in (
            ("active", active_count),
            ("succeeded", succeeded),
            ("failed", failed),
        ):
            if value:
                status[field] = value
            else:
                status.pop(field, None)
        if self._store.version.writes_uncounted:
            status.setdefault("uncountedTerminatedPods", {})
        if status != original:
            self._store.update_status("jobs", meta["namespace"], meta["name"], status)

        if finished:
            self.pod_backoff.forget(uid)  # it makes no more pods
            wake_at = self._expire(job, status, now)
            if wake_at is not None:
                wake.append(wake_at)
        return min(wake) if wake else None

    def _current(self, uid: str) -> list[JsonDict]:
        return list(self._pods.get(uid, {}).values())

    def _count(
        self, job: JsonDict, pods: list[JsonDict], status: JsonDict
    ) -> tuple[str, str] | None:
        """Count newly finished (or vanished) pods, and tell the backoff; a FailJob rule's
        failure if one matched."""
        uid = str(job["metadata"]["uid"])
        counts = self._counts.get(uid)
        if counts is None:
            counts = self._counts[uid] = [
                int(status.get("succeeded") or 0),
                int(status.get("failed") or 0),
            ]
        counted = self._counted.setdefault(uid, {})
        fail_job: tuple[str, str] | None = None
        finished: list[Finished] = []
        gone = self._gone.pop(uid, [])
        for pod, vanished in [(p, False) for p in pods] + [(p, True) for p in gone]:
            pod_uid = str(pod["metadata"].get("uid"))
            if pod_uid in counted:
                continue
            phase = rules.pod_phase(pod)
            if phase == "Succeeded":
                counted[pod_uid] = "succeeded"
                counts[0] += 1
                finished.append(Finished(finished_at(pod), succeeded=True))
                continue
            if phase != "Failed" and not vanished:
                continue
            if pod_uid in self._uncounted:
                self._uncounted.discard(pod_uid)
                counted[pod_uid] = "removed"
                continue
            finished.append(Finished(finished_at(pod), succeeded=False))
            action, message = rules.match_failure_policy(job, pod)
            if action == "Ignore":
                counted[pod_uid] = "ignored"
                continue
            counted[pod_uid] = "failed"
            counts[1] += 1
            if action == "FailJob" and message is not None and fail_job is None:
                fail_job = ("PodFailurePolicy", message)
        self.pod_backoff.observe(uid, finished, time.time())
        return fail_job

    def _failure(
        self,
        job: JsonDict,
        status: JsonDict,
        fail_job: tuple[str, str] | None,
        failed: int,
        active: list[JsonDict],
        now: float,
    ) -> tuple[str, str] | None:
        existing = rules.find_condition(status, "FailureTarget")
        if existing is not None and existing.get("status") == "True":
            return str(existing.get("reason")), str(existing.get("message"))
        if fail_job is not None:
            return fail_job
        spec = job.get("spec") or {}
        limit = int(spec.get("backoffLimit", 6))
        restarts = 0
        if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
            restarts = sum(rules.restart_count(p) for p in active)
        if failed + restarts > limit:
            return rules.BACKOFF_LIMIT_EXCEEDED
        deadline = None if spec.get("suspend") else self._deadline(job, status)
        if deadline is not None and now >= deadline:
            return rules.DEADLINE_EXCEEDED
        return None

    def _deadline(self, job: JsonDict, status: JsonDict) -> float | None:
        seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if seconds is None:
            return None
        uid = str(job["metadata"]["uid"])
        started = self._started.get(uid) or rules.parse_rfc3339(status.get("startTime"))
        return None if started is None else started + float(seconds)

    def _delete_pods(self, pods: list[JsonDict], *, counted: bool) -> None:
        """Delete pods; ``counted``: a pod deleted before it finished counts as failed."""
        for pod in pods:
            meta = pod["metadata"]
            if not counted:
                self._uncounted.add(str(meta.get("uid")))
            try:
                self._store.delete("pods", meta["namespace"], meta["name"])
            except ApiError as error:
                if error.code != 404:
                    raise

    def _expire(self, job: JsonDict, status: JsonDict, now: float) -> float | None:
        """Delete a finished Job whose TTL has passed; else when it will have."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        finished_at = self._finished.get(str(job["metadata"]["uid"]))
        if finished_at is None:
            finished_at = rules.parse_rfc3339(status.get("completionTime"))
        if finished_at is None:
            condition = rules.find_condition(status, "Failed") or {}
            finished_at = rules.parse_rfc3339(condition.get("lastTransitionTime"))
        if finished_at is None:
            return None
        due = finished_at + float(ttl)
        if now < due:
            return due
        meta = job["metadata"]
        try:
            self._store.delete("jobs", meta["namespace"], meta["name"], propagation="Background")
        except ApiError as error:
            if error.code != 404:
                raise
        return None
