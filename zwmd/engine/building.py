"""Runner images: build workloads, shared builder Jobs, and who is told when they end.

:class:`ImageBuilds` answers ``POST /v1/workloads/{id}/build``. A request is decided by
:func:`zwmd.images.modes.decide`; in the build mode the image is looked up in the registry
(``zwmd_image_exists`` hook, with credentials from :class:`~zwmd.images.credentials.CredentialSource`)
and, when missing, built by one builder Job per full image name.

Design notes:

- A build workload is a :class:`~zwmd.engine.workload.Workload` of kind ``builder``, kept
  in memory per workload id (the ZenML workload id, which its runner uses next). Its
  ``image`` stays empty until the image exists: the adapter returns as soon as it is set.
- Identical requests share one :class:`_Build` (per full image name) from the first
  moment: a request that arrives while the first one is still asking the registry
  attaches to it. Across daemons the builder Job's deterministic name does the same:
  a 409 on create means "attach". A Job left by an earlier *failed* build is replaced.
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
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from zwmd.engine.buildlogs import BuildLogs
from zwmd.engine.kubereading import parse_time, true_conditions
from zwmd.engine.pullsecrets import PullSecrets
from zwmd.engine.reactor import Reactor
from zwmd.engine.reasons import Observation, observe
from zwmd.engine.states import Reason, State
from zwmd.engine.workload import Workload
from zwmd.images.builder import (
    BuildPlan,
    builder_job,
    builder_pod_pieces,
    context_configmap,
    push_secret,
    waiter_annotation,
    waiters_of,
)
from zwmd.images.credentials import CredentialSource
from zwmd.images.modes import ImageConfig, decide
from zwmd.images.registry import ImageRef, RegistryAuthError
from zwmd.kube import naming
from zwmd.kube.client import KubeError, Obj
from zwmd.kube.jobs import PodPolicy
from zwmd.logs.pipeline import LogPipeline
from zwmd.logs.store import LogStore
from zwmd.metrics import Metrics
from zwmd.plugins import resolve

__all__ = ["ImageBuilds"]

log = logging.getLogger(__name__)

TAIL_LINES = 20
MAX_RECORDS = 10_000
_CREATE_TRIES = 10


@dataclass
class _Record:
    workload: Workload
    target: str = ""  # the full image being built ("" when decided at once)
    finished: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class _Build:
    image: str
    job_name: str
    owner: str  # the workload id on the Job: its log holds the builder's
    started: float = field(default_factory=time.monotonic)
    waiters: dict[str, _Record] = field(default_factory=dict)
    created: bool = False
    done: bool = False
    kicked: bool = False
    working: bool = False
    first_seen: dict[str, datetime] = field(default_factory=dict)


class ImageBuilds:
    """Build workloads of one daemon, and a subscriber of the reactor's watches."""

    def __init__(
        self,
        reactor: Reactor,
        config: ImageConfig,
        policy: PodPolicy,
        store: LogStore,
        metrics: Metrics,
        *,
        pipeline: LogPipeline | None = None,
        ttl_seconds_after_finished: int | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.reactor = reactor
        self.kube = reactor.kube
        self.config = config
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.pipeline = pipeline
        self.logs = BuildLogs(
            reactor.kube, store, pipeline, ttl_seconds_after_finished=ttl_seconds_after_finished
        )
        self.credentials = credentials or CredentialSource(
            config_path=config.registry_config,
            secret_name=config.registry_secret,
            kube=reactor.kube,
            hook=self._credentials_hook if config.plugins is not None else None,
        )
        self.records: OrderedDict[str, _Record] = OrderedDict()  # workload id -> latest
        self.builds: dict[str, _Build] = {}  # full image -> the build in flight
        self.by_job: dict[str, _Build] = {}  # builder Job name -> its build
        self.pulls = PullSecrets(reactor.kube, self.credentials, local=config.local)

    # ------------------------------------------------------------------ the API

    def resolve(self, workload_id: str) -> _Record | None:
        return self.records.get(workload_id)

    def workloads(self) -> list[Workload]:
        return [record.workload for record in self.records.values()]

    async def wait(self, record: _Record, timeout: float) -> Workload:
        with anyio.move_on_after(timeout):
            await record.finished.wait()
        return record.workload

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
        current = self.records.get(workload_id)
        if current and not current.workload.is_terminal and current.target == decision.build:
            return current.workload
        attempt = await self._attempt(workload_id)
        now = self.reactor.clock()
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
            exists = await self._exists(full)
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
            await self._resolve(
                build, Reason.BUILD_FAILED, Reason.BUILD_FAILED.message(detail=detail)
            )
        return record.workload

    async def cancel(self, record: _Record) -> None:
        workload = record.workload
        if workload.is_terminal:
            return
        self._finish(record, State.CANCELLED, Reason.CANCELLED, Reason.CANCELLED.message())
        build = self.builds.get(record.target)
        if build is None:
            return
        build.waiters.pop(workload.id, None)
        if build.created and not any(not r.workload.is_terminal for r in build.waiters.values()):
            build.done = True
            self.builds.pop(build.image, None)
            self.by_job.pop(build.job_name, None)
            await self.kube.delete("jobs", build.job_name, propagation="Background")

    async def pull_secrets(self, image: str) -> list[str]:
        """The ``imagePullSecrets`` a runner of ``image`` needs (created or refreshed)."""
        return await self.pulls.secrets_for(image)

    # ------------------------------------------------------------------ requests

    async def _attempt(self, workload_id: str) -> int:
        """The attempt the next runner of this id gets (its log key is shared)."""
        tracked = self.reactor.tracked.get(workload_id)
        if tracked is not None:
            return tracked.workload.attempt + (1 if tracked.workload.is_terminal else 0)
        return max(await self.store.attempts(workload_id), default=1)

    def _new_record(
        self, workload_id: str, attempt: int, now: datetime, target: str = ""
    ) -> _Record:
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
        record = _Record(workload, target)
        self.records[workload.id] = record
        self.records.move_to_end(workload.id)
        self.metrics.transition(None, State.BUILDING.value)
        while len(self.records) > MAX_RECORDS:
            self.records.popitem(last=False)
        return record

    def _finish(self, record: _Record, state: State, reason: Reason | None, message: str) -> None:
        now = self.reactor.clock()
        observation = Observation(state=state, message=message, reason=reason, finished_at=now)
        transition = record.workload.apply(observation, now)
        if transition is not None:
            self.reactor.listener.transitioned(record.workload, transition)
        record.finished.set()

    async def _exists(self, image: str) -> bool | None:
        hook = getattr(self.config.plugins, "hook", None)
        if hook is None:
            return None
        auths = await self.credentials.auths(ImageRef.parse(image).registry)
        with anyio.move_on_after(self.config.check_timeout):
            try:
                answer = await resolve(
                    hook.zwmd_image_exists(settings=self.config.settings, image=image, auths=auths)
                )
            except RegistryAuthError:
                raise
            except Exception as exc:  # a plugin's bug must not stop builds
                log.warning("zwmd_image_exists(%s) failed: %r; building", image, exc)
                self.metrics.hook_error("zwmd_image_exists")
                return None
            return None if answer is None else bool(answer)
        log.warning(
            "zwmd_image_exists(%s) took over %ss; building", image, self.config.check_timeout
        )
        return None

    async def _credentials_hook(self, host: str) -> dict[str, Any] | None:
        hook = self.config.plugins.hook
        answer = await resolve(
            hook.zwmd_registry_credentials(settings=self.config.settings, registry=host)
        )
        return answer if isinstance(answer, dict) else None

    async def _attach(self, build: _Build, record: _Record) -> None:
        build.waiters[record.workload.id] = record
        record.workload.job_name = build.job_name
        if build.created:
            await self._write_waiters(build, [record])

    async def _write_waiters(self, build: _Build, records: list[_Record]) -> None:
        notes = {waiter_annotation(r.workload.id): str(r.workload.attempt) for r in records}
        if notes:
            await self.kube.patch("jobs", build.job_name, {"metadata": {"annotations": notes}})

    async def _start(self, build: _Build, dockerfile: str, timeout_seconds: int) -> None:
        """Create the builder Job (or attach to the one that runs), its inputs, and start it."""
        registry = ImageRef.parse(build.image).registry
        plan = BuildPlan(
            image=build.image,
            dockerfile=dockerfile,
            job_name=build.job_name,
            registry=registry,
            insecure=registry in self.config.insecure_registries,
            builder_image=self.config.builder_image,
            builder_args=self.config.builder_args,
            resources=dict(self.config.builder_resources),
            timeout_seconds=timeout_seconds,
        )
        for prepared in self.config.plugins.hook.zwmd_prepare_push(
            settings=self.config.settings, image=build.image
        ):
            await resolve(prepared)
        answer = await resolve(
            self.config.plugins.hook.zwmd_builder_job(settings=self.config.settings, plan=plan)
        )
        owner = build.waiters[build.owner].workload
        job = builder_job(
            plan,
            builder_pod_pieces(answer),
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
        self.reactor.jobs.setdefault(build.job_name, created)
        auths = await self.credentials.auths(registry)
        for resource, obj in (
            ("configmaps", context_configmap(created, plan)),
            ("secrets", push_secret(created, plan, auths)),
        ):
            try:
                await self.kube.create(resource, obj)
            except KubeError as exc:
                if exc.code != 409:
                    raise
                await self.kube.patch(resource, obj["metadata"]["name"], {"data": obj["data"]})
        late = [r for wid, r in build.waiters.items() if wid != owner.id]
        await self._write_waiters(build, late)
        await self.kube.patch("jobs", build.job_name, {"spec": {"suspend": False}})
        self._kick(build)

    async def _existing(self, name: str) -> Obj | None:
        """A builder Job to attach to, or None after deleting one of a failed build."""
        try:
            job = await self.kube.get("jobs", name)
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        failed = {"Failed", "FailureTarget"} & set(true_conditions(job))
        if job["metadata"].get("deletionTimestamp") or failed:
            await self.kube.delete("jobs", name, propagation="Background")
            return None
        return job

    def _adopt_running(self, build: _Build, job: Obj) -> None:
        labels = job["metadata"].get("labels") or {}
        build.owner = str(labels.get(naming.LABEL_WORKLOAD_ID) or build.owner)
        build.created = True
        self.by_job[build.job_name] = build
        self.reactor.jobs.setdefault(build.job_name, job)

    # ------------------------------------------------------------------ watching

    async def on_listed(self, resource: str, items: list[Obj]) -> None:
        if resource == "jobs":
            for job in items:
                self._readopt(job)
        for build in list(self.by_job.values()):
            self._kick(build)

    async def on_event(self, resource: str, event_type: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if resource == "jobs":
            name = meta.get("name", "")
        else:
            labels = meta.get("labels") or {}
            name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or ""
        build = self.by_job.get(name)
        if build is not None:
            self._kick(build)

    def _readopt(self, job: Obj) -> None:
        """After a restart: the build workloads written on a builder Job we do not know."""
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        name = meta.get("name", "")
        if labels.get(naming.LABEL_KIND) != naming.KIND_BUILDER or name in self.by_job:
            return
        image = (meta.get("annotations") or {}).get(naming.ANN_IMAGE, "")
        waiters = waiters_of(job)
        if not image or all(wid in self.records for wid in waiters):
            return
        state = (meta.get("annotations") or {}).get(naming.ANN_STATE, "")
        submitted = parse_time(meta.get("creationTimestamp")) or self.reactor.clock()
        build = _Build(image, name, owner=str(labels.get(naming.LABEL_WORKLOAD_ID) or ""))
        build.created = True
        for wid, attempt in waiters.items():
            if wid in self.records:
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
        if build.done:
            return
        if build.working:
            build.kicked = True
            return
        build.working = True
        self.reactor.spawn(lambda: self._work(build))

    async def _work(self, build: _Build) -> None:
        try:
            while True:
                build.kicked = False
                try:
                    await self._reconcile(build)
                except KubeError as exc:
                    log.warning("build of %s: %s (retrying on the next event)", build.image, exc)
                if not build.kicked or build.done:
                    break
        finally:
            build.working = False

    async def _reconcile(self, build: _Build) -> None:
        job = self.reactor.jobs.get(build.job_name)
        if job is None:
            if build.created and "jobs" in self.reactor.listed:
                message = Reason.JOB_LOST.message(job_name=build.job_name)
                await self._resolve(build, Reason.JOB_LOST, message)
            return
        now = self.reactor.clock()
        pods = list(self.reactor.pods.get(build.job_name, {}).values())
        obs = observe(
            job,
            pods,
            [],
            now,
            image_pull_grace=self.reactor.timing.image_pull_grace,
            unschedulable_deadline=self.reactor.timing.unschedulable_deadline,
            first_seen=build.first_seen,
        )
        build.first_seen = dict(obs.first_seen)
        if obs.recheck_at is not None:
            self._recheck(build, (obs.recheck_at - now).total_seconds())
        if obs.state is State.SUCCEEDED:
            await self._resolve(build, None, f"Built and pushed {build.image}.")
        elif obs.state is State.FAILED:
            await self._failed(build, job, pods, obs)
        else:
            for record in build.waiters.values():
                if not record.workload.is_terminal:
                    observation = Observation(State.BUILDING, obs.message, obs.reason)
                    record.workload.apply(observation, now)

    def _recheck(self, build: _Build, delay: float) -> None:
        async def later() -> None:
            await anyio.sleep(max(0.0, delay))
            self._kick(build)

        self.reactor.spawn(later)

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
        if not ({"Failed", "FailureTarget"} & set(true_conditions(job))):
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
            self.reactor.spawn(lambda: self._after(build, waiting, reason, message, tail or []))

    async def _after(
        self,
        build: _Build,
        records: list[_Record],
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
