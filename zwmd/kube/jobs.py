"""The Kubernetes objects of a runner workload: its Job and the Secret with its environment.

Design notes:

- Every Job is created with ``spec.suspend: true``; the queue un-suspends it when a slot
  is free. The queue therefore survives restarts and is visible with kubectl.
- The run's environment (it holds ``ZENML_STORE_API_TOKEN``) never enters the Job: it
  goes into a Secret that the Job owns (``ownerReferences``, garbage-collected with it)
  and reaches the container through ``envFrom``. The Secret is created after the Job,
  which is suspended until then, so no pod ever starts without its environment.
- ``ttlSecondsAfterFinished`` is *not* set at creation: the log pipeline sets it once the
  log store holds the final lines, so the garbage collector never races the logs.
- Everything the operator configures (resources, node selector, tolerations, backoff
  limit, pod failure policy, service account) arrives as a :class:`PodPolicy` already
  validated by :mod:`zwmd.settings`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zwmd.kube import naming
from zwmd.kube.client import Obj

RUNNER_CONTAINER = "runner"


@dataclass(frozen=True)
class PodPolicy:
    """What the operator decides about every runner pod."""

    service_account: str
    resources: Mapping[str, Any] | None = None
    node_selector: Mapping[str, str] | None = None
    tolerations: Sequence[Mapping[str, Any]] | None = None
    backoff_limit: int | None = None
    pod_failure_policy: Mapping[str, Any] | None = None
    image_pull_secrets: Sequence[str] = field(default_factory=tuple)
    #: the Pod Security Standards level runner pods pass: "restricted" (non-root), or
    #: "baseline" (for images that must run as root)
    pod_security: str = "restricted"


def runner_security(level: str) -> tuple[Obj, Obj]:
    """(pod, container) security contexts that pass Pod Security ``level``.

    Both levels forbid privilege escalation, drop every capability and use the runtime's
    default seccomp profile; "restricted" also requires a non-root user, which an image
    whose USER is root cannot satisfy (the kubelet then refuses to start its container).
    """
    pod: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}
    if level == "restricted":
        pod["runAsNonRoot"] = True
    container: Obj = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def workload_labels(workload_id: str, kind: str) -> dict[str, str]:
    return {
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_WORKLOAD_ID: workload_id,
        naming.LABEL_KIND: kind,
    }


def runner_job(
    *,
    name: str,
    workload_id: str,
    image: str,
    command: Sequence[str],
    arguments: Sequence[str],
    timeout_seconds: int,
    annotations: Mapping[str, str],
    policy: PodPolicy,
) -> Obj:
    """A suspended runner Job; its environment comes from :func:`environment_secret`."""
    labels = workload_labels(workload_id, naming.KIND_RUNNER)
    container: Obj = {
        "name": RUNNER_CONTAINER,
        "image": image,
        "envFrom": [{"secretRef": {"name": naming.secret_name(name)}}],
    }
    if command:
        container["command"] = list(command)
    if arguments:
        container["args"] = list(arguments)
    if policy.resources:
        container["resources"] = dict(policy.resources)
    pod_security, container["securityContext"] = runner_security(policy.pod_security)
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "serviceAccountName": policy.service_account,
        "securityContext": pod_security,
        "containers": [container],
    }
    if policy.node_selector:
        pod_spec["nodeSelector"] = dict(policy.node_selector)
    if policy.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in policy.tolerations]
    if policy.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in policy.image_pull_secrets]
    spec: Obj = {
        "suspend": True,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if policy.backoff_limit is not None:
        spec["backoffLimit"] = policy.backoff_limit
    if policy.pod_failure_policy:
        spec["podFailurePolicy"] = dict(policy.pod_failure_policy)
    if timeout_seconds > 0:
        spec["activeDeadlineSeconds"] = timeout_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": dict(annotations)},
        "spec": spec,
    }


def owner_reference(job: Obj) -> Obj:
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def environment_secret(job: Obj, environment: Mapping[str, str]) -> Obj:
    """The Secret that carries a runner's environment, owned by (and deleted with) its Job."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": naming.secret_name(meta["name"]),
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [owner_reference(job)],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in environment.items()},
    }
