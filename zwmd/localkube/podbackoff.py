"""The pod failure backoff of localkube's Job controller: how long a Job waits before
it replaces a failed pod.

It models kube-controller-manager's job controller (``pkg/controller/job``, the
``backoffRecord`` that ``syncJob`` builds from ``getNewFinishedPods``) for Jobs without
``backoffLimitPerIndex``, the only kind localkube runs.

Design notes:

* One record per Job: how many of its pods failed since the last one succeeded, and
  when the last of them failed. The next pod may be created ``base * 2**(n-1)`` seconds
  after that failure for ``n`` failures, never more than ``cap``: upstream's
  ``DefaultJobPodFailureBackOff`` (10 s) doubling up to ``MaxJobPodFailureBackOff``
  (6 min), so 10, 20, 40, 80, 160, 320, then 360 s for every further failure. A Job
  that has not failed, or whose last finished pod succeeded, waits for nothing.
* A success resets the record. Pods that finish together (seen in one sync) are taken
  in the order they finished, so only failures after the last success count; a failure
  stamped in the same second as a success counts as before it, as upstream's "not after
  the last success" does.
* Which failures count: every pod the controller counts as failed, and also those a pod
  failure policy's ``Ignore`` rule leaves uncounted. Upstream hands all new failed pods
  to the record; ``Ignore`` spares the ``backoffLimit``, not the wait. Pods the
  controller itself deleted because the Job was suspended or had succeeded count for
  nothing.
* The clock. Upstream measures from the pod's own finish time (its containers'
  ``finishedAt``, else the ``Ready=False`` transition, else ``deletionTimestamp`` minus
  the grace period, else ``creationTimestamp``): whole seconds. A delay scaled to 0.1 s
  cannot be measured from a whole second, so a record keeps the moment the controller
  saw the failure (within one sync of the kubelet's write); the pods' own finish times
  (:func:`finished_at`) only order the pods seen together.
* ``scale`` multiplies every delay: 1.0 is upstream's timing (the Job controller's
  default, ``zwmd localkube`` and ``zwmd serve --local``), :data:`TEST_SCALE` is
  what ``LocalKube()`` uses so a test sees the same rule in a hundredth of the time, 0
  retries at once.
* Records are in memory, as upstream's are: dropped when the Job finishes or is
  deleted; a new controller starts without any.
* Pure: no store, no clock. Callers pass the time, so tests can check the rule alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from zwmd.localkube import jobrules as rules

__all__ = [
    "BASE_SECONDS",
    "MAX_SECONDS",
    "TEST_SCALE",
    "UPSTREAM_SCALE",
    "BackoffRecord",
    "Finished",
    "PodBackoff",
    "backoff_delay",
    "check_scale",
    "finished_at",
]

BASE_SECONDS = 10.0  # upstream's DefaultJobPodFailureBackOff
MAX_SECONDS = 360.0  # upstream's MaxJobPodFailureBackOff
UPSTREAM_SCALE = 1.0
TEST_SCALE = 0.01  # 0.1 s, 0.2 s, 0.4 s, ... at most 3.6 s

JsonDict = dict[str, Any]


def backoff_delay(failures: int, scale: float = UPSTREAM_SCALE) -> float:
    """Seconds to wait after the last of ``failures`` consecutive failed pods."""
    if failures <= 0:
        return 0.0
    doublings = min(failures - 1, 64)  # far past the cap; keeps the power finite
    return min(BASE_SECONDS * 2.0**doublings, MAX_SECONDS) * scale


def check_scale(scale: float) -> float:
    """``scale`` if it is a usable multiplier (finite, not negative); else ValueError."""
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"pod backoff scale must be a finite number >= 0, not {scale!r}")
    return scale


class Finished(NamedTuple):
    """A pod the controller has just counted: when it finished, and how."""

    at: float  # the pod's own finish time (:func:`finished_at`), for ordering
    succeeded: bool


@dataclass(frozen=True)
class BackoffRecord:
    """A Job's failures since its last success, and when the last one was seen."""

    failures: int
    last_failure: float
    delay: float  # seconds after ``last_failure`` before the next pod

    @property
    def not_before(self) -> float:
        return self.last_failure + self.delay


class PodBackoff:
    """The records of every Job, by uid, under one ``scale``."""

    def __init__(self, scale: float = UPSTREAM_SCALE) -> None:
        self.scale = check_scale(scale)
        self._records: dict[str, tuple[int, float]] = {}  # uid -> failures, last failure

    def observe(self, uid: str, finished: Iterable[Finished], seen_at: float) -> None:
        """Take in pods of Job ``uid`` seen finished at ``seen_at``, in finishing order."""
        # a failure at the same instant as a success sorts first: the success resets it
        ordered = sorted(finished, key=lambda pod: (pod.at, pod.succeeded))
        if not ordered:
            return
        failures = self._records.get(uid, (0, seen_at))[0]
        for pod in ordered:
            failures = 0 if pod.succeeded else failures + 1
        if failures:
            self._records[uid] = (failures, seen_at)
        else:
            self._records.pop(uid, None)

    def record(self, uid: str) -> BackoffRecord | None:
        """Job ``uid``'s record; None when its pods may be created at once."""
        found = self._records.get(uid)
        if found is None:
            return None
        failures, last = found
        return BackoffRecord(failures, last, backoff_delay(failures, self.scale))

    def not_before(self, uid: str) -> float | None:
        """The earliest moment Job ``uid`` may create a pod; None for no wait."""
        record = self.record(uid)
        return None if record is None else record.not_before

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)


def finished_at(pod: JsonDict) -> float:
    """When ``pod`` finished, read from the pod as upstream reads it (whole seconds):
    its containers' latest ``finishedAt`` once all have one, else the moment ``Ready``
    turned False, else its deletion (``deletionTimestamp`` less the grace period), else
    its creation."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    latest: float | None = None
    for container in status.get("containerStatuses") or []:
        stamp = rules.parse_rfc3339(
            ((container.get("state") or {}).get("terminated") or {}).get("finishedAt")
        )
        if stamp is None:
            latest = None
            break
        latest = stamp if latest is None else max(latest, stamp)
    if latest is not None:
        return latest
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "False":
            stamp = rules.parse_rfc3339(condition.get("lastTransitionTime"))
            if stamp is not None:
                return stamp
    deleted = rules.parse_rfc3339(meta.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - float(meta.get("deletionGracePeriodSeconds") or 0)
    return rules.parse_rfc3339(meta.get("creationTimestamp")) or 0.0
