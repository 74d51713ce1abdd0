"""Builders for Job, Pod and Event dicts shaped as Kubernetes 1.29+ writes them.

Each builder returns the JSON a list or watch of the API would return (only the fields
zwmd reads, plus enough of the rest to be recognisable), so that tests read as the
situation they describe: ``pod(containers=[waiting("runner", "ImagePullBackOff", ...)])``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

Obj = dict[str, Any]

NAMESPACE = "zenml-workloads"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
WORKLOAD_ID = "7b1f7c52-0c1a-4a8e-9a44-6d0f2f5b9e01"
JOB_NAME = f"zwmd-runner-{uuid.UUID(WORKLOAD_ID).hex}"
JOB_UID = "0a8c6c3e-7d0e-4f3e-bd0b-1d2a3b4c5d6e"


def ts(moment: datetime) -> str:
    """A timestamp as the API server writes it: whole seconds, UTC, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


# -- Jobs ------------------------------------------------------------------------------


def job_condition(kind: str, reason: str = "", message: str = "", *, when: datetime = T0) -> Obj:
    return {
        "type": kind,
        "status": "True",
        "lastProbeTime": ts(when),
        "lastTransitionTime": ts(when),
        "reason": reason,
        "message": message,
    }


def job(
    *,
    name: str = JOB_NAME,
    suspend: bool = False,
    conditions: Sequence[Obj] = (),
    start_time: datetime | None = T0,
    completion_time: datetime | None = None,
    active: int = 0,
    failed: int = 0,
    succeeded: int = 0,
    backoff_limit: int = 0,
    active_deadline_seconds: int | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    created: datetime = T0 - timedelta(seconds=5),
) -> Obj:
    spec: Obj = {
        "parallelism": 1,
        "completions": 1,
        "backoffLimit": backoff_limit,
        "completionMode": "NonIndexed",
        "suspend": suspend,
        "podReplacementPolicy": "TerminatingOrFailed",
        "manualSelector": False,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": JOB_UID}},
        "template": {
            "metadata": {"labels": {"batch.kubernetes.io/job-name": name}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "runner", "image": "zenml-runner:abc"}],
            },
        },
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    status: Obj = {"active": active, "failed": failed, "succeeded": succeeded, "ready": 0}
    if start_time is not None and not suspend:
        status["startTime"] = ts(start_time)
    if completion_time is not None:
        status["completionTime"] = ts(completion_time)
    if conditions:
        status["conditions"] = list(conditions)
    if suspend:
        status["conditions"] = [
            {
                "type": "Suspended",
                "status": "True",
                "reason": "JobSuspended",
                "message": "Job suspended",
                "lastProbeTime": ts(created),
                "lastTransitionTime": ts(created),
            },
            *status.get("conditions", []),
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": JOB_UID,
            "resourceVersion": "4711",
            "generation": 1,
            "creationTimestamp": ts(created),
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
        "status": status,
    }


# -- Pods ------------------------------------------------------------------------------


def waiting(name: str, reason: str, message: str = "", *, image: str = "zenml-runner:abc") -> Obj:
    state: Obj = {"reason": reason}
    if message:
        state["message"] = message
    return _status(name, image, {"waiting": state})


def running(name: str = "runner", *, since: datetime = T0, image: str = "zenml-runner:abc") -> Obj:
    status = _status(name, image, {"running": {"startedAt": ts(since)}})
    status["ready"] = status["started"] = True
    return status


def terminated(
    name: str = "runner",
    exit_code: int = 1,
    reason: str = "Error",
    *,
    started: datetime = T0,
    finished: datetime = T0 + timedelta(seconds=30),
    message: str = "",
    image: str = "zenml-runner:abc",
) -> Obj:
    state: Obj = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": ts(started),
        "finishedAt": ts(finished),
        "containerID": "containerd://" + "f" * 64,
    }
    if message:
        state["message"] = message
    return _status(name, image, {"terminated": state})


def crash_looping(name: str, last_exit_code: int, *, restarts: int = 4) -> Obj:
    status = waiting(
        name,
        "CrashLoopBackOff",
        f"back-off 1m20s restarting failed container={name} pod=x_{NAMESPACE}(uid)",
    )
    status["restartCount"] = restarts
    status["lastState"] = {
        "terminated": {
            "exitCode": last_exit_code,
            "reason": "Error",
            "startedAt": ts(T0),
            "finishedAt": ts(T0 + timedelta(seconds=2)),
        }
    }
    return status


def _status(name: str, image: str, state: Obj) -> Obj:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    }


def pod_condition(
    kind: str, status: str = "True", reason: str = "", message: str = "", *, when: datetime = T0
) -> Obj:
    condition: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": ts(when),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def unschedulable(message: str, *, since: datetime = T0) -> Obj:
    return pod_condition("PodScheduled", "False", "Unschedulable", message, when=since)


def pod(
    suffix: str = "x7k2p",
    *,
    phase: str = "Pending",
    containers: Sequence[Obj] = (),
    init_containers: Sequence[Obj] = (),
    conditions: Sequence[Obj] | None = None,
    created: datetime = T0,
    reason: str | None = None,
    message: str | None = None,
    memory_limit: str | None = "700Mi",
    job_name: str = JOB_NAME,
    deleting: bool = False,
) -> Obj:
    name = f"{job_name}-{suffix}"
    if conditions is None:
        conditions = [pod_condition("PodScheduled", when=created)]
    resources: Obj = {"requests": {"cpu": "100m", "memory": "256Mi"}}
    if memory_limit is not None:
        resources["limits"] = {"memory": memory_limit}
    status: Obj = {"phase": phase, "conditions": list(conditions), "qosClass": "Burstable"}
    if phase != "Pending" or containers:
        status["startTime"] = ts(created)
    if containers:
        status["containerStatuses"] = list(containers)
    if init_containers:
        status["initContainerStatuses"] = list(init_containers)
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    metadata: Obj = {
        "name": name,
        "generateName": f"{job_name}-",
        "namespace": NAMESPACE,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        "creationTimestamp": ts(created),
        "labels": {
            "batch.kubernetes.io/controller-uid": JOB_UID,
            "batch.kubernetes.io/job-name": job_name,
            "controller-uid": JOB_UID,
            "job-name": job_name,
        },
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": job_name,
                "uid": JOB_UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "finalizers": ["batch.kubernetes.io/job-tracking"],
    }
    if deleting:
        metadata["deletionTimestamp"] = ts(created + timedelta(seconds=60))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "zenml-runner",
            "containers": [
                {
                    "name": "runner",
                    "image": "zenml-runner:abc",
                    "envFrom": [{"secretRef": {"name": f"{job_name}-env"}}],
                    "resources": resources,
                }
            ],
        },
        "status": status,
    }


# -- Events ----------------------------------------------------------------------------


def event(
    reason: str,
    message: str,
    *,
    kind: str = "Job",
    name: str = JOB_NAME,
    event_type: str = "Warning",
    first: datetime = T0,
    last: datetime | None = None,
    count: int = 1,
    component: str = "job-controller",
) -> Obj:
    """A core/v1 Event as the job controller or the kubelet records it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{abs(hash((reason, message, first))):x}",
            "namespace": NAMESPACE,
            "creationTimestamp": ts(first),
        },
        "involvedObject": {
            "apiVersion": "batch/v1" if kind == "Job" else "v1",
            "kind": kind,
            "name": name,
            "namespace": NAMESPACE,
            "uid": JOB_UID,
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": ts(first),
        "lastTimestamp": ts(last or first),
        "count": count,
        "type": event_type,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": "",
    }
