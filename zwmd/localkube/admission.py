"""What the apiserver does to an object before storing it: kinds, defaults, validation.

Design notes:

* The served resources are :data:`zwmd.localkube.resources.RESOURCES` (re-exported).
* :func:`default` fills in what a real server's defaulting sets and controllers rely on:
  a Job's ``backoffLimit``/``completions``/``parallelism``, its ``controller-uid``
  selector and template labels (as the release of :mod:`zwmd.localkube.versions` names
  them), and (``SetDefaults_Job``, where the release serves the field)
  ``podReplacementPolicy: Failed`` with a pod failure policy, whose ``onPodConditions``
  get ``status: "True"``; a
  Pod's ``restartPolicy``, ``serviceAccountName`` and
  ``Pending`` phase; a Namespace's ``Active`` phase and ``kubernetes.io/metadata.name``.
* :func:`validate` rejects, with 422 Invalid and per-field causes, what a real server
  would: names that are not DNS-1123, a Job without a template or containers, a Job
  template whose ``restartPolicy`` is ``Always``, a Pod without containers, a Secret or
  ConfigMap whose data (decoded values) pass 1 MiB (``MaxSecretSize``) or whose keys are
  not ``[-._a-zA-Z0-9]+`` of at most 253 characters (``IsConfigMapKey``); and the rules
  of :mod:`zwmd.localkube.fieldrules` (labels, annotations, Secret data that is not
  base64, a Job's counts, deadlines and pod failure policy).
  :func:`validate_update` refuses changes to immutable fields: a Job's selector and
  template (only labels, annotations and scheduling directives of a suspended Job may
  change), a Pod's spec (all but images, deadlines and tolerations), so a client that
  would fail on a real cluster fails here too.
"""

from __future__ import annotations

import re
from typing import Any

from zwmd.localkube import fieldrules
from zwmd.localkube.errors import invalid
from zwmd.localkube.resources import RBAC_GROUP, RESOURCES, ResourceType
from zwmd.localkube.versions import NEWEST, KubernetesVersion

__all__ = ["RESOURCES", "ResourceType", "default", "validate", "validate_update"]

JsonDict = dict[str, Any]


_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
#: A Secret's or ConfigMap's data, in bytes (upstream ``MaxSecretSize``, for both).
MAX_DATA_BYTES = 1024 * 1024
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_KEY_RULE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
    "(regex used for validation is '[-._a-zA-Z0-9]+')"
)
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)


