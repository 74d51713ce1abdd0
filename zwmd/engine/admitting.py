"""Admission: un-suspending the queued runner Jobs that may start now.

What may start is decided by the :class:`~zwmd.engine.queueing.AdmissionQueue` (the
limit, submission order) and the :class:`~zwmd.engine.environment.EnvironmentGate` (a
run whose Secret is not known to exist takes no slot). This module carries the decision
out.

Design notes:

- One lock for all admissions of a daemon: two passes at once would both see the same
  free slot.
- A workload is moved to ``starting`` in memory, then its Job is patched (annotations
  and ``spec.suspend: false`` in one write). A failed patch puts the record back as it
  was, so a workload is never shown ``starting`` with a suspended Job; the failure is
  raised to the caller, who retries (the reconciler's backoff).
- A workload still being created (its Job or Secret write in flight), replaced by a
  newer attempt, or whose Job the informer does not hold yet, is left for a later pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import anyio

from zwmd.engine.environment import EnvironmentGate
from zwmd.engine.reconciling import EngineListener
from zwmd.engine.registry import Registry
from zwmd.kube.client import KubeClient
from zwmd.kube.informer import Informer

__all__ = ["Admission"]


class Admission:
    """The runner workloads' admission of one daemon."""

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        registry: Registry,
        listener: EngineListener,
        gate: EnvironmentGate,
        *,
        max_active: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.kube = kube
        self.informer = informer
        self.registry = registry
        self.listener = listener
        self.gate = gate
        self.max_active = max_active
        self.clock = clock
        self._lock = anyio.Lock()

    async def run(self) -> None:
        """Un-suspend the queued Jobs that may start now, first come first."""
        async with self._lock:
            for workload in self.registry.queue.next(self.max_active, self.gate.ready):
                entry = self.registry.get(workload.id)
                if entry is None or entry.workload is not workload or entry.creating:
                    continue
                if self.informer.job(workload.job_name) is None:
                    continue
                before = replace(workload)
                transition = workload.admit(self.clock())
                if transition is None:
                    continue
                try:
                    await self.kube.patch(
                        "jobs",
                        workload.job_name,
                        {
                            "metadata": {"annotations": workload.annotations()},
                            "spec": {"suspend": False},
                        },
                    )
                except BaseException:
                    vars(workload).update(vars(before))  # still queued, as on the Job
                    raise
                self.registry.note(workload)
                self.listener.transitioned(workload, transition)
