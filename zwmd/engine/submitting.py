"""Turning a run request into a suspended runner Job and its environment Secret.

Design notes:

- Idempotent by construction: the Job's name comes from the workload id (and attempt),
  so a create that is retried (by ZenML, by the adapter, by a restarted daemon) answers
  409 and is *adopted* when its spec hash matches, refused when it does not.
- A request under the id of an active workload with the same spec returns that workload;
  with a different spec it is a conflict. Under the id of a finished workload it starts a
  new attempt (ZenML resumes runs under the same id): a new Job, the old one kept until
  its TTL, and the logs of both attempts kept.
- Order of writes: Job (suspended) → Secret (owned by the Job) → admission. A crash in
  between leaves a suspended Job whose pod cannot start without its Secret; the next
  submission of the same request re-creates the Secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zwmd.engine.reactor import Reactor
from zwmd.engine.states import State
from zwmd.engine.workload import Workload, aliases_from_arguments, spec_hash
from zwmd.kube import naming
from zwmd.kube.client import KubeError
from zwmd.kube.jobs import PodPolicy, environment_secret, runner_job


class SpecConflict(Exception):
    """A different request is already active under this workload id."""


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: Sequence[str] = ()
    arguments: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0

    def digest(self) -> str:
        return spec_hash(
            self.image, self.command, self.arguments, self.environment, self.timeout_seconds
        )


def attempt_job_name(workload_id: str, attempt: int) -> str:
    base = naming.job_name(workload_id)
    return base if attempt <= 1 else f"{base}-{attempt}"


async def submit_run(
    reactor: Reactor,
    policy: PodPolicy,
    workload_id: str,
    spec: RunSpec,
    *,
    first_attempt: int = 1,
) -> tuple[Workload, bool]:
    """Create (or find) the runner workload; returns it and whether it is new.

    ``first_attempt`` numbers a workload this daemon does not track (its Job is gone):
    the caller knows from the log store which attempts already ran under the id.
    """
    digest = spec.digest()
    now = reactor.clock()
    aliases = aliases_from_arguments(spec.arguments)
    current = reactor.tracked.get(workload_id)
    if current is not None and not current.workload.is_terminal:
        if current.workload.spec_hash == digest:
            return current.workload, False
        raise SpecConflict(
            f"workload {workload_id} is {current.workload.state} with another spec; "
            "cancel it first or use another id"
        )
    if current is not None:
        workload = current.workload.new_attempt(
            image=spec.image, spec_hash=digest, aliases=aliases, now=now
        )
    else:
        workload = Workload(
            id=workload_id,
            state=State.QUEUED,
            image=spec.image,
            submitted_at=now,
            aliases=aliases,
            spec_hash=digest,
            attempt=first_attempt,
        )
    workload.job_name = attempt_job_name(workload_id, workload.attempt)
    tracked = reactor.track(workload, creating=True)
    try:
        job = runner_job(
            name=workload.job_name,
            workload_id=workload_id,
            image=spec.image,
            command=spec.command,
            arguments=spec.arguments,
            timeout_seconds=spec.timeout_seconds,
            annotations=workload.annotations(),
            policy=policy,
        )
        try:
            created = await reactor.kube.create("jobs", job)
        except KubeError as exc:
            if exc.code != 409:
                raise
            created = await reactor.kube.get("jobs", workload.job_name)
            existing = Workload.from_job(created)
            if existing.spec_hash != digest:
                raise SpecConflict(
                    f"Job {workload.job_name} exists with another spec for workload {workload_id}"
                ) from exc
            tracked.workload = existing
        await _ensure_secret(reactor, created, spec.environment)
        reactor.jobs.setdefault(workload.job_name, created)
    except BaseException:
        if current is not None:
            reactor.tracked[workload_id] = current
        else:
            reactor.tracked.pop(workload_id, None)
        raise
    finally:
        tracked.creating = False
    await reactor.kick_admission()
    return tracked.workload, True


async def _ensure_secret(reactor: Reactor, job: dict[str, object], env: Mapping[str, str]) -> None:
    secret = environment_secret(job, env)
    try:
        await reactor.kube.create("secrets", secret)
    except KubeError as exc:
        if exc.code != 409:
            raise
        await reactor.kube.patch("secrets", secret["metadata"]["name"], {"data": secret["data"]})