def _name_causes(resource: str, name: str) -> list[tuple[str, str, str]]:
    if RESOURCES[resource].group == RBAC_GROUP:  # a path segment (``system:discovery``)
        if name in (".", "..") or "/" in name or "%" in name:
            rule = "may not be '.' or '..', and may not contain '/' or '%'"
            return [("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {rule}')]
    elif resource in ("namespaces", "jobs"):
        if len(name) > 63 or not _LABEL.match(name):
            return [
                (
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": {_LABEL_NAME_RULE}',
                )
            ]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            ("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {_SUBDOMAIN_RULE}')
        ]
    return []


def _pod_spec_causes(spec: Any, prefix: str) -> list[tuple[str, str, str]]:
    if not isinstance(spec, dict):
        return [(prefix, "FieldValueRequired", "Required value")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [(f"{prefix}.containers", "FieldValueRequired", "Required value")]
    causes = []
    for index, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name"):
            causes.append(
                (f"{prefix}.containers[{index}].name", "FieldValueRequired", "Required value")
            )
        elif not container.get("image"):
            causes.append(
                (f"{prefix}.containers[{index}].image", "FieldValueRequired", "Required value")
            )
    return causes


def _data_causes(resource: str, obj: JsonDict) -> list[tuple[str, str, str]]:
    """A Secret's or ConfigMap's keys and the total size of its values, as upstream counts.

    A Secret's ``stringData`` is merged into ``data`` before validation upstream, so its
    values count too; a ConfigMap's total is reported on the whole object (field ``""``).
    """
    causes = []
    sizes = 0
    binary = "data" if resource == "secrets" else "binaryData"
    sections = [(binary, True), ("stringData" if resource == "secrets" else "data", False)]
    for section, encoded in sections:
        values = obj.get(section) or {}
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (
                len(key) > 253
                or not _CONFIG_KEY.fullmatch(key)
                or key == "."
                or key.startswith("..")
            ):
                field = f"{'data' if resource == 'secrets' else section}[{key}]"
                causes.append((field, "FieldValueInvalid", f'Invalid value: "{key}": {_KEY_RULE}'))
            text = str(value)
            sizes += len(text) * 3 // 4 - text.count("=") if encoded else len(text.encode())
    if sizes > MAX_DATA_BYTES:
        field = "data" if resource == "secrets" else ""
        causes.append(
            (field, "FieldValueTooLong", f"Too long: must have at most {MAX_DATA_BYTES} bytes")
        )
    return causes


def _rule_causes(rules: Any) -> list[tuple[str, str, str]]:
    causes = []
    for i, rule in enumerate(rules or ()):
        if not isinstance(rule, dict) or not rule.get("verbs"):
            causes.append((f"rules[{i}].verbs", "FieldValueRequired", "Required value"))
        elif rule.get("nonResourceURLs") and rule.get("resources"):
            message = (
                "Invalid value: rules cannot apply to both regular resources and non-resource URLs"
            )
            causes.append((f"rules[{i}].nonResourceURLs", "FieldValueInvalid", message))
    return causes


def validate(resource: str, obj: JsonDict) -> None:
    """Raise 422 Invalid for an object a real apiserver would reject."""
    kind = RESOURCES[resource].kind
    name = obj["metadata"].get("name", "")
    causes = _name_causes(resource, name) + fieldrules.meta_causes(obj.get("metadata"))
    if resource == "jobs":
        causes += fieldrules.job_causes(obj)
        template = (obj.get("spec") or {}).get("template")
        if not isinstance(template, dict):
            causes.append(("spec.template", "FieldValueRequired", "Required value"))
        else:
            pod_spec = template.get("spec")
            causes += _pod_spec_causes(pod_spec, "spec.template.spec")
            policy = (pod_spec or {}).get("restartPolicy")
            if policy not in ("Never", "OnFailure"):
                causes.append(
                    (
                        "spec.template.spec.restartPolicy",
                        "FieldValueNotSupported" if policy else "FieldValueRequired",
                        f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'
                        if policy
                        else "Required value",
                    )
                )
    elif resource == "pods":
        causes += _pod_spec_causes(obj.get("spec"), "spec")
        causes += fieldrules.pod_deadline_causes(obj.get("spec"), "spec")
    elif resource in ("secrets", "configmaps"):
        decoding = fieldrules.data_decoding_error(resource, obj)
        if decoding is not None:
            raise decoding
        causes += _data_causes(resource, obj)
    elif resource in ("roles", "clusterroles"):
        causes += _rule_causes(obj.get("rules"))
    elif resource in ("rolebindings", "clusterrolebindings"):
        ref = obj.get("roleRef") or {}
        allowed = ("Role", "ClusterRole") if resource == "rolebindings" else ("ClusterRole",)
        if ref.get("kind") not in allowed:
            wanted = ", ".join(f'"{k}"' for k in allowed)
            causes.append(
                (
                    "roleRef.kind",
                    "FieldValueNotSupported",
                    f"Unsupported value: supported: {wanted}",
                )
            )
        if not ref.get("name"):
            causes.append(("roleRef.name", "FieldValueRequired", "Required value"))
    elif resource == "leases":
        duration = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            causes.append(
                (
                    "spec.leaseDurationSeconds",
                    "FieldValueInvalid",
                    f"Invalid value: {duration}: must be greater than 0",
                )
            )
    if causes:
        raise invalid(kind, resource, name, causes)


_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "affinity", "schedulingGates")
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _without(spec: Any, keys: tuple[str, ...]) -> Any:
    return {k: v for k, v in spec.items() if k not in keys} if isinstance(spec, dict) else spec


def _immutable_template_view(spec: JsonDict, suspended: bool) -> Any:
    """The part of a Job's template that may not change (less when suspended)."""
    template = spec.get("template") or {}
    if not suspended:
        return template
    metadata = _without(template.get("metadata") or {}, ("labels", "annotations"))
    return {"metadata": metadata, "spec": _without(template.get("spec"), _SCHEDULING_DIRECTIVES)}


def _pod_view(spec: Any) -> Any:
    view = _without(spec, _POD_MUTABLE)
    if isinstance(view, dict):
        for field in ("containers", "initContainers"):
            if isinstance(view.get(field), list):
                view[field] = [_without(c, ("image",)) for c in view[field]]
    return view


def validate_update(resource: str, old: JsonDict, new: JsonDict) -> None:
    """Raise 422 for changes a real apiserver refuses: immutable Job and Pod fields."""
    name = new["metadata"]["name"]
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    causes: list[tuple[str, str, str]] = []
    if resource == "jobs":
        for field in ("selector", "completionMode", "podFailurePolicy"):
            if old_spec.get(field) != new_spec.get(field):
                causes.append((f"spec.{field}", "FieldValueInvalid", "field is immutable"))
        suspended = bool(old_spec.get("suspend")) and bool(new_spec.get("suspend"))
        if _immutable_template_view(old_spec, suspended) != _immutable_template_view(
            new_spec, suspended
        ):
            causes.append(("spec.template", "FieldValueInvalid", "field is immutable"))
    elif resource in ("rolebindings", "clusterrolebindings"):
        if old.get("roleRef") != new.get("roleRef"):
            causes.append(("roleRef", "FieldValueInvalid", "Invalid value: cannot change roleRef"))
    elif resource == "pods" and _pod_view(old_spec) != _pod_view(
        # binding a pod to a node (the scheduler's one write) sets nodeName once
        new_spec if old_spec.get("nodeName") else _without(new_spec, ("nodeName",))
    ):
        causes.append(
            (
                "spec",
                "FieldValueForbidden",
                "Forbidden: pod updates may not change fields other than "
                "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                "tolerations), `spec.terminationGracePeriodSeconds`",
            )
        )
    if causes:
        raise invalid(RESOURCES[resource].kind, resource, name, causes)


def default(resource: str, obj: JsonDict, version: KubernetesVersion = NEWEST) -> None:
    """Fill in, in place, the defaults a ``version`` apiserver sets on create."""
    metadata = obj["metadata"]
    if resource == "jobs":
        spec = obj.setdefault("spec", {})
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        # SetDefaults_Job: a pod failure policy implies Failed replacement
        policy = spec.get("podFailurePolicy")
        if version.enables("spec.podReplacementPolicy"):
            spec.setdefault("podReplacementPolicy", "Failed" if policy else "TerminatingOrFailed")
        if isinstance(policy, dict):
            _default_pod_failure_policy(policy)
        controller_labels = version.job_labels(metadata["uid"], metadata["name"])
        if "selector" not in spec:
            spec["selector"] = {"matchLabels": {version.selector_label: metadata["uid"]}}
        template = spec.get("template")
        if isinstance(template, dict):
            template_meta = template.setdefault("metadata", {})
            template_meta["labels"] = {**(template_meta.get("labels") or {}), **controller_labels}
            _default_pod_spec(template.setdefault("spec", {}))
        obj.setdefault("status", {})
    elif resource == "pods":
        _default_pod_spec(obj.setdefault("spec", {}))
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")
    elif resource == "namespaces":
        labels = metadata.setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = metadata["name"]
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
    elif resource == "secrets":
        obj.setdefault("type", "Opaque")


def _default_pod_failure_policy(policy: JsonDict) -> None:
    """A rule's pod condition patterns match status "True" unless they say otherwise."""
    for rule in policy.get("rules") or ():
        patterns = rule.get("onPodConditions") if isinstance(rule, dict) else None
        for pattern in patterns or ():
            if isinstance(pattern, dict):
                pattern.setdefault("status", "True")


def _default_pod_spec(spec: JsonDict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    for container in spec.get("containers") or ():
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("resources", {})
