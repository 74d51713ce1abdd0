"""Runner workloads: a run request becomes a suspended Job, followed to its end.

The runner kind of the :class:`~zwmd.engine.reconciling.Reconciler`, keyed by workload
id. Design notes:

- **Submission** is idempotent by construction: the Job's name comes from the workload
  id and attempt, so a retried create answers 409 and is *adopted* when its spec hash
  matches, refused when it does not. A request under the id of an active workload with
  the same spec returns that workload; with another spec it is a conflict. Under the id
  of a finished workload it starts the next attempt (:mod:`zwmd.engine.attempts`).
  Writes: Job (suspended), then its environment Secret (owned by the Job), then
  admission: no pod starts before its Secret exists
  (:mod:`zwmd.engine.environment`, which also says what becomes of a submission cut
  short). Both objects are built and measured before the first write
  (:mod:`zwmd.kube.sizes`): a run Kubernetes would refuse for its size is refused whole.
- **Reconciling** one workload: :func:`~zwmd.engine.reasons.observe` the informer's Job
  and pods (and, for a started Job with no pod, its Events), let
  :meth:`Workload.apply` decide whether the state moves, and record the new state in
  the Job's annotations. Kubernetes is the database. A Job that the informer lost after
  a list (and that is not being created or cancelled) is ``failed``/``JobLost``.
- **Finishing**: once terminal, its slot is given to the queue first (admission does
  not wait behind a log flush), then the log pipeline completes the attempt's log
  (:meth:`EngineListener.finished`), the Job gets ``zwmd.io/logs-flushed`` and its
  ``ttlSecondsAfterFinished``, and the entry is evicted from the registry.
- **Admission** (:meth:`Runners.after_work`, :mod:`zwmd.engine.admitting`): the queued
  workloads that may start are un-suspended, in order.
- **Cancel** deletes the Job first and says ``cancelled`` only once that succeeded. A
  failed delete is retried by the reconciler (with its backoff) and shows in the
  workload's message meanwhile; a run that ends on its own first ends as it did.
- **The spec hash** is keyed (:mod:`zwmd.engine.speckey`): the same request hashes the
  same in every daemon of the namespace, before and after a restart.
- **Secret values**: the listener hears the environment of each submitted run
  (:meth:`EngineListener.submitted`), so the log pipeline masks its secret values, and
  masks them in each observed message before it is recorded (:meth:`EngineListener.redact`).
- **Adoption** after a restart: every listed runner Job that is not finished-and-flushed
  gets an entry; finished and flushed ones only teach the registry their aliases.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from zwmd.engine.admitting import Admission
from zwmd.engine.environment import EnvironmentGate, EnvironmentMissing
from zwmd.engine.kubereading import job_failed, job_finished, parse_time
from zwmd.engine.reasons import observe
from zwmd.engine.reconciling import EngineListener, EngineTiming, Reconciler
from zwmd.engine.registry import Entry, Registry
from zwmd.engine.speckey import SpecKey
from zwmd.engine.workload import (
    RecordError,
    Transition,
    Workload,
    aliases_from_arguments,
    spec_hash,
)
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.informer import Change, Informer
from zwmd.kube.jobs import PodPolicy, runner_job
from zwmd.kube.sizes import ObjectLimits, check_runner_objects
from zwmd.states import Reason, State

log = logging.getLogger(__name__)

__all__ = ["RunSpec", "Runners", "SpecConflict", "attempt_job_name"]


class SpecConflict(Exception):
    """A different request is already active under this workload id."""


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: Sequence[str] = ()
    arguments: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0

    def digest(self, key: bytes) -> str:
        return spec_hash(
            self.image,
            self.command,
            self.arguments,
            self.environment,
            self.timeout_seconds,
            key=key,
        )


def attempt_job_name(workload_id: str, attempt: int) -> str:
    base = naming.job_name(workload_id)
    return base if attempt <= 1 else f"{base}-{attempt}"


class Runners:
    """The runner workloads of one namespace."""

    name = naming.KIND_RUNNER

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        registry: Registry,
        reconciler: Reconciler,
        listener: EngineListener,
        *,
        max_active: int,
        ttl_seconds_after_finished: int | None,
        timing: EngineTiming,
        spec_key: SpecKey | None = None,
        limits: ObjectLimits | None = None,
    ) -> None:
        self.kube = kube
        self.spec_key = spec_key or SpecKey(kube)
        self.informer = informer
        self.registry = registry
        self.reconciler = reconciler
        self.listener = listener
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.timing = timing
        self.limits = limits or ObjectLimits()
        self.environment = EnvironmentGate(
            kube, informer, registry, listener, grace_seconds=timing.environment_grace
        )
        self.admission = Admission(
            kube,
            informer,
            registry,
            listener,
            self.environment,
            max_active=max_active,
            clock=self._now,
        )

    def _now(self) -> datetime:
        return self.reconciler.clock()

    # -- commands ------------------------------------------------------------------------

    async def submit(
        self,
        policy: PodPolicy,
        workload_id: str,
        spec: RunSpec,
        *,
        attempt: int,
        request_key: str = "",
    ) -> tuple[Workload, bool]:
        """Create (or find) the runner workload; returns it and whether it is new."""
        digest = spec.digest(await self.spec_key.get())
        current = self.registry.get(workload_id)
        while current is not None and current.creating:
            # A retry of a request still writing its Job waits for its outcome: answered
            # now, the retry would accept a workload the first request may yet discard.
            await current.created.wait()
            current = self.registry.get(workload_id)
        if current is not None and current.kind == self.name and not current.workload.is_terminal:
            if current.workload.spec_hash == digest:
                if current.environment_ready:
                    return current.workload, False
                await self.environment.create(current, spec.environment)  # a retry completes
                await self._admit_now_or_later(workload_id)  # a cut-short submission
                return current.workload, True
            raise SpecConflict(
                f"workload {workload_id} is {current.workload.state} with another spec; "
                "cancel it first or use another id"
            )
        workload = self._new_workload(workload_id, spec, digest, attempt, request_key)
        job = self._job(workload, policy, spec)
        check_runner_objects(job, spec.environment, self.limits)
        entry = self.registry.put(Entry(workload, creating=True))
        try:
            try:
                created = await self._create(entry, job, digest)
            except BaseException:
                self.registry.discard(entry, restore=current)
                raise
            self.informer.remember("jobs", created)
            # The Job exists from here on: a failure leaves it queued, waiting for its
            # Secret (a retry of this request writes it) until environment_grace.
            try:
                await self.environment.create(entry, spec.environment, created)
            except BaseException:
                self.reconciler.recheck(self.name, workload_id, self._now())
                raise
        finally:
            entry.creating = False
            entry.created.set()
        await self._admit_now_or_later(workload.id)
        return entry.workload, True

    def check(self, policy: PodPolicy, workload_id: str, spec: RunSpec, *, attempt: int) -> None:
        """Raise :class:`~zwmd.kube.sizes.ObjectTooLarge` if the run's Job or Secret would
        not fit in Kubernetes (:meth:`submit` checks again, with its final policy)."""
        digest = spec.digest(b"size")  # any key: a digest's length does not depend on it
        workload = self._new_workload(workload_id, spec, digest, attempt, "")
        check_runner_objects(self._job(workload, policy, spec), spec.environment, self.limits)

    def _new_workload(
        self, workload_id: str, spec: RunSpec, digest: str, attempt: int, request_key: str
    ) -> Workload:
        workload = Workload(
            id=workload_id,
            state=State.QUEUED,
            image=spec.image,
            submitted_at=self._now(),
            aliases=aliases_from_arguments(spec.arguments),
            spec_hash=digest,
            attempt=attempt,
            request_key=request_key,
        )
        workload.job_name = attempt_job_name(workload_id, workload.attempt)
        return workload

    @staticmethod
    def _job(workload: Workload, policy: PodPolicy, spec: RunSpec) -> Obj:
        return runner_job(
            name=workload.job_name,
            workload_id=workload.id,
            image=spec.image,
            command=spec.command,
            arguments=spec.arguments,
            timeout_seconds=spec.timeout_seconds,
            annotations=workload.annotations(),
            policy=policy,
        )

    async def _create(self, entry: Entry, job: Obj, digest: str) -> Obj:
        workload = entry.workload
        try:
            return await self.kube.create("jobs", job)
        except KubeError as exc:
            if exc.code != 409:
                raise
        existing = await self.kube.get("jobs", workload.job_name)
        adopted = Workload.from_job(existing)
        if adopted.spec_hash != digest:
            raise SpecConflict(
                f"Job {workload.job_name} exists with another spec for workload {workload.id}"
            )
        entry.workload = adopted
        self.registry.put(entry)
        return existing

    async def cancel(self, entry: Entry) -> bool:
        """Delete the Job, then record the workload as cancelled; whether it is terminal.

        A failed delete changes nothing but the workload's message: the reconciler
        retries it with its backoff until it succeeds, or until the run ends on its own
        first (then it ends as it did). ``False`` means the cancel is under way.
        """
        if entry.workload.is_terminal:
            return True
        entry.cancel_requested = True
        try:
            await self._cancel_now(entry)
        except KubeError as exc:
            self.reconciler.retry_later(self.name, entry.workload.id, exc)
            return False
        return True

    async def _cancel_now(self, entry: Entry) -> None:
        workload = entry.workload
        try:
            await self._delete_job(entry)
        except KubeError as exc:
            workload.cancel_error = str(exc)
            raise
        workload.cancel_error = ""
        transition = workload.cancel(self._now())
        self.registry.note(workload)
        if transition is not None:
            self.listener.transitioned(workload, transition)
        await self._admit_now_or_later(workload.id)
        try:
            await self._finalize(entry)
        finally:
            entry.finished.set()

    async def _delete_job(self, entry: Entry) -> None:
        """Delete the workload's Job (one already gone counts); from then on the Job's
        absence is expected (not ``JobLost``) and nothing is written onto it."""
        entry.cancelling = True
        try:
            await self.kube.delete("jobs", entry.workload.job_name, propagation="Background")
        except KubeError as exc:
            if exc.code != 404:
                entry.cancelling = False
                raise

    # -- the reconciler's kind -----------------------------------------------------------

    def keys_listed(self, resource: str) -> Iterable[str]:
        if resource == "jobs":
            for job in self.informer.jobs.values():
                self._adopt(job)
        return [entry.workload.id for entry in self.registry.entries() if entry.kind == self.name]

    def keys_changed(self, change: Change) -> Iterable[str]:
        labels = (change.obj.get("metadata") or {}).get("labels") or {}
        if labels.get(naming.LABEL_KIND) != naming.KIND_RUNNER:
            return ()
        wid = labels.get(naming.LABEL_WORKLOAD_ID)
        if change.resource == "jobs":
            if change.deleted:
                self._job_deleted(change.obj)
            else:
                self._adopt(change.obj)
        return (wid,) if wid and wid in self.registry else ()

    def _adopt(self, job: Obj) -> None:
        """Track a Job's workload when the registry does not hold it (restart)."""
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        if labels.get(naming.LABEL_KIND) != naming.KIND_RUNNER:
            return
        known = self.registry.resolve(str(labels.get(naming.LABEL_WORKLOAD_ID, "")))
        if known is not None and known.workload.job_name == meta.get("name"):
            return  # the usual case on the watch path: nothing to parse
        try:
            workload = Workload.from_job(job)
        except RecordError as exc:
            log.warning("ignoring Job %s: %s", meta.get("name"), exc)
            return
        flushed = (meta.get("annotations") or {}).get(naming.ANN_LOGS_FLUSHED) == "true"
        if workload.is_terminal and flushed:
            self.registry.learn(workload)  # nothing left to do: only its aliases matter
            return
        if known is None or (known.kind == self.name and workload.attempt > known.workload.attempt):
            # An un-suspended Job was admitted, and admission waits for the Secret.
            admitted = not (job.get("spec") or {}).get("suspend")
            self.registry.put(Entry(workload, environment_ready=admitted))

    def _job_deleted(self, job: Obj) -> None:
        try:
            workload = Workload.from_job(job)
        except RecordError:
            return
        self.registry.job_deleted(workload.id, workload.job_name, workload.aliases)

    async def reconcile(self, key: str) -> None:
        entry = self.registry.get(key)
        if entry is None or entry.kind != self.name:
            return
        workload = entry.workload
        if workload.is_terminal:
            await self._finish(entry)
            return
        job = self.informer.job(workload.job_name)
        if entry.cancel_requested:
            if job is None or not job_finished(job):
                await self._cancel_now(entry)  # a failure is retried, with the backoff
                return
            entry.cancel_requested, workload.cancel_error = False, ""  # it ended first
        if job is None:
            if entry.creating or entry.cancelling or "jobs" not in self.informer.listed:
                return
            await self._after(entry, workload.lost(self._now()), record=False)
            return
        if workload.state is State.QUEUED and not entry.environment_ready:
            if not entry.creating:  # (a submission in flight writes the Secret itself)
                await self._check_environment(entry, job)
            return
        pods = self.informer.pods_of(workload.job_name)
        if _failed_pods_unseen(job, pods):
            # The Job's verdict can come before the pod that explains it (two watches,
            # or one resumed later): read this Job's pods now rather than record a vaguer
            # reason for ever (BackoffLimitExceeded instead of OOMKilled or the exit code).
            pods = await self.informer.list_pods_of(workload.job_name)
        now = self._now()
        events_again = None
        if not pods and not (job.get("spec") or {}).get("suspend"):
            events_again = await self._read_events(entry, job, now)
        obs = observe(
            job,
            pods,
            entry.events,
            now,
            image_pull_grace=self.timing.image_pull_grace,
            unschedulable_deadline=self.timing.unschedulable_deadline,
            first_seen=entry.first_seen,
        )
        if obs.message:  # it may quote the container's termination message
            obs = replace(obs, message=self.listener.redact(workload.job_name, obs.message))
        entry.first_seen = dict(obs.first_seen)
        again = min((t for t in (obs.recheck_at, events_again) if t is not None), default=None)
        self.reconciler.recheck(self.name, key, again)
        await self._after(entry, workload.apply(obs, now))

    async def _check_environment(self, entry: Entry, job: Obj) -> None:
        """A queued Job whose Secret is not known to exist: found, it may be admitted;
        missing past the grace period, the workload fails and its Job is deleted, so
        that no pod ever starts without its environment."""
        now = self._now()
        try:
            again = await self.environment.check(entry, job, now)
        except EnvironmentMissing as exc:
            transition = entry.workload.fail(
                Reason.CREATE_FAILED, Reason.CREATE_FAILED.message(detail=str(exc)), now
            )
            await self._delete_job(entry)
            await self._after(entry, transition, record=False)
            return
        self.reconciler.recheck(self.name, entry.workload.id, again)

    async def _read_events(self, entry: Entry, job: Obj, now: datetime) -> datetime | None:
        """Read Events of a started Job that has no pod yet (e.g. FailedCreate).

        Returns when to look again: Events are not watched, so nothing else would tell
        the workload that one has appeared.
        """
        again = now + timedelta(seconds=self.timing.events_poll_after)
        started = parse_time((job.get("status") or {}).get("startTime"))
        if started is None or (now - started).total_seconds() < self.timing.events_poll_after:
            return again
        uid = job["metadata"].get("uid")
        selector = f"involvedObject.uid={uid}"  # this Job's Events only, not the namespace's
        items, _ = await self.kube.list("events", field_selector=selector)
        entry.events = [e for e in items if (e.get("involvedObject") or {}).get("uid") == uid]
        return None if entry.events else again

    async def _after(
        self, entry: Entry, transition: Transition | None, *, record: bool = True
    ) -> None:
        """Record a transition that happened (if any) and tell the listener."""
        workload = entry.workload
        if transition is None:
            return
        if record and transition.state_changed:  # a new message alone stays in memory
            patch: Obj = {"metadata": {"annotations": workload.annotations()}}
            job = self.informer.job(workload.job_name)
            if workload.state.is_terminal and job is not None and not job_finished(job):
                # The verdict is zwmd's own (ImagePullError, CrashLoopBackOff,
                # Unschedulable, CreateFailed): end the Job too, or its pod would go on
                # pulling, crashing or waiting for a node (and might still run the
                # pipeline), and the TTL never applies to a Job that never finishes.
                patch["spec"] = {"activeDeadlineSeconds": 1}
            await self.kube.patch("jobs", workload.job_name, patch)
        self.registry.note(workload)
        self.listener.transitioned(workload, transition)
        if workload.state.is_terminal:
            await self._finish(entry)

    async def _finish(self, entry: Entry) -> None:
        """A terminal workload: its slot goes to the queue at once, then its logs flush.

        Finalisation waits for the log flush (up to the pipeline's finish timeout, when a
        stream stalls), the final fetch and the TTL patch: the queued workloads must not
        wait for any of it. Waiters see the end once the logs are complete.
        """
        if not entry.finalized:
            await self._admit_now_or_later(entry.workload.id)
        try:
            await self._finalize(entry)
        finally:
            entry.finished.set()

    async def _finalize(self, entry: Entry) -> None:
        """Once terminal: let the logs flush, hand the Job to Kubernetes' TTL, evict."""
        if entry.finalized:
            return
        entry.finalized = True
        workload = entry.workload
        try:
            await self.listener.finished(workload)
        except BaseException:
            entry.finalized = False  # the reconciler's retry finalizes it again
            raise
        job = self.informer.job(workload.job_name)
        if job is not None and not entry.cancelling and not _flushed(job):
            patch: Obj = {"metadata": {"annotations": {naming.ANN_LOGS_FLUSHED: "true"}}}
            if self.ttl_seconds_after_finished is not None:
                patch["spec"] = {"ttlSecondsAfterFinished": self.ttl_seconds_after_finished}
            try:
                await self.kube.patch("jobs", workload.job_name, patch)
            except KubeError as exc:
                if exc.code != 404:
                    entry.finalized = False
                    raise
        entry.finished.set()
        self.registry.evict(entry)

    async def _admit_now_or_later(self, key: str) -> None:
        """Admission after a command: done now, or by the reconciler when it failed (the
        command itself succeeded, and its caller must hear so)."""
        try:
            await self.after_work()
        except Exception as exc:
            self.reconciler.retry_later(self.name, key, exc)

    async def after_work(self) -> None:
        """Admission: un-suspend the queued Jobs that may start now, in order."""
        await self.admission.run()


def _flushed(job: Obj) -> bool:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(
        naming.ANN_LOGS_FLUSHED
    ) == "true"


def _failed_pods_unseen(job: Obj, pods: list[Obj]) -> bool:
    """Whether the Job has failed and counts more failed pods than the cache holds."""
    if not job_failed(job):
        return False
    seen = sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Failed")
    return seen < int((job.get("status") or {}).get("failed") or 0)
