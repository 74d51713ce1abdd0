"""What the API asks of the daemon, answered from the engine, the log store and metrics.

Design notes:

- This is the only place where the API's words (``run``, ``cancel``, ``logs``) meet the
  engine's (:class:`~zwmd.engine.runners.Runners`, :class:`~zwmd.engine.imagebuilds.ImageBuilds`,
  the :class:`~zwmd.engine.registry.Registry`) and the log store's (``append``,
  ``follow``). It holds no state of its own, and uses only the engine's public methods.
- A workload id names its latest request (a build, then the run that follows it). A
  workload that finished and was evicted from the registry is read back as it was
  recorded: from the registry's recent records, else from its Job's annotations in the
  informer's cache, for as long as the Job exists.
- Messages posted for a workload (ZenML's ``log()``) go straight to the log store, even
  for ids zwmd has never seen: ZenML says "Starting pipeline run." before it asks for the
  run. :func:`~zwmd.engine.attempts.message_attempt` says which attempt they join. One
  message is at most ``ApiLimits.message_bytes``; what is kept for ids no workload has
  is bounded by :class:`~zwmd.daemon.unknownids.UnknownIds`.
- Reading logs by an id that no workload has and that has no logs (or that no log
  store could hold) is a 404, resolved before the streaming response starts.
- A run is measured before anything is written for it, pull Secrets included
  (:meth:`~zwmd.engine.runners.Runners.check`).
- A queued run's JSON also says where it stands (:meth:`DaemonOperations.shown`):
  ``queue_position`` (1: the next to start), ``active_runs`` and
  ``max_concurrent_runs`` (the slots of ``ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS``).
  Only added fields, only while it is queued: what the ZenML adapter reads is unchanged.
- A run needs an image on a cluster, whose kubelets pull it; in local mode the process
  kubelet ignores images, so a run without one gets :data:`LOCAL_IMAGE`. Elsewhere it is
  refused, 422 naming ``image``.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio

from zwmd.api import (
    ApiLimits,
    BuildRequest,
    Conflict,
    Invalid,
    Misconfigured,
    NotFound,
    Refused,
    RunRequest,
    Unavailable,
)
from zwmd.daemon.unknownids import UnknownIds
from zwmd.engine.attempts import message_attempt, next_attempt
from zwmd.engine.imagebuilds import ImageBuilds
from zwmd.engine.reconciling import EngineListener
from zwmd.engine.registry import Registry
from zwmd.engine.runners import Runners, RunSpec, SpecConflict
from zwmd.engine.speckey import SpecKeyError
from zwmd.engine.workload import RecordError, Workload
from zwmd.kube import naming
from zwmd.kube.connectivity import Connectivity
from zwmd.kube.informer import Informer
from zwmd.kube.jobs import PodPolicy
from zwmd.kube.sizes import check_data
from zwmd.logs.records import LogRecord, level_from_name, to_raw, to_text, to_zenml
from zwmd.logs.store import InvalidKey, LogKey, LogStore
from zwmd.metrics import Metrics
from zwmd.states import State

log = logging.getLogger(__name__)

ZWMD_SOURCE = "zwmd"
#: the image of a run sent without one, in local mode (the process kubelet ignores it)
LOCAL_IMAGE = "local"
#: how long a log read waits for an ended run's last lines (under the client's 30 s)
LOG_SETTLE_SECONDS = 20.0
#: ``format=``: ZenML's LogEntry lines; text with control characters escaped; as stored.
_RENDERERS: dict[str, Callable[[LogRecord], str]] = {
    "zenml": to_zenml,
    "text": to_text,
    "raw": to_raw,
}


@dataclass
class DaemonOperations:
    """The :class:`zwmd.api.Operations` of a running daemon."""

    informer: Informer
    registry: Registry
    runners: Runners
    images: ImageBuilds
    policy: PodPolicy
    logs_store: LogStore
    metrics: Metrics
    max_loop_lag: float = 5.0
    loop_lag: Callable[[], float] = lambda: 0.0
    listener: EngineListener | None = None
    connectivity: Connectivity | None = None
    limits: ApiLimits = field(default_factory=ApiLimits)
    unknown: UnknownIds = field(init=False)

    def __post_init__(self) -> None:
        self.unknown = UnknownIds(self.limits)

    # -- probes -------------------------------------------------------------------------
    #
    # Both are cheap: attribute reads, no I/O. A stuck event loop cannot answer at all
    # (the probes are served on it), so the kubelet's timeout and systemd's watchdog see
    # it; a loop that is merely late by more than ``max_loop_lag`` is reported here.

    def readiness(self) -> tuple[bool, str]:
        """Both watches have listed, the last request of each reached the apiserver, and
        no request or watch that timed out (a silent partition) is still unrecovered."""
        watchers = self.informer.watchers
        for watcher in watchers:
            if watcher.refused:
                return False, f"the {watcher.resource} watch: {watcher.refused}"
        if not self.informer.synced or not all(w.listed for w in watchers):
            return False, "the watches have not listed yet"
        for watcher in watchers:
            if not watcher.reachable:
                return False, f"the {watcher.resource} watch: the apiserver is unreachable"
        problem = None if self.connectivity is None else self.connectivity.problem()
        if problem is not None:
            return False, problem
        return True, "ready"

    def _check_following(self) -> None:
        """A Job created while a watch is refused would never be followed: refuse it."""
        for watcher in self.informer.watchers:
            if watcher.refused:
                raise Unavailable(
                    f"zwmd cannot follow workloads, so nothing was done: the "
                    f"{watcher.resource} watch: {watcher.refused}"
                )

    def healthy(self) -> tuple[bool, str]:
        """False when the event loop lags or a watch loop is stuck (not when it reconnects)."""
        lag = self.loop_lag()
        if lag > self.max_loop_lag:
            return False, f"the event loop is {lag:.1f}s late"
        for watcher in self.informer.watchers:
            overdue = watcher.seconds_overdue()
            if overdue > 0:
                idle = watcher.seconds_since_progress()
                return False, (
                    f"the {watcher.resource} watch is stuck: no sign of life for {idle:.0f}s"
                )
        return True, "ok"

    def metrics_exposition(self) -> tuple[bytes, str]:
        return self.metrics.exposition()

    # -- workloads ----------------------------------------------------------------------

    def _known(self, workload_id: str) -> Workload | None:
        """The latest record of this id: active, finished lately, or on its Job."""
        entry = self.registry.get(workload_id)
        if entry is not None:
            return entry.workload
        recent = self.registry.recent(workload_id)
        if recent is not None:
            return recent
        job_name = self.registry.job_name(workload_id)
        job = self.informer.job(job_name) if job_name else None
        if job is None:
            return None
        try:
            return Workload.from_job(job)
        except RecordError:
            return None

    def shown(self, workload: Workload, positions: dict[str, int] | None = None) -> dict[str, Any]:
        """``workload.to_api()``, with its place in the queue while it is queued.

        :param positions: :meth:`AdmissionQueue.positions`, when many are shown at once.
        """
        body = workload.to_api()
        if workload.state is not State.QUEUED or workload.kind != naming.KIND_RUNNER:
            return body
        queue = self.registry.queue
        position = queue.position(workload.id) if positions is None else positions.get(workload.id)
        if position is not None:
            body["queue_position"] = position
            body["active_runs"] = queue.active
            body["max_concurrent_runs"] = self.runners.admission.max_active
        return body

    def _find(self, id_or_alias: str) -> Workload:
        known = self._known(self.registry.id_of(id_or_alias))
        if known is None:
            raise NotFound(f"no workload has the id or alias {id_or_alias!r}")
        return known

    async def run(
        self, workload_id: str, request: RunRequest, request_key: str = ""
    ) -> tuple[dict[str, Any], bool]:
        """Run a workload, or return the one this request (``request_key``) already made."""
        self._check_following()
        known = self._known(workload_id)
        retried = request_key and known is not None and known.request_key == request_key
        if retried and known is not None and known.is_terminal:
            return known.to_api(), False  # a retry whose first try ran: not a new attempt
        image = request.image or self._default_image()
        spec = RunSpec(
            image=image,
            command=tuple(request.command),
            arguments=tuple(request.arguments),
            environment=dict(request.environment),
            timeout_seconds=request.timeout_seconds,
        )
        attempt = await next_attempt(self.logs_store, workload_id, self._known(workload_id))
        self.runners.check(self.policy, workload_id, spec, attempt=attempt)
        policy = self.policy
        try:
            pulls = await self.images.pull_secrets(image)
        except Exception as exc:  # the pull may need none; Kubernetes will say if it did
            log.warning("pull credentials for %s: %s", image, exc)
            pulls = []
        if pulls:
            policy = replace(policy, image_pull_secrets=(*policy.image_pull_secrets, *pulls))
        try:
            workload, created = await self.runners.submit(
                policy, workload_id, spec, attempt=attempt, request_key=request_key
            )
        except SpecConflict as exc:
            raise Conflict(str(exc)) from exc
        except SpecKeyError as exc:
            raise Misconfigured(f"run requests cannot be hashed: {exc}") from exc
        self.unknown.forget(workload_id)
        if created:
            # counted as created (queued), though admission may have moved it on already
            self.metrics.transition(None, State.QUEUED.value)
        return self.shown(workload), created

    def _default_image(self) -> str:
        """The image of a run sent without one: :data:`LOCAL_IMAGE`, in local mode only."""
        if self.images.config.local:
            return LOCAL_IMAGE
        raise Invalid(
            "image",
            "a runner image is required: the cluster's kubelets pull it (only "
            "zwmd serve --local, whose pods are host processes, runs without one)",
        )

    async def build(self, workload_id: str, request: BuildRequest) -> dict[str, Any]:
        self._check_following()
        check_data("dockerfile", [request.dockerfile], self.runners.limits)  # its ConfigMap
        try:
            built = await self.images.request(
                workload_id,
                image_name=request.image_name,
                dockerfile=request.dockerfile,
                timeout_seconds=request.timeout_seconds,
                reuse_images=dict(request.reuse_images),
            )
        except SpecConflict as exc:
            raise Conflict(str(exc)) from exc
        except SpecKeyError as exc:
            raise Misconfigured(f"run requests cannot be hashed: {exc}") from exc
        self.unknown.forget(workload_id)
        return built.to_api()

    def get(self, id_or_alias: str) -> dict[str, Any]:
        return self.shown(self._find(id_or_alias))

    def list(self, state: str | None) -> list[dict[str, Any]]:
        if state is not None and state not in {s.value for s in State}:
            raise NotFound(f"state: {state!r} is not one of {', '.join(s.value for s in State)}")
        items = {entry.workload.id: entry.workload for entry in self.registry.entries()}
        for record in self.registry.recent_records():
            items.setdefault(record.id, record)
        for job in self.informer.jobs.values():  # finished long ago, while the Job exists
            labels = job["metadata"].get("labels") or {}
            wid = labels.get(naming.LABEL_WORKLOAD_ID)
            if labels.get(naming.LABEL_KIND) != naming.KIND_RUNNER or not wid or wid in items:
                continue
            if self.registry.job_name(wid) == job["metadata"].get("name"):
                known = self._known(wid)
                if known is not None:
                    items[wid] = known
        ordered = sorted(items.values(), key=lambda w: (w.submitted_at, w.id))
        positions = self.registry.queue.positions()
        return [self.shown(w, positions) for w in ordered if state is None or w.state == state]

    def workload_states(self) -> builtins.list[str]:
        """The state of every workload this daemon answers for (the metrics' gauge).

        Active entries and recent records as they are; the rest from the state written on
        their latest Job, without parsing the whole record.
        """
        states = {
            entry.workload.id: entry.workload.state.value for entry in self.registry.entries()
        }
        for record in self.registry.recent_records():
            states.setdefault(record.id, record.state.value)
        for job in self.informer.jobs.values():
            meta = job["metadata"]
            labels = meta.get("labels") or {}
            wid = labels.get(naming.LABEL_WORKLOAD_ID)
            if labels.get(naming.LABEL_KIND) != naming.KIND_RUNNER or not wid or wid in states:
                continue
            if self.registry.job_name(wid) == meta.get("name"):
                states[wid] = (meta.get("annotations") or {}).get(naming.ANN_STATE, "")
        return list(states.values())

    async def wait(self, id_or_alias: str, timeout: float) -> dict[str, Any]:
        entry = self.registry.resolve(id_or_alias)
        if entry is None:
            return self.shown(self._find(id_or_alias))
        with anyio.move_on_after(timeout):
            await entry.finished.wait()
        return self.shown(entry.workload)

    async def cancel(self, id_or_alias: str) -> dict[str, Any] | None:
        """Cancel; None once done, or the workload while its cancel is still under way."""
        entry = self.registry.resolve(id_or_alias)
        if entry is None:
            self._find(id_or_alias)  # 404 for an id never seen; a finished one stays as it is
            return None
        if entry.kind == naming.KIND_BUILDER:
            await self.images.cancel(entry)
            return None
        if await self.runners.cancel(entry):
            return None
        return entry.workload.to_api()

    # -- logs ---------------------------------------------------------------------------

    async def log(self, id_or_alias: str, message: str, level: str) -> None:
        size = len(message.encode())
        if size > self.limits.message_bytes:
            raise Refused(
                413,
                "message",
                f"{size} bytes, more than ZWMD_LOG_MESSAGE_MAX_BYTES ({self.limits.message_bytes})",
            )
        workload_id = self.registry.id_of(id_or_alias)
        known = self._known(workload_id)
        if known is not None:
            self.unknown.forget(workload_id)
            await self._append_message(workload_id, known, message, level)
            return
        with self.unknown.reserve(workload_id, size):
            await self._append_message(workload_id, known, message, level)

    async def _append_message(
        self, workload_id: str, known: Workload | None, message: str, level: str
    ) -> None:
        attempt = await message_attempt(self.logs_store, workload_id, known)
        record = LogRecord.at(
            datetime.now(UTC), ZWMD_SOURCE, level_from_name(level), message, attempt
        )
        await self.logs_store.append(LogKey(workload_id, attempt), [record])

    async def logs(self, id_or_alias: str, *, fmt: str, follow: bool) -> AsyncIterator[bytes]:
        workload_id = self.registry.id_of(id_or_alias)
        known = self._known(workload_id)
        if known is None and not await self._stored_attempts(workload_id):
            raise NotFound(f"no workload and no logs for the id or alias {id_or_alias!r}")
        render = _RENDERERS.get(fmt, to_text)
        if (
            follow
            and known is not None
            and known.kind == naming.KIND_RUNNER
            and not known.is_terminal
        ):
            records = _follow_attempt(self.logs_store, workload_id, known.attempt)
        else:
            if known is not None and known.is_terminal:
                await self._settled(workload_id)
            records = self.logs_store.read(workload_id)
        return _lines(records, render, batch=1 if follow else 256)

    async def _settled(self, workload_id: str) -> None:
        """Wait (up to :data:`LOG_SETTLE_SECONDS`) for an ended workload's last lines to be
        stored: its entry leaves the registry once they are. A caller that saw the run
        end reads its whole log, though the final fetch or the store is slow."""
        entry = self.registry.get(workload_id)
        if entry is not None:
            with anyio.move_on_after(LOG_SETTLE_SECONDS):
                await entry.evicted.wait()

    async def _stored_attempts(self, workload_id: str) -> builtins.list[int]:
        try:
            return await self.logs_store.attempts(workload_id)
        except InvalidKey:  # no store could have kept anything under it
            return []


async def _follow_attempt(
    store: LogStore, workload_id: str, attempt: int
) -> AsyncIterator[LogRecord]:
    """The earlier attempts' records, then ``attempt``'s as they come, until it is closed.

    The running attempt is followed by number: it may have no record yet (its pod has not
    printed), and following the latest *stored* attempt would end with the previous one.
    """
    for earlier in await store.attempts(workload_id):
        if earlier < attempt:
            async for record in store.read(workload_id, attempt=earlier):
                yield record
    async for record in store.follow(workload_id, attempt=attempt):
        yield record


async def _lines(
    records: AsyncIterator[LogRecord], render: Callable[[LogRecord], str], *, batch: int
) -> AsyncIterator[bytes]:
    pending: list[str] = []
    async for record in records:
        pending.append(render(record))
        if len(pending) >= batch:
            yield ("\n".join(pending) + "\n").encode()
            pending.clear()
    if pending:
        yield ("\n".join(pending) + "\n").encode()
