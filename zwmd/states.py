"""The workload state machine: its states, its legal transitions and its failure reasons.

A workload is one request to zwmd (run a runner container, or build an image) and is
backed by one Kubernetes Job. Its state only ever moves forward; Kubernetes watch events
may arrive late or be replayed after a re-list, so an observation that would move a
workload backwards is stale, and is refused rather than applied.

States
======

``building``   the image the workload needs is being built (builder workloads stay here
               while their builder pod runs; a runner may wait here for its image)
``queued``     the runner Job exists with ``spec.suspend: true``, waiting for a slot
``starting``   the Job is un-suspended: its pod is being created, scheduled, pulled
``running``    a container of the pod is running
``succeeded``  terminal: the Job completed
``failed``     terminal, with a :class:`Reason` and a human message
``cancelled``  terminal: deleted on request

Transition table
================

=============  ============  ==========================================================
from           to            on what observation or command
=============  ============  ==========================================================
building       queued        the image is built; the runner Job was created suspended
building       starting      the runner Job was created un-suspended (a slot was free)
building       running       as above, and its container was already seen running
building       succeeded     the builder Job completed (the image is pushed)
building       failed        the build failed (``BuildFailed``), or its Job failed/vanished
building       cancelled     cancel requested
queued         starting      admitted: the Job is un-suspended (see ``queueing.admit``)
queued         running       un-suspended and the container seen running at once
queued         succeeded     the Job completed while nobody watched (daemon restart)
queued         failed        the Job failed while nobody watched, or vanished (``JobLost``)
queued         cancelled     cancel requested
starting       running       a container of the pod is running
starting       succeeded     the Job completed (the running phase was too short to see)
starting       failed        a Job failure condition, or a pre-start failure: image pull
                             past its grace period, CrashLoopBackOff, unschedulable past
                             its deadline, FailedCreate, ``JobLost``
starting       cancelled     cancel requested
running        succeeded     Job condition ``Complete`` (or ``SuccessCriteriaMet``)
running        failed        Job condition ``Failed`` (or ``FailureTarget``), refined from
                             the last failed pod; ``JobLost``
running        cancelled     cancel requested
=============  ============  ==========================================================

Everything else is refused: every move backwards (``running`` → ``starting`` happens when
the Job retries a failed pod, but the workload stays ``running``; ``starting`` →
``queued`` is a stale event from before the un-suspend), every move out of a terminal
state, and ``queued`` → ``building``. Staying in the same state is not a transition.

A reused workload id (ZenML resumes a run with the same id) starts a new *attempt*: a new
record with ``attempt + 1``, not a transition out of a terminal state.

The order is a rank (building < queued < starting < running < terminal) and a transition
is legal exactly when it goes up the rank from a non-terminal state. The table is spelt
out as data below anyway, so that reading it never requires deriving it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["ACTIVE", "TERMINAL", "TRANSITIONS", "Reason", "State", "can_transition"]


class State(StrEnum):
    """The state of one workload, as shown by the API and stored on its Job."""

    BUILDING = "building"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[State] = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

#: The states that occupy a concurrency slot (for runner workloads).
ACTIVE: frozenset[State] = frozenset({State.STARTING, State.RUNNING})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.BUILDING: frozenset({State.QUEUED, State.STARTING, State.RUNNING} | TERMINAL),
    State.QUEUED: frozenset({State.STARTING, State.RUNNING} | TERMINAL),
    State.STARTING: frozenset({State.RUNNING} | TERMINAL),
    State.RUNNING: TERMINAL,
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def can_transition(current: State, target: State) -> bool:
    """Whether a workload in ``current`` may move to ``target`` (same state: no)."""
    return target in TRANSITIONS[current]


class Reason(StrEnum):
    """Why a workload failed (or was cancelled): a stable, machine-readable word.

    Each reason has a message template (:attr:`template`); :meth:`message` fills it. The
    fields are always supplied by the code that chooses the reason, already formatted
    (``limit`` is ``", limit 700Mi"`` or ``""``, so that missing facts leave no holes).
    """

    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    POD_FAILURE_POLICY = "PodFailurePolicy"
    IMAGE_PULL_ERROR = "ImagePullError"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    UNSCHEDULABLE = "Unschedulable"
    CREATE_FAILED = "CreateFailed"
    JOB_LOST = "JobLost"
    ERROR = "Error"
    CANCELLED = "Cancelled"
    BUILD_FAILED = "BuildFailed"

    @property
    def template(self) -> str:
        return _TEMPLATES[self]

    def message(self, **fields: Any) -> str:
        """The human message for this reason, from its template and ``fields``."""
        return self.template.format(**fields)


_TEMPLATES: dict[Reason, str] = {
    Reason.BACKOFF_LIMIT_EXCEEDED: (
        "The Job gave up after {failed} failed pod(s) (backoffLimit {backoff_limit}).{detail}"
    ),
    Reason.DEADLINE_EXCEEDED: "The run exceeded its timeout of {timeout} and was stopped.",
    Reason.POD_FAILURE_POLICY: "The Job's pod failure policy ended the run: {detail}",
    Reason.IMAGE_PULL_ERROR: "The image {image} could not be pulled for {elapsed}: {detail}",
    Reason.CRASH_LOOP_BACK_OFF: (
        "The {container} container keeps crashing (last exit code {exit_code});"
        " Kubernetes is backing off before restarting it."
    ),
    Reason.OOM_KILLED: (
        "The {container} container was killed because it ran out of memory"
        " (exit code {exit_code}{limit})."
    ),
    Reason.EVICTED: "The pod {pod} was evicted ({cause}): {detail}",
    Reason.UNSCHEDULABLE: "No node could take the pod for {elapsed}: {detail}",
    Reason.CREATE_FAILED: "Kubernetes could not create the pod: {detail}",
    Reason.JOB_LOST: (
        "The Job {job_name} disappeared from Kubernetes before the workload finished"
        " (deleted outside zwmd?)."
    ),
    Reason.ERROR: "The {container} container exited with code {exit_code}.{detail}",
    Reason.CANCELLED: "The workload was cancelled.",
    Reason.BUILD_FAILED: "The image build failed: {detail}",
}
