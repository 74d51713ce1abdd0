"""localkube's Job controller: turns ``batch/v1`` Jobs into pods and pods into Job status.

It behaves like kube-controller-manager's job controller of the release its store
models (:mod:`zwmd.localkube.versions`: the condition sequence and status fields differ
from 1.24 to 1.34) for NonIndexed Jobs: pods from the template, ``parallelism``/``completions``, ``suspend``,
``backoffLimit``, ``activeDeadlineSeconds``, ``podFailurePolicy``,
``ttlSecondsAfterFinished``, the status counters and the ``FailureTarget``/``Failed``,
``SuccessCriteriaMet``/``Complete`` and ``Suspended`` conditions, and a ``FailedCreate``
Event when the pod's service account does not exist. The rules themselves live in
:mod:`zwmd.localkube.jobrules`.

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
  failures; those it kills for a deadline or a failure are.
* Status is written only when it differs from what is stored, and with the store's
  ``update_status`` (it changes nothing but ``.status``); every write is a watch event
  for every client, so redundant writes would flood them.
* The service account check stands in for the apiserver's admission plugin, which
  localkube does not have: ``default`` always exists; any other name must be a
  ServiceAccount in the namespace. Repeated failures update one Event (``count``,
  ``lastTimestamp``) the way the event recorder aggregates them.
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

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

__all__ = ["JobController"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Key = tuple[str, str]


class JobController:
    """Reconciles every Job in ``store``; :meth:`run` runs until cancelled."""

    def __init__(
        self,
        store: Store,
        *,
        retry_interval: float = 1.0,
        backoff: float = 0.0,
        emit_events: bool = True,
    ) -> None:
        self._store = store
        self._retry_interval = retry_interval
        self._backoff = backoff
        self._emit_events = emit_events
        self._jobs: dict[Key, JsonDict] = {}
        self._keys: dict[str, Key] = {}  # job uid -> key
        self._pods: dict[str, dict[str, JsonDict]] = {}  # job uid -> pod name -> pod
        self._gone: dict[str, list[JsonDict]] = {}  # job uid -> pods deleted before counted
        self._counted: dict[str, dict[str, str]] = {}  # job uid -> pod uid -> outcome
        self._counts: dict[str, list[int]] = {}  # job uid -> [succeeded, failed]
        self._uncounted: set[str] = set()  # pod uids deleted on suspension or after success
        self._started: dict[str, float] = {}  # job uid -> precise start (deadlines)
        self._finished: dict[str, float] = {}  # job uid -> precise finish (TTL)
        self._not_before: dict[str, float] = {}  # job uid -> earliest next pod (backoff)
        self._failed_create: dict[str, str] = {}  # job uid -> FailedCreate Event name
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
                if (
                    key[0] == namespace
                    and self._jobs[key]["metadata"]["uid"] in self._failed_create
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
            self._not_before.pop(uid, None)
            self._failed_create.pop(uid, None)
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
                    self._event(job, "Warning", failure[0], failure[1])
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
                    self._event(job, "Normal", "Completed", "Job completed")
                    finished = True
                    self._finished[uid] = now
            elif spec.get("suspend"):
                if not rules.has_condition(status, "Suspended"):
                    rules.set_condition(
                        status, "Suspended", "True", "JobSuspended", "Job suspended", stamp
                    )
                    self._event(job, "Normal", "Suspended", "Job suspended")
                self._delete_pods(active, counted=False)
                active = []
                self._started.pop(uid, None)
            else:
                if rules.has_condition(status, "Suspended"):
                    rules.set_condition(
                        status, "Suspended", "False", "JobResumed", "Job resumed", stamp
                    )
                    self._event(job, "Normal", "Resumed", "Job resumed")
                    status["startTime"] = stamp
                    self._started[uid] = now
                if not status.get("startTime"):
                    status["startTime"] = stamp
                    self._started[uid] = now
                deadline = self._deadline(job, status)
                if deadline is not None:
                    wake.append(deadline)
                created, retry = self._manage(job, status, succeeded, active, terminating, now)
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
            wake_at = self._expire(job, status, now)
            if wake_at is not None:
                wake.append(wake_at)
        return min(wake) if wake else None

    def _current(self, uid: str) -> list[JsonDict]:
        return list(self._pods.get(uid, {}).values())

    def _count(
        self, job: JsonDict, pods: list[JsonDict], status: JsonDict
    ) -> tuple[str, str] | None:
        """Count newly finished (or vanished) pods; a FailJob rule's failure if one matched."""
        uid = str(job["metadata"]["uid"])
        counts = self._counts.get(uid)
        if counts is None:
            counts = self._counts[uid] = [
                int(status.get("succeeded") or 0),
                int(status.get("failed") or 0),
            ]
        counted = self._counted.setdefault(uid, {})
        fail_job: tuple[str, str] | None = None
        gone = self._gone.pop(uid, [])
        for pod, vanished in [(p, False) for p in pods] + [(p, True) for p in gone]:
            pod_uid = str(pod["metadata"].get("uid"))
            if pod_uid in counted:
                continue
            phase = rules.pod_phase(pod)
            if phase == "Succeeded":
                counted[pod_uid] = "succeeded"
                counts[0] += 1
                continue
            if phase != "Failed" and not vanished:
                continue
            if pod_uid in self._uncounted:
                self._uncounted.discard(pod_uid)
                counted[pod_uid] = "removed"
                continue
            action, message = rules.match_failure_policy(job, pod)
            if action == "Ignore":
                counted[pod_uid] = "ignored"
                continue
            counted[pod_uid] = "failed"
            counts[1] += 1
            self._not_before[uid] = time.time() + self._backoff
            if action == "FailJob" and message is not None and fail_job is None:
                fail_job = ("PodFailurePolicy", message)
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

    def _manage(
        self,
        job: JsonDict,
        status: JsonDict,
        succeeded: int,
        active: list[JsonDict],
        terminating: list[JsonDict],
        now: float,
    ) -> tuple[list[JsonDict], float | None]:
        """Create the pods the Job lacks; returns them and when to retry if it could not."""
        spec, meta = job.get("spec") or {}, job["metadata"]
        uid = str(meta["uid"])
        wanted = int(spec.get("parallelism", 1))
        completions = rules.wanted_completions(spec)
        if completions is not None:
            wanted = min(wanted, completions - succeeded)
        elif succeeded:
            wanted = 0
        busy = len(active)
        if spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy"):
            busy += len(terminating)
        missing = wanted - busy
        if missing <= 0:
            return [], None
        not_before = self._not_before.get(uid, 0.0)
        if now < not_before:
            return [], not_before
        created: list[JsonDict] = []
        for _ in range(missing):
            name = f"{meta['name']}-{rules.random_suffix()}"
            problem = self._admission_problem(job, name)
            if problem is not None:
                self._failed_create_event(job, f"Error creating: {problem}")
                return created, now + self._retry_interval
            pod = rules.pod_from_template(job, name)
            try:
                created.append(self._store.create("pods", meta["namespace"], pod))
            except ApiError as error:
                self._failed_create_event(job, f"Error creating: {error.message}")
                return created, now + self._retry_interval
            self._failed_create.pop(uid, None)
            self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return created, None

    def _admission_problem(self, job: JsonDict, pod_name: str) -> str | None:
        namespace = job["metadata"]["namespace"]
        pod_spec = (job.get("spec") or {}).get("template", {}).get("spec") or {}
        account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
        if account == "default":
            return None
        try:
            self._store.get("serviceaccounts", namespace, account)
        except ApiError as error:
            if error.code != 404:
                raise
            return (
                f'pods "{pod_name}" is forbidden: error looking up service account '
                f'{namespace}/{account}: serviceaccount "{account}" not found'
            )
        return None

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

    # --- events -----------------------------------------------------------------------

    def _event(self, job: JsonDict, kind: str, reason: str, message: str) -> None:
        if self._emit_events:
            self._record(job, kind, reason, message)

    def _failed_create_event(self, job: JsonDict, message: str) -> None:
        uid = str(job["metadata"]["uid"])
        name = self._failed_create.get(uid)
        stamp = rules.now_rfc3339(time.time())
        if name is not None:
            try:
                event = self._store.get("events", job["metadata"]["namespace"], name)
                count = int(event.get("count") or 1) + 1
                self._store.patch(
                    "events",
                    job["metadata"]["namespace"],
                    name,
                    {"count": count, "lastTimestamp": stamp, "message": message},
                    "application/merge-patch+json",
                )
                return
            except ApiError:
                pass
        self._failed_create[uid] = self._record(job, "Warning", "FailedCreate", message)

    def _record(self, job: JsonDict, kind: str, reason: str, message: str) -> str:
        event = rules.event_for(job, kind, reason, message, time.time_ns())
        try:
            self._store.create("events", job["metadata"]["namespace"], event)
        except ApiError as error:
            logger.debug("event for job %s: %s", job["metadata"]["name"], error.message)
        return str(event["metadata"]["name"])
