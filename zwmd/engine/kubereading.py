"""Reading Kubernetes objects as plain dicts: times, conditions, container states, Events.

Small, total functions over the JSON the API returns (missing fields read as empty), used
by :mod:`zwmd.engine.reasons` and :mod:`zwmd.engine.workload`. Nothing here decides
anything; it only finds things.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "JOB_FAILURE_CONDITIONS",
    "JOB_SUCCESS_CONDITIONS",
    "container_statuses",
    "event_message",
    "event_times",
    "human_duration",
    "is_active",
    "job_failed",
    "job_finished",
    "memory_limit",
    "parse_time",
    "pod_name",
    "spec_image",
    "true_conditions",
]


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes it (``2024-05-01T12:00:00Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def human_duration(duration: timedelta) -> str:
    """``timedelta(seconds=90)`` → ``"1 minute 30 seconds"``, for messages."""
    seconds = max(0, round(duration.total_seconds()))
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def true_conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The object's conditions whose status is True, by type."""
    found = {}
    for condition in obj.get("status", {}).get("conditions") or ():
        if condition.get("status") == "True":
            found[condition.get("type", "")] = condition
    return found


#: Job conditions that end it well: ``SuccessCriteriaMet`` comes first from 1.31.
JOB_SUCCESS_CONDITIONS = ("Complete", "SuccessCriteriaMet")
#: Job conditions that end it badly: ``FailureTarget`` comes first from 1.29 (while the
#: pods are still terminating); it is already the verdict.
JOB_FAILURE_CONDITIONS = ("Failed", "FailureTarget")


def job_failed(job: Mapping[str, Any]) -> bool:
    """Whether the Job controller has given its failure verdict."""
    return any(kind in true_conditions(job) for kind in JOB_FAILURE_CONDITIONS)


def job_finished(job: Mapping[str, Any]) -> bool:
    """Whether the Job controller has given its verdict, either way."""
    conditions = true_conditions(job)
    return any(kind in conditions for kind in (*JOB_SUCCESS_CONDITIONS, *JOB_FAILURE_CONDITIONS))


def container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status", {})
    return [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]


def is_active(pod: Mapping[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") in (None, "Pending", "Running") and not pod.get(
        "metadata", {}
    ).get("deletionTimestamp")


def memory_limit(pod: Mapping[str, Any], container: str) -> str | None:
    spec = pod.get("spec", {})
    for each in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        if each.get("name") == container:
            limit = each.get("resources", {}).get("limits", {}).get("memory")
            return str(limit) if limit else None
    return None


def event_times(event: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(first, last) time of an Event, core/v1 or events.k8s.io/v1."""
    series = event.get("series") or {}
    first = parse_time(event.get("firstTimestamp")) or parse_time(event.get("eventTime"))
    last = (
        parse_time(event.get("lastTimestamp"))
        or parse_time(series.get("lastObservedTime"))
        or parse_time(event.get("eventTime"))
    )
    fallback = parse_time(event.get("metadata", {}).get("creationTimestamp"))
    return first or last or fallback, last or first or fallback


def event_message(event: Mapping[str, Any]) -> str:
    return str(event.get("message") or event.get("note") or "").strip()


def pod_name(pod: Mapping[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("name", ""))


def spec_image(pod: Mapping[str, Any], container: str) -> str:
    spec = pod.get("spec", {})
    for each in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        if each.get("name") == container:
            return str(each.get("image", ""))
    return "(unknown image)"
