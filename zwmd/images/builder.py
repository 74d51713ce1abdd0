"""The Kubernetes objects of one image build: the builder Job, its Dockerfile, its push credentials.

Design notes:

- One builder Job per full image name (:func:`zwmd.kube.naming.builder_job_name`): the
  name is a hash of the image, so identical requests from one daemon or several meet
  at the same name, and a 409 on create means "attach to the build that runs".
- The Job is created suspended; the Dockerfile (a ConfigMap) and the push credentials
  (a ``kubernetes.io/dockerconfigjson`` Secret) are created next, owned by the Job
  (garbage-collected with it), and only then is the Job un-suspended: no builder pod
  ever starts without its inputs.
- What runs is a plugin's choice: the ``zwmd_builder_job`` hook returns the pod spec
  pieces (``containers``, ``volumes``, ``initContainers``, even ``serviceAccountName``)
  for a :class:`BuildPlan`. The builtin answer is :func:`kaniko_pod`: kaniko
  (``ZWMD_BUILDER_IMAGE``, default Chainguard's maintained build) with the Dockerfile
  mounted at ``/workspace`` and the Secret as ``/kaniko/.docker/config.json``, then
  ``ZWMD_BUILDER_ARGS``. Everything else (labels, deadline, backoff, node placement,
  TTL) is the core's.
- The build's timeout is the Job's ``activeDeadlineSeconds``; Kubernetes enforces it
  even when no daemon runs.
- The Job carries the build's record: label ``zwmd.io/workload-id`` (the first
  requester: the log pipeline files the builder's log there), annotations
  ``zwmd.io/image`` and ``zwmd.io/attempt``, and one ``waiter.zwmd.io/<workload id>``
  annotation per workload waiting for it, so a restarted daemon knows whom to tell.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zwmd.images.credentials import dockerconfigjson
from zwmd.kube import naming
from zwmd.kube.client import Obj
from zwmd.kube.jobs import PodPolicy, owner_reference, workload_labels

__all__ = [
    "BUILDER_CONTAINER",
    "DOCKERFILE_KEY",
    "WAITER_PREFIX",
    "BuildPlan",
    "builder_job",
    "context_configmap",
    "kaniko_pod",
    "push_secret",
    "waiter_annotation",
    "waiters_of",
]

BUILDER_CONTAINER = "builder"
DOCKERFILE_KEY = "Dockerfile"
WAITER_PREFIX = f"waiter.{naming.DOMAIN}/"
WORKSPACE = "/workspace"
DOCKER_CONFIG_DIR = "/kaniko/.docker"


@dataclass(frozen=True)
class BuildPlan:
    """One image to build: what a builder needs to know (given to ``zwmd_builder_job``)."""

    image: str  # the full destination, registry/name:tag
    dockerfile: str
    job_name: str
    registry: str
    insecure: bool = False
    builder_image: str = ""
    builder_args: tuple[str, ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: int = 0

    @property
    def configmap_name(self) -> str:
        """The ConfigMap with the Dockerfile (key :data:`DOCKERFILE_KEY`)."""
        return f"{self.job_name}-context"

    @property
    def secret_name(self) -> str:
        """The ``kubernetes.io/dockerconfigjson`` Secret with the push credentials."""
        return f"{self.job_name}-push"


def kaniko_pod(plan: BuildPlan) -> Obj:
    """The builtin builder: kaniko's executor, reading the Dockerfile, pushing ``plan.image``."""
    args = [
        f"--dockerfile={WORKSPACE}/{DOCKERFILE_KEY}",
        f"--context=dir://{WORKSPACE}",
        f"--destination={plan.image}",
    ]
    if plan.insecure:
        args += ["--insecure", f"--insecure-registry={plan.registry}"]
    args += list(plan.builder_args)
    container: Obj = {
        "name": BUILDER_CONTAINER,
        "image": plan.builder_image,
        "args": args,
        "env": [{"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR}],
        "volumeMounts": [
            {"name": "context", "mountPath": WORKSPACE, "readOnly": True},
            {"name": "docker-config", "mountPath": DOCKER_CONFIG_DIR, "readOnly": True},
        ],
    }
    if plan.resources:
        container["resources"] = dict(plan.resources)
    return {
        "containers": [container],
        "volumes": [
            {"name": "context", "configMap": {"name": plan.configmap_name}},
            {
                "name": "docker-config",
                "secret": {
                    "secretName": plan.secret_name,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            },
        ],
    }


def waiter_annotation(workload_id: str) -> str:
    return f"{WAITER_PREFIX}{workload_id}"


def waiters_of(job: Mapping[str, Any]) -> dict[str, int]:
    """Workload id → attempt of every workload waiting for this builder Job."""
    notes = (job.get("metadata") or {}).get("annotations") or {}
    found: dict[str, int] = {}
    for key, value in notes.items():
        if key.startswith(WAITER_PREFIX):
            try:
                found[key[len(WAITER_PREFIX) :]] = int(value or 1)
            except ValueError:
                found[key[len(WAITER_PREFIX) :]] = 1
    return found


def builder_job(
    plan: BuildPlan,
    pod: Mapping[str, Any],
    *,
    workload_id: str,
    attempt: int,
    policy: PodPolicy,
    annotations: Mapping[str, str] | None = None,
    ttl_seconds_after_finished: int | None = None,
) -> Obj:
    """The suspended builder Job for ``plan``, running the pod pieces ``pod``."""
    labels = workload_labels(workload_id, naming.KIND_BUILDER)
    pod_spec: Obj = {"restartPolicy": "Never", "serviceAccountName": policy.service_account}
    if policy.node_selector:
        pod_spec["nodeSelector"] = dict(policy.node_selector)
    if policy.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in policy.tolerations]
    pod_spec.update(pod)
    spec: Obj = {
        "suspend": True,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if policy.backoff_limit is not None:
        spec["backoffLimit"] = policy.backoff_limit
    if policy.pod_failure_policy:
        spec["podFailurePolicy"] = dict(policy.pod_failure_policy)
    if plan.timeout_seconds > 0:
        spec["activeDeadlineSeconds"] = plan.timeout_seconds
    if ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    notes = {
        naming.ANN_IMAGE: plan.image,
        naming.ANN_ATTEMPT: str(attempt),
        waiter_annotation(workload_id): str(attempt),
        **(annotations or {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": plan.job_name, "labels": labels, "annotations": notes},
        "spec": spec,
    }


def _owned(job: Obj, name: str) -> Obj:
    meta = job["metadata"]
    return {
        "name": name,
        "labels": dict(meta.get("labels") or {}),
        "ownerReferences": [owner_reference(job)],
    }


def context_configmap(job: Obj, plan: BuildPlan) -> Obj:
    """The Dockerfile, owned by the builder Job."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _owned(job, plan.configmap_name),
        "data": {DOCKERFILE_KEY: plan.dockerfile},
    }


def push_secret(job: Obj, plan: BuildPlan, auths: Mapping[str, Mapping[str, Any]]) -> Obj:
    """The push credentials (possibly none: ``{"auths": {}}``), owned by the builder Job."""
    return dockerconfigjson_secret(_owned(job, plan.secret_name), auths)


def dockerconfigjson_secret(
    metadata: Mapping[str, Any], auths: Mapping[str, Mapping[str, Any]]
) -> Obj:
    body = dockerconfigjson(auths)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": dict(metadata),
        "data": {".dockerconfigjson": base64.b64encode(body.encode()).decode()},
    }


def pull_secret(name: str, auths: Mapping[str, Mapping[str, Any]]) -> Obj:
    """A shared pull Secret for runner pods (``imagePullSecrets``), managed by zwmd."""
    labels = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
    return dockerconfigjson_secret({"name": name, "labels": labels}, auths)


def builder_pod_pieces(answer: object) -> Obj:
    """Check a ``zwmd_builder_job`` answer: a mapping with a non-empty ``containers`` list."""
    if not isinstance(answer, Mapping):
        raise TypeError(f"zwmd_builder_job returned {type(answer).__name__}, not a mapping")
    containers = answer.get("containers")
    if not isinstance(containers, Sequence) or not containers:
        raise TypeError("zwmd_builder_job returned no containers")
    return dict(answer)
