"""The environment gate: no runner pod starts before its environment Secret exists.

A run's environment (which may hold credentials) lives in a Secret ``<job>-env`` that
the Job owns, written after the Job (it needs the Job's uid for its ownerReference).
The Job is created suspended, so between the two writes nothing runs; this module
decides when a queued runner may be admitted as far as its Secret is concerned.

Design notes:

- :attr:`Entry.environment_ready <zwmd.engine.registry.Entry.environment_ready>` is
  the gate: set when this daemon wrote the Secret, or found it. Admission
  (:meth:`EnvironmentGate.ready`) skips a workload that is not ready, without giving it
  a slot, so a submission cut short holds up nobody behind it.
- A submission cut short after the Job (the Secret create refused, the daemon killed
  mid-request) is completed by the caller's retry of the same request
  (:meth:`EnvironmentGate.create`). Without one, it has ``environment_grace`` from the
  Job's creation; then :meth:`EnvironmentGate.check` raises :class:`EnvironmentMissing`
  and the caller fails the workload and deletes its Job.
- A suspended Job adopted after a restart has its Secret looked up once (one GET).
  An un-suspended one was admitted, so its Secret existed.
- Each submitted environment is told to the listener first
  (:meth:`EngineListener.submitted`), so the log pipeline masks its secret values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from zwmd.engine.kubereading import parse_time
from zwmd.engine.reconciling import EngineListener
from zwmd.engine.registry import Entry, Registry
from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.informer import Informer
from zwmd.kube.jobs import environment_secret

__all__ = ["EnvironmentGate", "EnvironmentMissing"]


class EnvironmentMissing(Exception):
    """A queued Job's Secret never appeared within the grace period."""


class EnvironmentGate:
    """Writes and looks up runner Jobs' environment Secrets; says who may start."""

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        registry: Registry,
        listener: EngineListener,
        *,
        grace_seconds: float,
    ) -> None:
        self.kube = kube
        self.informer = informer
        self.registry = registry
        self.listener = listener
        self.grace = timedelta(seconds=grace_seconds)

    def ready(self, workload: Workload) -> bool:
        """Whether ``workload``'s Secret is known to exist (admission asks)."""
        entry = self.registry.get(workload.id)
        return entry is not None and entry.environment_ready

    async def create(
        self, entry: Entry, environment: Mapping[str, str], job: Obj | None = None
    ) -> None:
        """Write the Job's environment Secret (owned by the Job; replaced if it exists)."""
        self.listener.submitted(entry.workload, environment)  # what to mask in its logs
        job = job or self.informer.job(entry.workload.job_name)
        if job is None:
            job = await self.kube.get("jobs", entry.workload.job_name)
        await self.kube.create_or_replace("secrets", environment_secret(job, environment))
        entry.environment_ready = True

    async def check(self, entry: Entry, job: Obj, now: datetime) -> datetime | None:
        """Look the Secret up: None once it exists, else when to look again.

        :raises EnvironmentMissing: it is still missing ``grace`` after the Job's creation.
        """
        name = naming.secret_name(entry.workload.job_name)
        try:
            await self.kube.get("secrets", name)
        except KubeError as exc:
            if exc.code != 404:
                raise
        else:
            entry.environment_ready = True
            return None
        created = parse_time(job["metadata"].get("creationTimestamp")) or now
        deadline = created + self.grace
        if now < deadline:
            return deadline
        raise EnvironmentMissing(
            f"its environment Secret {name} was never created (the submission did not "
            "complete: the daemon stopped or Kubernetes refused the Secret); submit the run again"
        )
