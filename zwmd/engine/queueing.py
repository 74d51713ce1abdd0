"""Admission: which queued runner workloads may start now.

The queue lives in Kubernetes: a queued workload is a Job created with
``spec.suspend: true``, and admitting it means un-suspending it. So the queue and the
count of active runs survive a restart of the daemon; :func:`admit` recomputes the
decision from the records alone, every time, and holds no state of its own.

Design notes
============

- At most ``max_active`` (``ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS``) *runner*
  workloads are ``starting`` or ``running`` at once. A ``starting`` workload holds a
  slot even before its pod exists: that is what keeps a burst of admissions within the
  limit.
- Queued workloads are admitted strictly in submission order (``submitted_at``, then
  the id to break ties); a workload never overtakes an earlier one.
- Builder workloads are not counted and never queued: an image build is what a
  queued run may be waiting for, so limiting builds by the run limit could stall the
  queue. Builder Jobs are created un-suspended.
- If the limit is lowered below the number of active runs, nothing is admitted until
  enough of them finish; running workloads are never suspended again.
- The caller moves each admitted workload to ``starting`` (``Workload.admit``) when it
  un-suspends its Job, before asking again; otherwise the same ids come back.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from zwmd.engine.states import ACTIVE, State
from zwmd.engine.workload import Workload
from zwmd.kube import naming

__all__ = ["active_runners", "admit", "queue_position"]


def _runners(workloads: Iterable[Workload]) -> list[Workload]:
    return [workload for workload in workloads if workload.kind == naming.KIND_RUNNER]


def active_runners(workloads: Iterable[Workload]) -> int:
    """How many runner workloads occupy a slot (``starting`` or ``running``)."""
    return sum(1 for workload in _runners(workloads) if workload.state in ACTIVE)


def admit(workloads: Iterable[Workload], max_active: int) -> list[str]:
    """The ids of the queued runner workloads to un-suspend now, first come first.

    :param workloads: every known workload (any kind, any state, any order).
    :param max_active: the most runner workloads that may be active at once (``>= 0``).
    """
    if max_active < 0:
        raise ValueError(f"max_active must be 0 or more, not {max_active}")
    runners = _runners(workloads)
    free = max_active - sum(1 for workload in runners if workload.state in ACTIVE)
    if free <= 0:
        return []
    queued = (workload for workload in runners if workload.state is State.QUEUED)
    first = heapq.nsmallest(free, queued, key=lambda workload: (workload.submitted_at, workload.id))
    return [workload.id for workload in first]


def queue_position(workloads: Iterable[Workload], workload_id: str) -> int | None:
    """1 for the next queued runner workload to start, 2 for the one after...; None if
    the workload is not queued."""
    queued = sorted(
        (workload for workload in _runners(workloads) if workload.state is State.QUEUED),
        key=lambda workload: (workload.submitted_at, workload.id),
    )
    for position, workload in enumerate(queued, start=1):
        if workload.id == workload_id:
            return position
    return None
