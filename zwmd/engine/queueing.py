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
  un-suspends its Job, and tells the queue (:meth:`AdmissionQueue.note`), before asking
  again; otherwise the same ids come back.
- :class:`AdmissionQueue` keeps what admission needs as an index, updated with every
  change of a runner workload: the ids holding a slot, and a heap of the queued ones in
  submission order. Asking who may start costs O(k log n) for k free slots, not a scan
  of every workload known (with thousands of workloads, that scan on every event was
  most of the daemon's CPU). Entries of workloads that left the queue are dropped from
  the heap lazily, when they reach its top.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime

from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.states import ACTIVE, State

__all__ = ["AdmissionQueue", "active_runners", "admit", "queue_position"]


class AdmissionQueue:
    """The queued and active runner workloads of one daemon, indexed for admission."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str, int, Workload]] = []
        self._pushed = 0  # breaks ties between two records of one id
        self._queued: dict[str, Workload] = {}  # id -> the queued record (latest attempt)
        self._active: set[str] = set()

    def note(self, workload: Workload) -> None:
        """Take ``workload``'s current state into account (call after every change)."""
        if workload.kind != naming.KIND_RUNNER:
            return
        wid = workload.id
        if workload.state is State.QUEUED:
            if self._queued.get(wid) is not workload:
                self._queued[wid] = workload
                self._pushed += 1
                heapq.heappush(self._heap, (workload.submitted_at, wid, self._pushed, workload))
        elif self._queued.get(wid) is workload:
            del self._queued[wid]
        if workload.state in ACTIVE:
            self._active.add(wid)
        else:
            self._active.discard(wid)

    def forget(self, workload_id: str) -> None:
        """The workload is gone (its record was replaced or dropped)."""
        self._queued.pop(workload_id, None)
        self._active.discard(workload_id)

    @property
    def active(self) -> int:
        """How many runner workloads occupy a slot (``starting`` or ``running``)."""
        return len(self._active)

    def next(
        self, max_active: int, ready: Callable[[Workload], bool] | None = None
    ) -> list[Workload]:
        """The queued workloads to un-suspend now, first come first (not yet removed).

        :param max_active: the most runner workloads that may be active at once (``>= 0``).
        :param ready: whether a queued workload may start yet; one that may not keeps its
            place and takes no slot, so it holds up nobody behind it.
        """
        if max_active < 0:
            raise ValueError(f"max_active must be 0 or more, not {max_active}")
        free = max_active - len(self._active)
        chosen: list[tuple[datetime, str, int, Workload]] = []
        waiting: list[tuple[datetime, str, int, Workload]] = []
        while free > 0 and self._heap:
            entry = heapq.heappop(self._heap)
            if self._queued.get(entry[1]) is not entry[3] or entry[3].state is not State.QUEUED:
                continue  # left the queue (admitted, cancelled, replaced) since it was pushed
            if ready is not None and not ready(entry[3]):
                waiting.append(entry)
                continue
            chosen.append(entry)
            free -= 1
        for entry in chosen + waiting:  # they stay queued until the caller admits them
            heapq.heappush(self._heap, entry)
        return [entry[3] for entry in chosen]

    def position(self, workload_id: str) -> int | None:
        """1 for the next queued workload to start, 2 for the one after...; None if the
        workload is not queued. (O(n log n): for the API, not for the hot path.)"""
        return self.positions().get(workload_id) if workload_id in self._queued else None

    def positions(self) -> dict[str, int]:
        """Every queued workload's :meth:`position`, by id (one sort for a whole list)."""
        order = sorted((w.submitted_at, w.id) for w in self._queued.values())
        return {wid: index for index, (_, wid) in enumerate(order, start=1)}


def _queue_of(workloads: Iterable[Workload]) -> AdmissionQueue:
    queue = AdmissionQueue()
    for workload in workloads:
        queue.note(workload)
    return queue


def active_runners(workloads: Iterable[Workload]) -> int:
    """How many runner workloads occupy a slot (``starting`` or ``running``)."""
    return _queue_of(workloads).active


def admit(workloads: Iterable[Workload], max_active: int) -> list[str]:
    """The ids of the queued runner workloads to un-suspend now, first come first.

    :param workloads: every known workload (any kind, any state, any order).
    :param max_active: the most runner workloads that may be active at once (``>= 0``).
    """
    return [workload.id for workload in _queue_of(workloads).next(max_active)]


def queue_position(workloads: Iterable[Workload], workload_id: str) -> int | None:
    """1 for the next queued runner workload to start, 2 for the one after...; None if
    the workload is not queued."""
    return _queue_of(workloads).position(workload_id)
