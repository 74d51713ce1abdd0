"""What fields each served kind has: the one table behind OpenAPI and strict decoding.

Responsibility: name, for every kind localkube serves (:data:`~zwmd.localkube.resources.
RESOURCES`), its fields and their types, under upstream's schema names
(``io.k8s.api.batch.v1.Job``), and find the fields of a request body that no such
type declares (:func:`unknown_fields`), as the apiserver's strict JSON decoder does.

Design notes:

* **Written from localkube's own knowledge**, not generated from upstream's OpenAPI:
  field names and types are facts of the API; the few descriptions are our own words.
  The ``kubernetes-validate`` schemas (a test dependency) check in the tests that every
  type spelled out here has exactly the newest modelled release's field names, so a
  field a client sends is never called unknown. (``hostnameOverride`` and
  ``restartPolicyRules``, new in 1.34 behind alpha gates, are taken as known to every
  release, like every field outside :data:`~zwmd.localkube.versions.JOB_FIELDS`.)
* **Closed and open types.** A type in :data:`TYPES` is *closed*: a body field it does
  not list is unknown. A type referred to but not spelled out (``Affinity``,
  ``SecurityContext``, ``PodStatus``...) is *open*: served as an object that keeps
  unknown fields, and never searched for unknown ones. Only the parts clients write by
  hand are closed: the kinds' top levels, ObjectMeta, JobSpec, the pod template, PodSpec
  and Container.
* **Field type notation**: ``string``, ``integer``, ``boolean``, ``map`` (string to
  string), ``object`` (anything), ``[T]`` (a list of T), or a type name.
* **Unknown-field paths** are upstream's: dotted, with list indexes
  (``spec.template.spec.containers[0].imagePullPolice``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["KINDS", "TYPES", "drop_unknown_fields", "full_name"]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PREFIXES = {
    "Job": "io.k8s.api.batch.v1.",
    "JobSpec": "io.k8s.api.batch.v1.",
    "JobStatus": "io.k8s.api.batch.v1.",
    "PodFailurePolicy": "io.k8s.api.batch.v1.",
    "SuccessPolicy": "io.k8s.api.batch.v1.",
    "Lease": "io.k8s.api.coordination.v1.",
    "LeaseSpec": "io.k8s.api.coordination.v1.",
    "Role": "io.k8s.api.rbac.v1.",
    "RoleBinding": "io.k8s.api.rbac.v1.",
    "ClusterRole": "io.k8s.api.rbac.v1.",
    "ClusterRoleBinding": "io.k8s.api.rbac.v1.",
    "RoleRef": "io.k8s.api.rbac.v1.",
    "PolicyRule": "io.k8s.api.rbac.v1.",
    "Subject": "io.k8s.api.rbac.v1.",
    "AggregationRule": "io.k8s.api.rbac.v1.",
    "ObjectMeta": _META,
    "LabelSelector": _META,
    "Time": _META,
    "MicroTime": _META,
    "OwnerReference": _META,
    "ManagedFieldsEntry": _META,
}

Field = str | tuple[str, str]  # a type, or (type, description)
_OBJECT = {"apiVersion": "string", "kind": "string", "metadata": "ObjectMeta"}

#: closed types: (description, fields)
TYPES: dict[str, tuple[str, dict[str, Field]]] = {
    "Job": (
        "A Job runs pods until a given number of them succeed.",
        {**_OBJECT, "spec": "JobSpec", "status": "JobStatus"},
    ),
    "JobSpec": (
        "What a Job runs and when it is done.",
        {
            "activeDeadlineSeconds": ("integer", "Seconds the Job may run before it fails."),
            "backoffLimit": ("integer", "Pod failures tolerated before the Job fails."),
            "backoffLimitPerIndex": ("integer", "Pod failures tolerated per completion index."),
            "completionMode": ("string", "NonIndexed or Indexed."),
            "completions": ("integer", "Successful pods that complete the Job."),
            "managedBy": ("string", "The controller that reconciles the Job."),
            "manualSelector": ("boolean", "Whether the selector is set by the client."),
            "maxFailedIndexes": ("integer", "Failed indexes tolerated before the Job fails."),
            "parallelism": ("integer", "Pods that may run at once."),
            "podFailurePolicy": ("PodFailurePolicy", "Rules on pod failures."),
            "podReplacementPolicy": ("string", "When a replacement pod is created."),
            "selector": ("LabelSelector", "The labels of the Job's pods."),
            "successPolicy": ("SuccessPolicy", "When an Indexed Job succeeds early."),
            "suspend": ("boolean", "Whether the Job's pods are held back."),
            "template": ("PodTemplateSpec", "The pods the Job creates."),
            "ttlSecondsAfterFinished": ("integer", "Seconds after which a finished Job goes."),
        },
    ),
    "PodTemplateSpec": (
        "The pods a controller creates.",
        {"metadata": "ObjectMeta", "spec": "PodSpec"},
    ),
    "ObjectMeta": (
        "Name, namespace, labels and bookkeeping of every object.",
        {
            "annotations": "map",
            "creationTimestamp": "Time",
            "deletionGracePeriodSeconds": "integer",
            "deletionTimestamp": "Time",
            "finalizers": "[string]",
            "generateName": "string",
            "generation": "integer",
            "labels": "map",
            "managedFields": "[ManagedFieldsEntry]",
            "name": "string",
            "namespace": "string",
            "ownerReferences": "[OwnerReference]",
            "resourceVersion": "string",
            "selfLink": "string",
            "uid": "string",
        },
    ),
    "Pod": (
        "A set of containers run together on one node.",
        {**_OBJECT, "spec": "PodSpec", "status": "PodStatus"},
    ),
    "PodSpec": (
        "The containers of a pod and how they run.",
        {
            "activeDeadlineSeconds": "integer",
            "affinity": "Affinity",
            "automountServiceAccountToken": "boolean",
            "containers": ("[Container]", "The pod's containers."),
            "dnsConfig": "PodDNSConfig",
            "dnsPolicy": "string",
            "enableServiceLinks": "boolean",
            "ephemeralContainers": "[EphemeralContainer]",
            "hostAliases": "[HostAlias]",
            "hostIPC": "boolean",
            "hostNetwork": "boolean",
            "hostPID": "boolean",
            "hostUsers": "boolean",
            "hostname": "string",
            "hostnameOverride": "string",
            "imagePullSecrets": "[LocalObjectReference]",
            "initContainers": "[Container]",
            "nodeName": "string",
            "nodeSelector": "map",
            "os": "PodOS",
            "overhead": "map",
            "preemptionPolicy": "string",
            "priority": "integer",
            "priorityClassName": "string",
            "readinessGates": "[PodReadinessGate]",
            "resourceClaims": "[PodResourceClaim]",
            "resources": "ResourceRequirements",
            "restartPolicy": ("string", "Always, OnFailure or Never."),
            "runtimeClassName": "string",
            "schedulerName": "string",
            "schedulingGates": "[PodSchedulingGate]",
            "securityContext": "PodSecurityContext",
            "serviceAccount": "string",
            "serviceAccountName": "string",
            "setHostnameAsFQDN": "boolean",
            "shareProcessNamespace": "boolean",
            "subdomain": "string",
            "terminationGracePeriodSeconds": "integer",
            "tolerations": "[Toleration]",
            "topologySpreadConstraints": "[TopologySpreadConstraint]",
            "volumes": "[Volume]",
        },
    ),
    "Container": (
        "One container of a pod.",
        {
            "args": "[string]",
            "command": "[string]",
            "env": "[EnvVar]",
            "envFrom": "[EnvFromSource]",
            "image": "string",
            "imagePullPolicy": "string",
            "lifecycle": "Lifecycle",
            "livenessProbe": "Probe",
            "name": "string",
            "ports": "[ContainerPort]",
            "readinessProbe": "Probe",
            "resizePolicy": "[ContainerResizePolicy]",
            "resources": "ResourceRequirements",
            "restartPolicy": "string",
            "restartPolicyRules": "[ContainerRestartRule]",
            "securityContext": "SecurityContext",
            "startupProbe": "Probe",
            "stdin": "boolean",
            "stdinOnce": "boolean",
            "terminationMessagePath": "string",
            "terminationMessagePolicy": "string",
            "tty": "boolean",
            "volumeDevices": "[VolumeDevice]",
            "volumeMounts": "[VolumeMount]",
            "workingDir": "string",
        },
    ),
    "Secret": (
        "Confidential data, base64-encoded.",
        {
            **_OBJECT,
            "data": "map",
            "immutable": "boolean",
            "stringData": "map",
            "type": "string",
        },
    ),
    "ConfigMap": (
        "Configuration data.",
        {**_OBJECT, "binaryData": "map", "data": "map", "immutable": "boolean"},
    ),
    "ServiceAccount": (
        "An identity for processes in pods.",
        {
            **_OBJECT,
            "automountServiceAccountToken": "boolean",
            "imagePullSecrets": "[LocalObjectReference]",
            "secrets": "[ObjectReference]",
        },
    ),
    "Event": (
        "A report of something that happened to an object.",
        {
            **_OBJECT,
            "action": "string",
            "count": "integer",
            "eventTime": "MicroTime",
            "firstTimestamp": "Time",
            "involvedObject": "ObjectReference",
            "lastTimestamp": "Time",
            "message": "string",
            "reason": "string",
            "related": "ObjectReference",
            "reportingComponent": "string",
            "reportingInstance": "string",
            "series": "EventSeries",
            "source": "EventSource",
            "type": "string",
        },
    ),
    "Namespace": (
        "A scope for names.",
        {**_OBJECT, "spec": "NamespaceSpec", "status": "NamespaceStatus"},
    ),
    "Lease": ("A lock held for a while.", {**_OBJECT, "spec": "LeaseSpec"}),
    "Role": ("Permissions in one namespace.", {**_OBJECT, "rules": "[PolicyRule]"}),
    "RoleBinding": (
        "Grants a Role or ClusterRole in one namespace.",
        {**_OBJECT, "roleRef": "RoleRef", "subjects": "[Subject]"},
    ),
    "ClusterRole": (
        "Permissions across the cluster.",
        {**_OBJECT, "aggregationRule": "AggregationRule", "rules": "[PolicyRule]"},
    ),
    "ClusterRoleBinding": (
        "Grants a ClusterRole across the cluster.",
        {**_OBJECT, "roleRef": "RoleRef", "subjects": "[Subject]"},
    ),
}

#: served kind → its type in TYPES (the same name)
KINDS = frozenset(
    {
        "Job",
        "Pod",
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "Event",
        "Namespace",
        "Lease",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    }
)

_SCALARS = frozenset({"string", "integer", "boolean", "map", "object"})


def full_name(short: str) -> str:
    """Upstream's schema name of a type (``Job`` → ``io.k8s.api.batch.v1.Job``)."""
    return _PREFIXES.get(short, "io.k8s.api.core.v1.") + short


def field_type(field: Field) -> str:
    return field if isinstance(field, str) else field[0]


def drop_unknown_fields(kind: str, obj: Any) -> list[str]:
    """Remove, in place, the fields of ``obj`` that kind ``kind``'s types do not declare
    (as the decoder drops them); their paths, in the body's order."""
    found: list[str] = []
    if kind in KINDS:
        _walk(kind, obj, "", found)
    return found


def _walk(type_name: str, value: Any, path: str, found: list[str]) -> None:
    if type_name.startswith("["):
        if isinstance(value, list):
            for index, item in enumerate(value):
                _walk(type_name[1:-1], item, f"{path}[{index}]", found)
        return
    if type_name in _SCALARS or type_name not in TYPES or not isinstance(value, dict):
        return
    fields = TYPES[type_name][1]
    for key, item in list(value.items()):
        here = f"{path}.{key}" if path else key
        if key not in fields:
            found.append(here)
            del value[key]
            continue
        _walk(field_type(fields[key]), item, here, found)
