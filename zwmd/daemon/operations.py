"""What the API asks of the daemon, answered from the reactor, the log store and metrics.

Design notes:

- This is the only place where the API's words (``run``, ``cancel``, ``logs``) meet the
  engine's (``submit_run``, ``Reactor.cancel``) and the log store's (``append``,
  ``follow``). It holds no state of its own.
- Messages posted for a workload (ZenML's ``log()``) go straight to the log store, even
  for ids zwmd has never seen: ZenML says "Starting pipeline run." before it asks for the
  run. They are filed under the workload's current attempt (the first before any run), so
  a message sent after the run ended stays with that run.
- Reading logs by an id that no workload has and that has no logs is a 404, resolved
  before the streaming response starts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from zwmd.api import BuildRequest, Conflict, NotFound, RunRequest
from zwmd.engine.building import ImageBuilds
from zwmd.engine.reactor import Reactor
from zwmd.engine.states import State
from zwmd.engine.submitting import RunSpec, SpecConflict, submit_run
from zwmd.engine.workload import Workload
from zwmd.kube.jobs import PodPolicy
from zwmd.kube.watching import Watcher
from zwmd.logs.merging import attempt_for_message
from zwmd.logs.records import LogRecord, level_from_name, to_text, to_zenml
from zwmd.logs.store import LogKey, LogStore
from zwmd.metrics import Metrics

log = logging.getLogger(__name__)

ZWMD_SOURCE = "zwmd"


@dataclass
class DaemonOperations:
    """The :class:`zwmd.api.Operations` of a running daemon."""

    reactor: Reactor
    policy: PodPolicy
    logs_store: LogStore
    metrics: Metrics
    watchers: tuple[Watcher, ...]
    max_loop_lag: float = 5.0
    loop_lag: Callable[[], float] = lambda: 0.0
    #: runner images: build workloads (ids shared with the runner that follows them)
    images: ImageBuilds | None = None

    # -- probes -------------------------------------------------------------------------
    #
    # Both are cheap: attribute reads, no I/O. A stuck event loop cannot answer at all
    # (the probes are served on it), so the kubelet's timeout and systemd's watchdog see
    # it; a loop that is merely late by more than ``max_loop_lag`` is reported here.

    @property
    def ready(self) -> bool:
        """Both watches have listed, and the last request of each reached the apiserver."""
        return self.reactor.ready and all(w.listed and w.reachable for w in self.watchers)

    def healthy(self) -> tuple[bool, str]:
        """False when the event loop lags or a watch loop is stuck (not when it reconnects)."""
        lag = self.loop_lag()
        if lag > self.max_loop_lag:
            return False, f"the event loop is {lag:.1f}s late"
        for watcher in self.watchers:
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

    async def run(self, workload_id: str, request: RunRequest) -> tuple[dict[str, Any], bool]:
        spec = RunSpec(
            image=request.image,
            command=tuple(request.command),
            arguments=tuple(request.arguments),
            environment=dict(request.environment),
            timeout_seconds=request.timeout_seconds,
        )
        policy = self.policy
        if self.images is not None:
            try:
                pulls = await self.images.pull_secrets(request.image)
            except Exception as exc:  # the pull may need none; Kubernetes will say if it did
                log.warning("pull credentials for %s: %s", request.image, exc)
                pulls = []
            if pulls:
                policy = replace(policy, image_pull_secrets=(*policy.image_pull_secrets, *pulls))
        try:
            workload, created = await submit_run(
                self.reactor,
                policy,
                workload_id,
                spec,
                first_attempt=await self._first_attempt(workload_id),
            )
        except SpecConflict as exc:
            raise Conflict(str(exc)) from exc
        if created:
            # counted as created (queued), though admission may have moved it on already
            self.metrics.transition(None, State.QUEUED.value)
        return workload.to_api(), created

    async def _first_attempt(self, workload_id: str) -> int:
        """For an id no Job tracks: after the last attempt whose logs were completed."""
        if self.reactor.tracked.get(workload_id) is not None:
            return 1  # unused: the tracked record numbers the next attempt
        attempts = await self.logs_store.attempts(workload_id)
        if not attempts:
            return 1
        last = max(attempts)
        checkpoint = await self.logs_store.checkpoint(LogKey(workload_id, last))
        return last + 1 if checkpoint is not None and checkpoint.closed else last

    async def build(self, workload_id: str, request: BuildRequest) -> dict[str, Any]:
        if self.images is None:  # a daemon without images: the requested name is the answer
            now = datetime.now(UTC)
            workload = Workload(
                id=workload_id,
                kind="builder",
                state=State.SUCCEEDED,
                image=request.image_name,
                message="No build needed: runner images are not configured.",
                submitted_at=now,
                finished_at=now,
            )
            return workload.to_api()
        built = await self.images.request(
            workload_id,
            image_name=request.image_name,
            dockerfile=request.dockerfile,
            timeout_seconds=request.timeout_seconds,
            reuse_images=dict(request.reuse_images),
        )
        return built.to_api()

    def _tracked(self, id_or_alias: str) -> Any:
        """The runner workload of this id or alias, else its build workload."""
        tracked = self.reactor.resolve(id_or_alias)
        if tracked is not None:
            return tracked
        if self.images is not None and (record := self.images.resolve(id_or_alias)):
            return record
        raise NotFound(f"no workload has the id or alias {id_or_alias!r}")

    def get(self, id_or_alias: str) -> dict[str, Any]:
        api: dict[str, Any] = self._tracked(id_or_alias).workload.to_api()
        return api

    def list(self, state: str | None) -> list[dict[str, Any]]:
        if state is not None and state not in {s.value for s in State}:
            raise NotFound(f"state: {state!r} is not one of {', '.join(s.value for s in State)}")
        items = [t.workload for t in self.reactor.tracked.values()]
        if self.images is not None:  # a build whose runner exists is shown by the runner
            items += [w for w in self.images.workloads() if w.id not in self.reactor.tracked]
        items.sort(key=lambda w: (w.submitted_at, w.id))
        return [w.to_api() for w in items if state is None or w.state == state]

    async def wait(self, id_or_alias: str, timeout: float) -> dict[str, Any]:
        tracked = self._tracked(id_or_alias)
        record = self.images.resolve(id_or_alias) if self.images is not None else None
        if self.images is not None and record is not None and tracked is record:
            workload: Workload = await self.images.wait(record, timeout)
        else:
            workload = await self.reactor.wait(tracked, timeout)
        return workload.to_api()

    async def cancel(self, id_or_alias: str) -> None:
        tracked = self._tracked(id_or_alias)
        record = self.images.resolve(id_or_alias) if self.images is not None else None
        if self.images is not None and record is not None and tracked is record:
            await self.images.cancel(record)
        else:
            await self.reactor.cancel(tracked)

    # -- logs ---------------------------------------------------------------------------

    def _log_owner(self, id_or_alias: str) -> tuple[str, int | None]:
        tracked = self.reactor.resolve(id_or_alias)
        if tracked is None:
            return id_or_alias, None
        return tracked.workload.id, tracked.workload.attempt

    async def log(self, id_or_alias: str, message: str, level: str) -> None:
        workload_id, attempt = self._log_owner(id_or_alias)
        if attempt is None:  # before the run exists (or for an id never run): latest or first
            attempt = attempt_for_message(await self.logs_store.attempts(workload_id))
        record = LogRecord.at(
            datetime.now(UTC), ZWMD_SOURCE, level_from_name(level), message, attempt
        )
        await self.logs_store.append(LogKey(workload_id, attempt), [record])

    async def logs(self, id_or_alias: str, *, fmt: str, follow: bool) -> AsyncIterator[bytes]:
        workload_id, attempt = self._log_owner(id_or_alias)
        if attempt is None and not await self.logs_store.attempts(workload_id):
            raise NotFound(f"no workload and no logs for the id or alias {id_or_alias!r}")
        render = to_zenml if fmt == "zenml" else to_text
        if follow and attempt is not None and not self._terminal(workload_id):
            records = _follow_attempt(self.logs_store, workload_id, attempt)
        else:
            records = self.logs_store.read(workload_id)
        return _lines(records, render, batch=1 if follow else 256)

    def _terminal(self, workload_id: str) -> bool:
        tracked = self.reactor.tracked.get(workload_id)
        return tracked is None or tracked.workload.is_terminal


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
