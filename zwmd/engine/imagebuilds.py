"""Runner images as workloads: shared builder Jobs, and who is told when they end.

:class:`ImageBuilds` answers ``POST /v1/workloads/{id}/build``. A request is decided by
:func:`zwmd.images.modes.decide`; in the build mode the image is looked up in the registry
(``zwmd_image_exists`` hook, with credentials from :class:`~zwmd.images.credentials.CredentialSource`)
and, when missing, built by one builder Job per full image name.

Design notes:

- The builder kind of the :class:`~zwmd.engine.reconciling.Reconciler`, keyed by the
  builder Job's name; it reads Jobs and pods from the informer and has no loop, timer or
  cache of its own.
- A build workload is a :class:`~zwmd.engine.workload.Workload` of kind ``builder``, in
  the one :class:`~zwmd.engine.registry.Registry` under its workload id (the ZenML
  workload id, which its runner uses next: the run's entry replaces the build's). Its
  ``image`` stays empty until the image exists: the adapter returns as soon as it is set.
- Identical requests share one :class:`_Build` (per full image name) from the first
  moment: a request that arrives while the first one is still asking the registry
  attaches to it. Across daemons the builder Job's deterministic name does the same:
  a 409 on create means "attach". A Job left by an earlier *failed* build is replaced,
  and so is one still suspended ``environment_grace`` after its creation (abandoned).
- A builder Job is created suspended; its inputs (``-context`` ConfigMap, ``-push``
  Secret) are then written with create-or-replace: a rebuild meets those of the old Job
  of that name until the cluster's garbage collector removes them, and takes them over.
  When they cannot be written the Job is deleted and the build fails: never a builder
  suspended for ever.
- Every waiting workload is written on the Job (``waiter.zwmd.io/<id>``), so a
  restarted daemon rebuilds its build workloads from the listed builder Jobs and still
  tells each of them; the Job's ``zwmd.io/state`` says whether that was done already.
- The builder Job is read with :func:`~zwmd.engine.reasons.observe`, the same rules as
  runners; a failure becomes ``BuildFailed`` (``DeadlineExceeded`` for the Job's
  deadline), with the last lines of the builder's log in the message. A failed build
  fails every workload waiting for it. Refused registry credentials fail at once.
- The log side (notes in waiting workloads' streams, the builder Job's TTL after its
  final lines are stored) is :mod:`zwmd.engine.buildlogs`; runner pull Secrets are
  :mod:`zwmd.engine.pullsecrets`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from zwmd.engine.attempts import next_attempt
from zwmd.engine.buildlogs import BuildLogs
from zwmd.engine.imagehooks import ImageHooks
from zwmd.engine.kubereading import job_failed, parse_time
from zwmd.engine.pullsecrets import PullSecrets
from zwmd.engine.reasons import Observation, observe
from zwmd.engine.reconciling import EngineListener, EngineTiming, Reconciler
from zwmd.engine.registry import Entry, Registry
from zwmd.engine.runners import SpecConflict
from zwmd.engine.workload import Workload
from zwmd.images.builder import (
    builder_job,
    context_configmap,
    push_secret,
    waiter_annotation,
    waiters_of,
)
from zwmd.images.credentials import CredentialSource
from zwmd.images.modes import ImageConfig, decide
from zwmd.images.registry import ImageRef, RegistryAuthError
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.informer import Change, Informer
from zwmd.kube.jobs import PodPolicy
from zwmd.logs.pipeline import LogPipeline
from zwmd.logs.store import LogStore
from zwmd.metrics import Metrics
from zwmd.states import Reason, State

__all__ = ["ImageBuilds"]

log = logging.getLogger(__name__)

_CREATE_TRIES = 10


class BuilderNotStarted(Exception):
    """The builder Job was created, but its inputs or its start could not be written."""


@dataclass
class _Build:
    image: str
    job_name: str
    owner: str  # the workload id on the Job: its log holds the builder's
    started: float = field(default_factory=time.monotonic)
    waiters: dict[str, Entry] = field(default_factory=dict)
    created: bool = False
    done: bool = False
    first_seen: dict[str, datetime] = field(default_factory=dict)


class ImageBuilds:
    """The build workloads of one daemon: the builder kind of its reconciler."""

    name = naming.KIND_BUILDER

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        registry: Registry,
        reconciler: Reconciler,
        listener: EngineListener,
        config: ImageConfig,
        policy: PodPolicy,
        store: LogStore,
        metrics: Metrics,
        *,
        timing: EngineTiming,
        pipeline: LogPipeline | None = None,
        ttl_seconds_after_finished: int | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.kube = kube
        self.informer = informer
        self.registry = registry
        self.reconciler = reconciler
        self.listener = listener
        self.timing = timing
        self.config = config
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.pipeline = pipeline
        self.logs = BuildLogs(
            kube, informer, store, pipeline, ttl_seconds_after_finished=ttl_seconds_after_finished
        )
        self.hooks = ImageHooks(config, metrics)
        self.credentials = credentials or CredentialSource(
            config_path=config.registry_config,
            secret_name=config.registry_secret,
            kube=kube,
            hook=self.hooks.credentials if config.plugins is not None else None,
        )
        self.builds: dict[str, _Build] = {}  # full image -> the build in flight
        self.by_job: dict[str, _Build] = {}  # builder Job name -> its build
        self.pulls = PullSecrets(kube, self.credentials, local=config.local)

    def _now(self) -> datetime:
        return self.reconciler.clock()

    # ------------------------------------------------------------------ the API

    async def request(
        self,
        workload_id: str,
        *,
        image_name: str,
        dockerfile: str = "",
        timeout_seconds: int = 0,
        reuse_images: dict[str, str] | None = None,
    ) -> Workload:
        """Answer one build request: the workload, terminal when no build was needed."""
        decision = decide(self.config, image_name, reuse_images or {})
        current = self.registry.get(workload_id)
        if current is not None and not current.workload.is_terminal:
            if current.kind == naming.KIND_RUNNER:
                raise SpecConflict(
                    f"workload {workload_id} is {current.workload.state}: its runner is "
                    "active; cancel it first or use another id"
                )
            if current.target == decision.build:
                return current.workload
        known = current.workload if current is not None else self.registry.recent(workload_id)
        attempt = await next_attempt(self.store, workload_id, known)
        now = self._now()
        if decision.build is None:
            record = self._new_record(workload_id, attempt, now)
            if decision.failure:
                self._finish(record, State.FAILED, Reason.BUILD_FAILED, decision.failure)
                await self.logs.note(record.workload, decision.failure, logging.ERROR, close=True)
            else:
                record.workload.image = decision.image or image_name
                self._finish(record, State.SUCCEEDED, None, decision.message)
                if self.config.local:
                    log.info("workload %s: %s", workload_id, decision.message)
                    await self.logs.note(record.workload, decision.message, logging.INFO)
            return record.workload
        full = decision.build
        record = self._new_record(workload_id, attempt, now, target=full)
        build = self.builds.get(full)
        if build is not None and not build.done:
            await self._attach(build, record)
            return record.workload
        build = _Build(full, naming.builder_job_name(full), owner=workload_id)
        self.builds[full] = build
        build.waiters[workload_id] = record
        record.workload.job_name = build.job_name
        try:
            auths = await self.credentials.auths(ImageRef.parse(full).registry)
            exists = await self.hooks.exists(full, auths)
        except RegistryAuthError as exc:
            await self._resolve(build, Reason.BUILD_FAILED, Reason.BUILD_FAILED.message(detail=exc))
            return record.workload
        if exists:
            await self._resolve(build, None, f"The image {full} exists; no build needed.")
            return record.workload
        try:
            await self._start(build, dockerfile, timeout_seconds)
        except Exception as exc:  # Kubernetes, or a plugin (prepare_push, builder_job)
            detail = f"the builder Job {build.job_name} could not be created: {exc}"
            if isinstance(exc, BuilderNotStarted):
                detail = str(exc)
            await self._resolve(
                build, Reason.BUILD_FAILED, Reason.BUILD_FAILED.message(detail=detail)
            )
        return record.workload

    async def cancel(self, record: Entry) -> None:
        workload = record.workload
        if workload.is_terminal:
            return
        build = self.builds.get(record.target)
        if build is not None:
            remaining = [r for wid, r in build.waiters.items() if wid != workload.id]
            if build.created and not any(not r.workload.is_terminal for r in remaining):
                await self.kube.delete("jobs", build.job_name, propagation="Background")
        self._finish(record, State.CANCELLED, Reason.CANCELLED, Reason.CANCELLED.message())
        if build is None:
            return
        build.waiters.pop(workload.id, None)
        if build.created and not any(not r.workload.is_terminal for r in build.waiters.values()):
            build.done = True
            self.builds.pop(build.image, None)
            self.by_job.pop(build.job_name, None)

    async def pull_secrets(self, image: str) -> list[str]:
        """The ``imagePullSecrets`` a runner of ``image`` needs (created or refreshed)."""
        return await self.pulls.secrets_for(image)

    # ------------------------------------------------------------------ requests

    def _new_record(self, workload_id: str, attempt: int, now: datetime, target: str = "") -> Entry:
        workload = Workload(
            id=workload_id,
            kind=naming.KIND_BUILDER,
            state=State.BUILDING,
            submitted_at=now,
            attempt=attempt,
            job_name=naming.builder_job_name(target) if target else "-",
        )
        if not target:
            workload.job_name = ""  # decided at once: no Job
        record = self.registry.put(Entry(workload, target=target))
        self.metrics.transition(None, State.BUILDING.value)
        return record

    def _finish(self, record: Entry, state: State, reason: Reason | None, message: str) -> None:
        now = self._now()
        observation = Observation(state=state, message=message, reason=reason, finished_at=now)
        transition = record.workload.apply(observation, now)
        if transition is not None:
            self.listener.transitioned(record.workload, transition)
        record.finished.set()
        self.registry.evict(record)  # its notes are written by whoever holds it

    async def _attach(self, build: _Build, record: Entry) -> None:
        build.waiters[record.workload.id] = record
        record.workload.job_name = build.job_name
        if build.created:
            await self._write_waiters(build, [record])

    async def _write_waiters(self, build: _Build, records: list[Entry]) -> None:
        notes = {waiter_annotation(r.workload.id): str(r.workload.attempt) for r in records}
        if notes:
            await self.kube.patch("jobs", build.job_name, {"metadata": {"annotations": notes}})

    async def _start(self, build: _Build, dockerfile: str, timeout_seconds: int) -> None:
        """Create the builder Job (or attach to the one that runs), its inputs, and start it."""
        plan = self.hooks.plan(build.image, dockerfile, build.job_name, timeout_seconds)
        pod = await self.hooks.builder_pod(plan)
        owner = build.waiters[build.owner].workload
        job = builder_job(
            plan,
            pod,
            workload_id=owner.id,
            attempt=owner.attempt,
            policy=self.policy,
            ttl_seconds_after_finished=None,  # set once the logs are stored
        )
        for _ in range(_CREATE_TRIES):
            try:
                created = await self.kube.create("jobs", job)
                break
            except KubeError as exc:
                if exc.code != 409:
                    raise
            existing = await self._existing(build.job_name)
            if existing is not None:
                self._adopt_running(build, existing)
                await self._write_waiters(build, list(build.waiters.values()))
                self._kick(build)
                return
            await anyio.sleep(0.2)
        else:
            raise KubeError(409, "AlreadyExists", f"{build.job_name} is still being deleted")
        build.created = True
        self.by_job[build.job_name] = build
        self.informer.remember("jobs", created)
        try:
            auths = await self.credentials.auths(plan.registry)
            # a ConfigMap/Secret left by an earlier builder Job of this name (the garbage
            # collector has not reached it yet) is replaced, and owned by this Job
            await self.kube.create_or_replace("configmaps", context_configmap(created, plan))
            await self.kube.create_or_replace("secrets", push_secret(created, plan, auths))
            late = [r for wid, r in build.waiters.items() if wid != owner.id]
            await self._write_waiters(build, late)
            await self.kube.patch("jobs", build.job_name, {"spec": {"suspend": False}})
        except Exception as exc:
            # never a builder suspended for ever: it goes, and the build fails (a retry
            # starts anew); not followed any more, so its absence is not "lost"
            self.by_job.pop(build.job_name, None)
            await self._delete_quietly(build.job_name)
            raise BuilderNotStarted(
                f"the builder Job {build.job_name} could not be started, so it was deleted: "
                f"its inputs could not be written ({exc})"
            ) from exc
        self._kick(build)

    async def _delete_quietly(self, name: str) -> None:
        try:
            await self.kube.delete("jobs", name, propagation="Background")
        except Exception as exc:  # it is then abandoned, and replaced: see _stuck_at
            log.warning("builder Job %s could not be deleted: %s", name, exc)

    def _stuck_at(self, job: Obj, now: datetime) -> datetime | None:
        """When a builder Job still suspended counts as abandoned (whoever created it never
        wrote its inputs: a daemon stopped mid-start); None for one that was started."""
        if not (job.get("spec") or {}).get("suspend"):
            return None
        created = parse_time(job["metadata"].get("creationTimestamp")) or now
        return created + timedelta(seconds=self.timing.environment_grace)

    async def _existing(self, name: str) -> Obj | None:
        """A builder Job to attach to, or None after deleting one of a failed build."""
        try:
            job = await self.kube.get("jobs", name)
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        stuck_at = self._stuck_at(job, self._now())
        stuck = stuck_at is not None and self._now() >= stuck_at
        if job["metadata"].get("deletionTimestamp") or job_failed(job) or stuck:
            await self.kube.delete("jobs", name, propagation="Background")
            return None
        return job

    def _adopt_running(self, build: _Build, job: Obj) -> None:
        labels = job["metadata"].get("labels") or {}
        build.owner = str(labels.get(naming.LABEL_WORKLOAD_ID) or build.owner)
        build.created = True
        self.by_job[build.job_name] = build
        self.informer.remember("jobs", job)

    # ------------------------------------------------------------------ the reconciler's kind

    def keys_listed(self, resource: str) -> Iterable[str]:
        if resource == "jobs":
            for job in self.informer.jobs.values():
                self._readopt(job)
        return list(self.by_job)

    def keys_changed(self, change: Change) -> Iterable[str]:
        return (change.job_name,) if change.job_name in self.by_job else ()

    async def after_work(self) -> None:
        pass  # builds are never queued

    def _readopt(self, job: Obj) -> None:
        """After a restart: the build workloads written on a builder Job we do not know."""
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        name = meta.get("name", "")
        if labels.get(naming.LABEL_KIND) != naming.KIND_BUILDER or name in self.by_job:
            return
        image = (meta.get("annotations") or {}).get(naming.ANN_IMAGE, "")
        waiters = waiters_of(job)
        if not image or all(wid in self.registry for wid in waiters):
            return
        state = (meta.get("annotations") or {}).get(naming.ANN_STATE, "")
        submitted = parse_time(meta.get("creationTimestamp")) or self._now()
        build = _Build(image, name, owner=str(labels.get(naming.LABEL_WORKLOAD_ID) or ""))
        build.created = True
        for wid, attempt in waiters.items():
            if wid in self.registry:
                continue
            record = self._new_record(wid, attempt, submitted, target=image)
            build.waiters[wid] = record
        if state in (State.SUCCEEDED.value, State.FAILED.value):
            done = Workload.from_job(job)  # told before the restart: restore quietly
            for record in build.waiters.values():
                record.workload.image = image if state == State.SUCCEEDED.value else ""
                self._finish(record, done.state, done.reason, done.message)
            return
        self.by_job[name] = build
        self.builds.setdefault(image, build)

    def _kick(self, build: _Build) -> None:
        if not build.done:
            self.reconciler.kick(self.name, build.job_name)

    async def reconcile(self, key: str) -> None:
        build = self.by_job.get(key)
        if build is None or build.done:
            return
        job = self.informer.job(build.job_name)
        if job is None:
            if build.created and "jobs" in self.informer.listed:
                message = Reason.JOB_LOST.message(job_name=build.job_name)
                await self._resolve(build, Reason.JOB_LOST, message)
            return
        now = self._now()
        stuck_at = self._stuck_at(job, now)
        if stuck_at is not None and now >= stuck_at:
            detail = (
                f"the builder Job {build.job_name} was never started (its inputs were not "
                "written), so it was deleted; request the build again"
            )
            await self._resolve(
                build, Reason.BUILD_FAILED, Reason.BUILD_FAILED.message(detail=detail)
            )
            await self._delete_quietly(build.job_name)
            return
        pods = self.informer.pods_of(build.job_name)
        obs = observe(
            job,
            pods,
            [],
            now,
            image_pull_grace=self.timing.image_pull_grace,
            unschedulable_deadline=self.timing.unschedulable_deadline,
            first_seen=build.first_seen,
        )
        build.first_seen = dict(obs.first_seen)
        recheck = [at for at in (obs.recheck_at, stuck_at) if at is not None]
        self.reconciler.recheck(self.name, build.job_name, min(recheck) if recheck else None)
        if obs.state is State.SUCCEEDED:
            await self._resolve(build, None, f"Built and pushed {build.image}.")
        elif obs.state is State.FAILED:
            await self._failed(build, job, pods, obs)
        else:
            for record in build.waiters.values():
                if not record.workload.is_terminal:
                    observation = Observation(State.BUILDING, obs.message, obs.reason)
                    record.workload.apply(observation, now)

    async def _failed(self, build: _Build, job: Obj, pods: list[Obj], obs: Observation) -> None:
        tail = await self.logs.tail(build.job_name, pods)
        if obs.reason is Reason.DEADLINE_EXCEEDED:
            deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
            reason = Reason.DEADLINE_EXCEEDED
            message = f"The image build exceeded its timeout of {deadline}s and was stopped."
        else:
            reason = Reason.BUILD_FAILED
            message = Reason.BUILD_FAILED.message(detail=obs.message)
        if tail:
            message += "\nLast lines of the builder log:\n" + "\n".join(tail)
        if not job_failed(job):
            # failed by a zwmd rule (image pull, unschedulable): stop the Job, a retry starts anew
            await self.kube.delete("jobs", build.job_name, propagation="Background")
        await self._resolve(build, reason, message, tail=tail)

    # ------------------------------------------------------------------ resolution

    async def _resolve(
        self, build: _Build, reason: Reason | None, message: str, *, tail: list[str] | None = None
    ) -> None:
        """The build ended: tell every waiting workload, count it, record it on the Job."""
        if build.done:
            return
        build.done = True
        if self.builds.get(build.image) is build:
            del self.builds[build.image]
        self.by_job.pop(build.job_name, None)
        seconds = time.monotonic() - build.started
        if reason is None:
            self.metrics.build("built" if build.created else "cache_hit", seconds)
        else:
            self.metrics.build("failed", seconds)
        waiting = [r for r in build.waiters.values() if not r.workload.is_terminal]
        for record in waiting:
            if reason is None:
                record.workload.image = build.image
                self._finish(record, State.SUCCEEDED, None, message)
            else:
                self._finish(record, State.FAILED, reason, message)
        if build.created or reason is not None:
            self.reconciler.spawn(lambda: self._after(build, waiting, reason, message, tail or []))

    async def _after(
        self,
        build: _Build,
        records: list[Entry],
        reason: Reason | None,
        message: str,
        tail: list[str],
    ) -> None:
        workloads = [record.workload for record in records]
        if not build.created:
            await self.logs.refused(workloads, message)
            return
        await self.logs.finished(
            job_name=build.job_name,
            image=build.image,
            owner=build.owner,
            waiting=workloads,
            reason=reason,
            message=message,
            tail=tail,
        )
