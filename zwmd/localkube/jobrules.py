"""The pure rules of localkube's Job controller: pods from a template, conditions, policies.

Everything here is a function of its arguments (no store, no clock of its own), so the
controller in :mod:`zwmd.localkube.controllers` stays a thin loop of "observe, decide,
write" and these rules can be read against the Kubernetes documentation one by one.

Design notes:

* Wording follows Kubernetes 1.29+ (the reasons and messages clients and humans match
  on): ``BackoffLimitExceeded`` "Job has reached the specified backoff limit",
  ``DeadlineExceeded`` "Job was active longer than specified deadline",
  ``PodFailurePolicy`` "Container main for pod ns/p failed with exit code 42 matching
  FailJob rule at index 0", ``CompletionsReached``, ``JobSuspended``/``JobResumed``.
* A condition keeps its ``lastTransitionTime`` while its status does not change, as the
  real controller does; :func:`set_condition` reports whether anything changed so the
  controller writes status only when it must (every write is a watch event).
* Pod failure policy: rules are tried in order and the first match decides. ``NotIn``
  never matches exit code 0; ``onPodConditions`` matches a condition of that type whose
  status equals the rule's (default ``True``).
"""

from __future__ import annotations

import copy
import datetime
import functools
import random
from typing import Any

JsonDict = dict[str, Any]

# the alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes)
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


def now_rfc3339(moment: float) -> str:
    """Seconds since the epoch as a ``metav1.Time`` (second precision, ``Z``)."""
    return _format_second(int(moment))


@functools.lru_cache(maxsize=8)
def _format_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(length))


def pod_from_template(job: JsonDict, name: str) -> JsonDict:
    """A pod for ``job`` as the Job controller creates it: template, labels, owner.

    The labels are the template's, which the apiserver's defaulting gave the Job's
    labels (named as its release names them)."""
    meta = job["metadata"]
    template = copy.deepcopy(job.get("spec", {}).get("template", {}))
    template_meta = template.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    pod_meta: JsonDict = {
        "name": name,
        "namespace": meta.get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": template.get("spec") or {},
    }


def controller_uid(pod: JsonDict) -> str | None:
    """The uid of the Job that controls ``pod``, if any."""
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return str(ref.get("uid"))
    return None


def find_condition(status: JsonDict, kind: str) -> JsonDict | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def has_condition(status: JsonDict, kind: str, value: str = "True") -> bool:
    condition = find_condition(status, kind)
    return condition is not None and condition.get("status") == value


def set_condition(
    status: JsonDict, kind: str, value: str, reason: str, message: str, now: str
) -> bool:
    """Add or update one condition in ``status``; True if anything changed."""
    conditions: list[JsonDict] = status.setdefault("conditions", [])
    for index, condition in enumerate(conditions):
        if condition.get("type") != kind:
            continue
        if (condition.get("status"), condition.get("reason"), condition.get("message")) == (
            value,
            reason,
            message,
        ):
            return False
        updated = dict(condition, status=value, reason=reason, message=message, lastProbeTime=now)
        if condition.get("status") != value:
            updated["lastTransitionTime"] = now
        conditions[index] = updated
        return True
    conditions.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    )
    return True


def pod_phase(pod: JsonDict) -> str:
    return str(pod.get("status", {}).get("phase") or "Pending")


def is_terminal(pod: JsonDict) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_terminating(pod: JsonDict) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp")) and not is_terminal(pod)


def is_ready(pod: JsonDict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def restart_count(pod: JsonDict) -> int:
    return sum(
        int(s.get("restartCount") or 0)
        for s in pod.get("status", {}).get("containerStatuses") or []
    )


def _terminated_containers(pod: JsonDict) -> list[tuple[str, int]]:
    status = pod.get("status", {})
    found = []
    for entry in list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    ):
        terminated = (entry.get("state") or {}).get("terminated")
        if terminated is not None:
            found.append((str(entry.get("name")), int(terminated.get("exitCode", 0))))
    return found


def match_failure_policy(job: JsonDict, pod: JsonDict) -> tuple[str, str | None]:
    """The action of the first matching podFailurePolicy rule: ``(action, FailJob message)``.

    ``("Count", None)`` when no rule matches (or there is no policy): the failure counts
    against ``backoffLimit``.
    """
    policy = job.get("spec", {}).get("podFailurePolicy") or {}
    meta = pod.get("metadata", {})
    where = f"{meta.get('namespace')}/{meta.get('name')}"
    for index, rule in enumerate(policy.get("rules") or []):
        action = str(rule.get("action", "Count"))
        message: str | None = None
        on_codes = rule.get("onExitCodes")
        if on_codes:
            wanted = on_codes.get("containerName")
            values = {int(v) for v in on_codes.get("values") or []}
            for name, code in _terminated_containers(pod):
                if wanted and name != wanted:
                    continue
                if on_codes.get("operator") == "NotIn":
                    matched = code != 0 and code not in values
                else:
                    matched = code in values
                if matched:
                    message = (
                        f"Container {name} for pod {where} failed with exit code {code} "
                        f"matching {action} rule at index {index}"
                    )
                    break
        for pattern in rule.get("onPodConditions") or []:
            if message is not None:
                break
            kind, value = pattern.get("type"), pattern.get("status", "True")
            for condition in pod.get("status", {}).get("conditions") or []:
                if condition.get("type") == kind and condition.get("status") == value:
                    message = (
                        f"Pod {where} has condition {kind} matching {action} rule at index {index}"
                    )
                    break
        if message is not None:
            return action, message
    return "Count", None


def wanted_completions(spec: JsonDict) -> int | None:
    """``spec.completions`` as the apiserver defaults it (None: a work queue)."""
    completions = spec.get("completions")
    if completions is not None:
        return int(completions)
    parallelism = spec.get("parallelism")
    return 1 if parallelism is None or int(parallelism) == 1 else None


def event_for(job: JsonDict, kind: str, reason: str, message: str, now_ns: int) -> JsonDict:
    """An Event about ``job`` as the job controller's event recorder writes it."""
    meta = job["metadata"]
    stamp = now_rfc3339(now_ns / 1e9)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{now_ns:x}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": "job-controller"},
        "reportingComponent": "job-controller",
        "reportingInstance": "",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
