"""Reading a workload's state, and why it failed, from its Job, Pods and Events.

:func:`observe` is a pure function from what the watches saw (plain dicts, as parsed
from the Kubernetes API's JSON) to one :class:`Observation`: a state, a stable
:class:`~zwmd.states.Reason` when it failed, and a message for humans. It does no
I/O and keeps no state; the state machine (``workload.Workload.apply``) decides whether
the observation moves the workload.

Rules, in order
===============

1. **Job conditions first.** ``Complete`` (or ``SuccessCriteriaMet``, Kubernetes 1.31+)
   → ``succeeded``. ``Failed``, or ``FailureTarget`` (Kubernetes 1.29+ sets it first,
   while the pods are still being terminated; it is already the verdict) → ``failed``
   with the Job's reason: ``BackoffLimitExceeded``, ``DeadlineExceeded``,
   ``PodFailurePolicy``. ``BackoffLimitExceeded`` (and any reason this module does not
   know) is refined from the last failed pod: ``Evicted`` (pod reason ``Evicted`` or a
   ``DisruptionTarget`` condition), ``OOMKilled`` (container reason ``OOMKilled``, or
   exit code 137: a SIGKILL that was not an eviction), else ``Error`` with the exit code
   and the container's name.
2. **Pod state second**, for a Job that has not finished:

   - ``spec.suspend: true`` and no active pod → ``queued``;
   - a ``FailedCreate`` Warning Event on the Job and no active pod → ``failed``
     ``CreateFailed`` with the event's message (a missing service account, a denied
     admission...). A quota refusal (``exceeded quota``) frees up by itself when other
     pods end, so it counts as unschedulable instead: failed only past the deadline;
   - ``PodScheduled=False`` reason ``Unschedulable`` → ``starting``, and ``failed``
     ``Unschedulable`` with the scheduler's message once it lasted ``unschedulable_deadline``;
   - a container waiting in ``ErrImagePull`` / ``ImagePullBackOff`` → ``starting``, and
     ``failed`` ``ImagePullError`` once it lasted ``image_pull_grace``. ``InvalidImageName``
     fails at once: no retry can fix a malformed name;
   - a container waiting in ``CreateContainerConfigError`` / ``CreateContainerError``
     (e.g. the environment Secret not created yet) → ``starting``, and ``failed``
     ``CreateFailed`` once it lasted ``image_pull_grace``;
   - ``CrashLoopBackOff`` → ``failed`` at once;
   - a running container → ``running``; otherwise (pending, ``ContainerCreating``,
     ``PodInitializing``, no pod yet, a failed pod the Job is about to replace) →
     ``starting``.

Grace periods and deadlines
===========================

Kubernetes does not say when a container started failing to pull its image, so the
caller carries it: every problem that waits for a grace period has a key (pod name,
container name, problem), and ``Observation.first_seen`` maps the keys present now to the
first time they were seen. Pass the previous observation's ``first_seen`` back into the
next call; keys of problems that went away drop out by themselves. The earliest of that
time and what Kubernetes itself records (the ``PodScheduled`` condition's
``lastTransitionTime``, the first timestamp of a matching Event) is used. Nothing may
wait for an event that never comes: ``Observation.recheck_at`` says when to observe
again even if nothing changes, because a pod stuck in ``ImagePullBackOff`` produces no
new watch event when its grace period ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from zwmd.engine.kubereading import (
    JOB_FAILURE_CONDITIONS,
    JOB_SUCCESS_CONDITIONS,
    container_statuses,
    event_message,
    event_times,
    human_duration,
    is_active,
    memory_limit,
    parse_time,
    pod_name,
    spec_image,
    true_conditions,
)
from zwmd.states import Reason, State

__all__ = ["Observation", "human_duration", "observe", "parse_time"]  # the last two re-exported

IMAGE_PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff"})
CONTAINER_CREATE_WAITING = frozenset({"CreateContainerConfigError", "CreateContainerError"})
ROOT_IMAGE_HINT = (
    "Runner pods run as non-root (Pod Security restricted): give the image a non-root "
    "USER, or set ZWMD_RUNNER_POD_SECURITY=baseline for images that must run as root"
)
SIGKILL_EXIT_CODE = 137


@dataclass(frozen=True)
class Observation:
    """What the Kubernetes objects of one workload say, at one moment."""

    state: State
    message: str
    reason: Reason | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: problem key → when first seen; pass it back as ``observe(first_seen=...)``
    first_seen: Mapping[str, datetime] = field(default_factory=dict)
    #: observe again at this time even without a new event (a grace period ends)
    recheck_at: datetime | None = None


def observe(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    image_pull_grace: timedelta,
    unschedulable_deadline: timedelta,
    first_seen: Mapping[str, datetime] | None = None,
) -> Observation:
    """Read the state of the workload behind ``job`` from the Job, its pods and events.

    :param job: the Job, as a dict.
    :param pods: the pods of this Job, in the order they were first seen (deleted ones
        may be missing). Creation and finish times have whole-second resolution, so pods
        of the same second are told apart by that order: the later one is the newer.
    :param events: Events; only those about this Job or one of ``pods`` are read.
    :param now: the current time (timezone-aware).
    :param image_pull_grace: how long an image pull (or container creation) may fail
        before the workload fails.
    :param unschedulable_deadline: how long the pod may stay unschedulable.
    :param first_seen: the previous observation's ``first_seen``.
    """
    return _Observer(
        job, pods, events, now, image_pull_grace, unschedulable_deadline, first_seen or {}
    ).run()


class _Observer:
    """One run of :func:`observe`: the inputs, and the grace periods it tracks."""

    def __init__(
        self,
        job: Mapping[str, Any],
        pods: Sequence[Mapping[str, Any]],
        events: Sequence[Mapping[str, Any]],
        now: datetime,
        image_pull_grace: timedelta,
        unschedulable_deadline: timedelta,
        first_seen: Mapping[str, datetime],
    ) -> None:
        self.job = job
        self.job_name = str(job.get("metadata", {}).get("name", ""))
        # newest pod first: its problems are the current ones (the sort is stable, so
        # among pods created in the same second the one seen last comes first)
        self.pods = sorted(
            reversed(pods),
            key=lambda pod: pod.get("metadata", {}).get("creationTimestamp") or "",
            reverse=True,
        )
        pod_names = {pod_name(pod) for pod in pods}
        self.job_events: list[Mapping[str, Any]] = []
        self.pod_events: dict[str, list[Mapping[str, Any]]] = {}
        for event in events:
            involved = event.get("involvedObject") or event.get("regarding") or {}
            name = involved.get("name")
            if involved.get("kind") == "Job" and name == self.job_name:
                self.job_events.append(event)
            elif involved.get("kind") == "Pod" and name in pod_names:
                self.pod_events.setdefault(str(name), []).append(event)
        self.now = now
        self.image_pull_grace = image_pull_grace
        self.unschedulable_deadline = unschedulable_deadline
        self.previously_seen = first_seen
        self.first_seen: dict[str, datetime] = {}
        self.recheck_at: datetime | None = None
        status = job.get("status", {})
        self.started_at = parse_time(status.get("startTime"))

    def run(self) -> Observation:
        conditions = true_conditions(self.job)
        for kind in JOB_SUCCESS_CONDITIONS:
            if kind in conditions:
                return self._succeeded(conditions[kind])
        failed = next((conditions[k] for k in JOB_FAILURE_CONDITIONS if k in conditions), None)
        if failed is not None:
            return self._job_failed(failed)
        return self._from_pods()

    def _result(self, state: State, message: str, **details: Any) -> Observation:
        return Observation(
            state=state,
            message=message,
            started_at=details.pop("started_at", self.started_at),
            first_seen=dict(self.first_seen),
            recheck_at=self.recheck_at,
            **details,
        )

    # -- the Job has finished ------------------------------------------------------------

    def _succeeded(self, condition: Mapping[str, Any]) -> Observation:
        finished = parse_time(self.job.get("status", {}).get("completionTime"))
        return self._result(
            State.SUCCEEDED,
            "The workload finished successfully.",
            exit_code=0,
            finished_at=finished or parse_time(condition.get("lastTransitionTime")) or self.now,
        )

    def _job_failed(self, condition: Mapping[str, Any]) -> Observation:
        finished = parse_time(condition.get("lastTransitionTime")) or self.now
        job_reason = str(condition.get("reason", ""))
        job_message = str(condition.get("message", "")).strip()
        last_failed = self._last_failed_pod()
        exit_code = None
        if last_failed is not None:
            terminated = self._failing_container(last_failed)
            if terminated is not None:
                exit_code = terminated[1].get("exitCode")
        fail = {"finished_at": finished, "exit_code": exit_code}
        if job_reason == "DeadlineExceeded":
            deadline = self.job.get("spec", {}).get("activeDeadlineSeconds")
            timeout = human_duration(timedelta(seconds=deadline)) if deadline else "the Job"
            reason = Reason.DEADLINE_EXCEEDED
            return self._failed(reason, reason.message(timeout=timeout), **fail)
        if job_reason == "PodFailurePolicy":
            reason = Reason.POD_FAILURE_POLICY
            detail = job_message or "a rule matched the failed pod."
            return self._failed(reason, reason.message(detail=detail), **fail)
        if last_failed is not None:
            refined = self._explain_failed_pod(last_failed, finished)
            if refined is not None:
                return refined
        if job_reason == "BackoffLimitExceeded":
            failed_count = self.job.get("status", {}).get("failed", 0)
            limit = self.job.get("spec", {}).get("backoffLimit", 6)
            reason = Reason.BACKOFF_LIMIT_EXCEEDED
            detail = f" {job_message}" if job_message else ""
            message = reason.message(failed=failed_count, backoff_limit=limit, detail=detail)
            return self._failed(reason, message, **fail)
        message = f"The Job failed ({job_reason or 'no reason given'})"
        return self._failed(
            Reason.ERROR, f"{message}: {job_message}" if job_message else f"{message}.", **fail
        )

    def _failed(self, reason: Reason, message: str, **details: Any) -> Observation:
        details.setdefault("finished_at", self.now)
        return self._result(State.FAILED, message, reason=reason, **details)

    def _last_failed_pod(self) -> Mapping[str, Any] | None:
        failed = [pod for pod in self.pods if pod.get("status", {}).get("phase") == "Failed"]

        def finished(pod: Mapping[str, Any]) -> str:
            times = [
                str(status.get("state", {}).get("terminated", {}).get("finishedAt") or "")
                for status in container_statuses(pod)
            ]
            return max([*times, str(pod.get("metadata", {}).get("creationTimestamp") or "")])

        return max(failed, key=finished, default=None)

    @staticmethod
    def _failing_container(
        pod: Mapping[str, Any],
    ) -> tuple[str, Mapping[str, Any]] | None:
        """(name, terminated state) of the container that made the pod fail."""
        terminated = [
            (str(status.get("name", "")), status.get("state", {}).get("terminated"))
            for status in container_statuses(pod)
        ]
        candidates = [(name, state) for name, state in terminated if state]
        for name, state in candidates:
            if state.get("reason") == "OOMKilled":
                return name, state
        for name, state in candidates:
            if state.get("exitCode", 0) != 0:
                return name, state
        return None

    def _explain_failed_pod(self, pod: Mapping[str, Any], finished: datetime) -> Observation | None:
        """Evicted / OOMKilled / Error from a failed pod, or None when it does not say."""
        status = pod.get("status", {})
        name = pod_name(pod)
        disruption = true_conditions(pod).get("DisruptionTarget")
        failing = self._failing_container(pod)
        exit_code = failing[1].get("exitCode") if failing else None
        if status.get("reason") == "Evicted" or disruption is not None:
            cause = (disruption or {}).get("reason") or "Evicted"
            detail = status.get("message") or (disruption or {}).get("message") or "no details."
            reason = Reason.EVICTED
            message = reason.message(pod=name, cause=cause, detail=str(detail).strip())
            return self._failed(reason, message, finished_at=finished, exit_code=exit_code)
        if failing is None:
            return None
        container, terminated = failing
        if terminated.get("reason") == "OOMKilled" or exit_code == SIGKILL_EXIT_CODE:
            limit = memory_limit(pod, container)
            reason = Reason.OOM_KILLED
            message = reason.message(
                container=container,
                exit_code=exit_code,
                limit=f", limit {limit}" if limit else "",
            )
            return self._failed(reason, message, finished_at=finished, exit_code=exit_code)
        last_words = str(terminated.get("message") or "").strip()
        detail = f" Its termination message: {last_words}" if last_words else ""
        reason = Reason.ERROR
        message = reason.message(container=container, exit_code=exit_code, detail=detail)
        return self._failed(reason, message, finished_at=finished, exit_code=exit_code)

    # -- the Job has not finished: read its pods -----------------------------------------

    def _from_pods(self) -> Observation:
        active = [pod for pod in self.pods if is_active(pod)]
        if self.job.get("spec", {}).get("suspend") and not active:
            return self._result(
                State.QUEUED, "Waiting for a free slot (the Job is suspended).", started_at=None
            )
        if not active:
            created = self._failed_create()
            if created is not None:
                return created
        running = None
        for pod in active:
            verdict = self._examine_pod(pod)
            if verdict is not None and verdict.state is State.FAILED:
                return verdict
            if verdict is not None and running is None:
                running = verdict
        if running is not None:
            return running
        if active:
            return self._result(State.STARTING, "Waiting for the pod to start.")
        return self._result(State.STARTING, "Waiting for the Job to create its pod.")

    def _since(self, key: str, *known: datetime | None) -> datetime:
        """When a problem began: the earliest of what we know, and remember it."""
        times = [time for time in (self.previously_seen.get(key), *known) if time is not None]
        since = min(times, default=self.now)
        self.first_seen[key] = since
        return since

    def _past(self, since: datetime, allowance: timedelta) -> bool:
        """Whether ``allowance`` from ``since`` is over; if not, ask to be woken then."""
        ends = since + allowance
        if self.now >= ends:
            return True
        self.recheck_at = ends if self.recheck_at is None else min(self.recheck_at, ends)
        return False

    def _failed_create(self) -> Observation | None:
        warnings = [
            event
            for event in self.job_events
            if event.get("reason") == "FailedCreate" and event.get("type") == "Warning"
        ]
        # only events of the current run: the start time is reset when a Job is un-suspended
        if self.started_at is not None:
            warnings = [
                event
                for event in warnings
                if (event_times(event)[1] or self.now) >= self.started_at.replace(microsecond=0)
            ]
        if not warnings:
            return None
        latest = max(warnings, key=lambda event: event_times(event)[1] or self.now)
        detail = event_message(latest)
        if "exceeded quota" in detail:
            key = f"{self.job_name}/quota"
            since = self._since(key, *(event_times(event)[0] for event in warnings))
            if not self._past(since, self.unschedulable_deadline):
                return self._result(State.STARTING, f"Waiting for quota: {detail}")
            elapsed = human_duration(self.now - since)
            message = f"The namespace's resource quota kept the pod out for {elapsed}: {detail}"
            return self._failed(Reason.UNSCHEDULABLE, message)
        return self._failed(Reason.CREATE_FAILED, Reason.CREATE_FAILED.message(detail=detail))

    def _examine_pod(self, pod: Mapping[str, Any]) -> Observation | None:
        """A failed or running verdict from one active pod, a starting one, or None."""
        name = pod_name(pod)
        scheduled = next(
            (
                condition
                for condition in pod.get("status", {}).get("conditions") or ()
                if condition.get("type") == "PodScheduled"
            ),
            None,
        )
        if (
            scheduled is not None
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == "Unschedulable"
        ):
            detail = str(scheduled.get("message") or "the scheduler gave no reason.").strip()
            since = self._since(
                f"{name}/unschedulable", parse_time(scheduled.get("lastTransitionTime"))
            )
            if not self._past(since, self.unschedulable_deadline):
                return self._result(State.STARTING, f"Waiting for a node: {detail}")
            elapsed = human_duration(self.now - since)
            reason = Reason.UNSCHEDULABLE
            return self._failed(reason, reason.message(elapsed=elapsed, detail=detail))
        starting: Observation | None = None
        running = False
        for status in container_statuses(pod):
            state = status.get("state", {})
            if "running" in state:
                running = True
                continue
            waiting = state.get("waiting")
            if not waiting:
                continue
            verdict = self._examine_waiting(pod, status, waiting)
            if verdict.state is State.FAILED:
                return verdict
            starting = starting or verdict
        if starting is not None:
            return starting
        if running:
            containers = [
                str(status.get("name"))
                for status in container_statuses(pod)
                if "running" in status.get("state", {})
            ]
            return self._result(State.RUNNING, f"The {', '.join(containers)} container is running.")
        return None

    def _examine_waiting(
        self, pod: Mapping[str, Any], status: Mapping[str, Any], waiting: Mapping[str, Any]
    ) -> Observation:
        this_pod = pod_name(pod)
        container = str(status.get("name", ""))
        why = str(waiting.get("reason", ""))
        kubelet_says = str(waiting.get("message") or why).strip()
        image = str(status.get("image") or spec_image(pod, container))
        if why == "InvalidImageName":
            message = f"The image name {image} is not valid: {kubelet_says}"
            return self._failed(Reason.IMAGE_PULL_ERROR, message)
        if why in IMAGE_PULL_WAITING:
            events = self._pod_events(this_pod, {"Failed", "BackOff", "ErrImagePull"})
            since = self._since(
                f"{this_pod}/{container}/image-pull", *(event_times(e)[0] for e in events)
            )
            detail = self._most_specific(events, kubelet_says, prefix="Failed to pull image")
            if not self._past(since, self.image_pull_grace):
                return self._result(State.STARTING, f"Retrying the pull of {image}: {detail}")
            reason = Reason.IMAGE_PULL_ERROR
            elapsed = human_duration(self.now - since)
            return self._failed(reason, reason.message(image=image, elapsed=elapsed, detail=detail))
        if why in CONTAINER_CREATE_WAITING and "runAsNonRoot" in kubelet_says:
            reason = Reason.CREATE_FAILED  # the image's user is root: no retry helps
            detail = f"{container}: {kubelet_says}. {ROOT_IMAGE_HINT}"
            return self._failed(reason, reason.message(detail=detail))
        if why in CONTAINER_CREATE_WAITING:
            since = self._since(f"{this_pod}/{container}/create")
            if not self._past(since, self.image_pull_grace):
                return self._result(
                    State.STARTING, f"Creating the {container} container: {kubelet_says}"
                )
            reason = Reason.CREATE_FAILED
            return self._failed(reason, reason.message(detail=f"{container}: {kubelet_says}"))
        if why == "CrashLoopBackOff":
            last = status.get("lastState", {}).get("terminated", {})
            exit_code = last.get("exitCode")
            reason = Reason.CRASH_LOOP_BACK_OFF
            shown = "unknown" if exit_code is None else exit_code
            message = reason.message(container=container, exit_code=shown)
            return self._failed(reason, message, exit_code=exit_code)
        if why == "PodInitializing":
            message = f"Running the pod's init containers before the {container} container."
            return self._result(State.STARTING, message)
        if why == "ContainerCreating":
            return self._result(State.STARTING, f"Creating the {container} container.")
        return self._result(State.STARTING, f"The {container} container is waiting: {kubelet_says}")

    def _pod_events(self, pod_name: str, reasons: Iterable[str]) -> list[Mapping[str, Any]]:
        wanted = set(reasons)
        return [
            event
            for event in self.pod_events.get(pod_name, ())
            if event.get("type") == "Warning" and event.get("reason") in wanted
        ]

    @staticmethod
    def _most_specific(events: list[Mapping[str, Any]], fallback: str, *, prefix: str) -> str:
        """The kubelet's detailed message (from its Events) over the terse waiting one."""
        detailed = [event for event in events if event_message(event).startswith(prefix)]
        if not detailed:
            return fallback
        return event_message(
            max(
                detailed,
                key=lambda event: event_times(event)[1] or datetime.min.replace(tzinfo=UTC),
            )
        )
