"""What the logs of build workloads say, and when a builder Job may be garbage-collected.

Design notes:

- One builder Job serves every workload that asked for the same image; its pod's log is
  filed by the log pipeline under the first requester (the Job's ``zwmd.io/workload-id``).
  Every other waiting workload gets a zwmd line saying where that log is; when the build
  failed, the last lines of the builder's log are copied into its own stream too, and
  its attempt is closed (no runner will follow). A successful build leaves the attempt
  open for the runner.
- The outcome is recorded on the builder Job's annotations, and the Job gets its
  ``ttlSecondsAfterFinished`` only after the pipeline has the builder pod's final lines,
  as for runners: Kubernetes' garbage collector never races the logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import anyio

from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj
from zwmd.kube.informer import Informer
from zwmd.logs.merging import note_records
from zwmd.logs.pipeline import LogPipeline
from zwmd.logs.records import parse_kubelet_line
from zwmd.logs.store import LogKey, LogStore
from zwmd.states import Reason, State

log = logging.getLogger(__name__)

TAIL_LINES = 20


class BuildLogs:
    """The log side of builds: tails, notes in waiting workloads' streams, the Job's TTL."""

    def __init__(
        self,
        kube: KubeClient,
        informer: Informer,
        store: LogStore,
        pipeline: LogPipeline | None,
        *,
        ttl_seconds_after_finished: int | None,
    ) -> None:
        self.kube = kube
        self.informer = informer
        self.store = store
        self.pipeline = pipeline
        self.ttl = ttl_seconds_after_finished

    async def note(self, workload: Workload, text: str, level: int, *, close: bool = False) -> None:
        """Append a zwmd message to ``workload``'s stream (and close its attempt)."""
        key = LogKey(workload.id, workload.attempt)
        records = note_records(text, level=level, ts_ns=time.time_ns(), attempt=key.attempt)
        await self.store.append(key, records)
        if close:
            await self.store.close(key)

    async def tail(self, job_name: str, pods: list[Obj]) -> list[str]:
        """The last lines of the newest builder pod's log, read from Kubernetes."""
        if not pods:  # the Job's verdict can arrive before the pod watch's events
            try:
                pods = await self.informer.list_pods_of(job_name)
            except KubeError as exc:
                log.info("builder pods of %s: %s", job_name, exc)
        if not pods:
            return []
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        lines: list[str] = []
        with anyio.move_on_after(5.0):
            try:
                stream = await self.kube.pod_log(pod["metadata"]["name"], tail_lines=TAIL_LINES)
                async with stream:
                    async for raw in stream.lines():
                        text = raw.decode("utf-8", "replace")
                        parsed = parse_kubelet_line(text)
                        lines.append(parsed[1] if parsed else text)
            except KubeError as exc:
                log.info("builder log of %s: %s", pod["metadata"]["name"], exc)
        return lines[-TAIL_LINES:]

    async def refused(self, records: Sequence[Workload], message: str) -> None:
        """A build refused before any Job: each workload's own stream says why."""
        for workload in records:
            await self.note(workload, f"zwmd: {message}", logging.ERROR, close=True)

    async def finished(
        self,
        *,
        job_name: str,
        image: str,
        owner: str,
        waiting: Sequence[Workload],
        reason: Reason | None,
        message: str,
        tail: Sequence[str],
    ) -> None:
        """A builder Job ended: the waiting workloads' logs, then its outcome and TTL."""
        for workload in waiting:
            try:
                await self._tell(workload, job_name, image, owner, reason, message, tail)
            except Exception:
                log.exception("logs of build workload %s", workload.id)
        if self.pipeline is not None:
            await self.pipeline.settle(job_name)
        state = State.SUCCEEDED if reason is None else State.FAILED
        patch: dict[str, object] = {
            "metadata": {
                "annotations": {
                    naming.ANN_STATE: state.value,
                    naming.ANN_REASON: reason.value if reason else "",
                    naming.ANN_MESSAGE: message[:4000],
                    naming.ANN_LOGS_FLUSHED: "true",
                }
            }
        }
        if self.ttl is not None:
            patch["spec"] = {"ttlSecondsAfterFinished": self.ttl}
        try:
            await self.kube.patch("jobs", job_name, patch)
        except KubeError as exc:
            log.info("builder Job %s: outcome not recorded: %s", job_name, exc)

    async def _tell(
        self,
        workload: Workload,
        job_name: str,
        image: str,
        owner: str,
        reason: Reason | None,
        message: str,
        tail: Sequence[str],
    ) -> None:
        if workload.id == owner:
            if reason is not None and self.pipeline is not None:
                first = message.split("\nLast lines", 1)[0]
                key = LogKey(workload.id, workload.attempt)
                await self.pipeline.finish(key, job_name, failure=(reason.value, first))
            return
        where = f"its log is under workload {owner}"
        if reason is None:
            text = f"The image {image} was built by the builder Job {job_name} ({where})."
            await self.note(workload, text, logging.INFO)
            return
        first_line = message.split("\n", 1)[0]
        text = f"zwmd: the build failed ({reason.value}): {first_line} ({where})"
        if tail:
            text += "\nLast lines of the builder log:\n" + "\n".join(tail)
        await self.note(workload, text, logging.ERROR, close=True)
