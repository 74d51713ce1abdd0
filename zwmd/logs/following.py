"""Following one container's log into the log store, each line exactly once.

Design notes:

- The stream is asked with ``timestamps=true``: the kubelet's timestamp is what orders
  lines, resumes a dropped stream (``sinceTime``) and de-duplicates the replay
  (:class:`~zwmd.logs.merging.Deduper`, from the store's checkpoint). So a stream that
  drops, a daemon that restarts, and the final fetch after the container ended all
  store each line once, in order.
- The follower keeps following while the container may still write. When the stream
  ends and the container is known to have ended, it does one last fetch without
  ``follow`` from its mark: whatever the kubelet flushed after the stream closed is
  picked up there.
- Records are appended per received chunk (one append can hold thousands of lines), so
  the store's durability cost is paid per chunk, not per line.
- Every read has an inactivity timeout, as a watch has (the client's
  :class:`~zwmd.kube.client.StreamStalled`): a silent partition stops a connection
  without closing it, and a follow that waited for ever would lose the rest of the log
  (the pipeline closes it after its finish timeout). No byte for ``inactivity_timeout``
  seconds: abandon the stream and resume from the mark, as after a drop. A container
  that merely prints nothing costs one renewed request per timeout, and the renewal
  replays only the lines of the mark's second, which the deduper drops.
- A pod that is gone (404) ends the follower: what was stored is all there is.
- A stream cut mid-response (aiohttp's ``ClientPayloadError``, a server that
  disconnects) is a drop like any other: resume from the mark. Only what was framed
  into complete lines was stored, so nothing half-received is kept.
- The run's secret values are masked while the stream is framed into lines
  (:mod:`zwmd.logs.masking`), so a value split across two reads is masked whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import anyio

from zwmd.kube.client import KubeClient, KubeError
from zwmd.logs.masking import Masker
from zwmd.logs.merging import Deduper, pod_records
from zwmd.logs.records import KubeletLineParser
from zwmd.logs.store import LogKey, LogStore, SourceMark

log = logging.getLogger(__name__)

_NS = 1_000_000_000


def since_time(mark: SourceMark | None) -> str | None:
    """The ``sinceTime`` (whole seconds, RFC 3339) to resume after ``mark``."""
    if mark is None:
        return None
    moment = datetime.fromtimestamp(mark.since_ns // _NS, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerLogFollower:
    """Copies the log of one container of one pod into ``store`` under ``key``."""

    kube: KubeClient
    store: LogStore
    key: LogKey
    pod: str
    container: str
    source: str
    #: whether the container has ended (read from the pipeline's pod cache)
    ended: Callable[[], bool]
    on_stored: Callable[[int, int], None] = lambda lines, nbytes: None
    retry_delay: float = 1.0
    #: seconds without a byte after which the stream is abandoned and resumed
    inactivity_timeout: float | None = 60.0
    #: masks the run's secret values (None: nothing to mask)
    masker: Masker | None = None
    mark: SourceMark | None = field(default=None, init=False)

    async def run(self) -> None:
        checkpoint = await self.store.checkpoint(self.key)
        self.mark = checkpoint.mark(self.source) if checkpoint else None
        early_ends = 0  # times the stream closed before the pod watch said the container ended
        while True:
            final = self.ended()
            try:
                await self._fetch(follow=not final)
            except KubeError as exc:
                if exc.code == 404:
                    return  # the pod is gone: what was stored is all there is
                if exc.code == 400 and final:
                    # the container ended without a log the kubelet will serve (it never
                    # started, say): asking again cannot help
                    log.info("no log for ended container of pod %s: %s", self.pod, exc.message)
                    return
                log.info("log stream of pod %s dropped (%s); resuming", self.pod, exc)
                await anyio.sleep(self.retry_delay)
                continue
            except (OSError, TimeoutError, anyio.EndOfStream, aiohttp.ClientError) as exc:
                log.info("log stream of pod %s dropped (%r); resuming", self.pod, exc)
                await anyio.sleep(self.retry_delay)
                continue
            if final:
                return
            if not self.ended():
                # the stream closed while the container runs, as far as the pod watch
                # knows: mostly the container has just ended and the watch has not said so
                # yet, so the first time is routine; again and again, a drop worth a word
                early_ends += 1
                level = logging.INFO if early_ends > 1 else logging.DEBUG
                log.log(level, "log stream of pod %s ended while it runs; resuming", self.pod)
                await anyio.sleep(min(self.retry_delay, 0.2))

    async def _fetch(self, *, follow: bool) -> None:
        stream = await self.kube.pod_log(
            self.pod,
            container=self.container,
            follow=follow,
            since_time=since_time(self.mark),
            inactivity_timeout=self.inactivity_timeout,
        )
        parser = KubeletLineParser(masker=self.masker)
        deduper = Deduper(self.mark)
        async with stream:
            async for chunk in stream.chunks():
                await self._store(deduper(parser.feed(chunk)))
        if not follow:
            # only the final fetch may store a last line without its newline: a stream
            # that dropped mid-line replays that line whole when it resumes
            await self._store(deduper(parser.flush()))

    async def _store(self, lines: list[tuple[int, str]]) -> None:
        if not lines:
            return
        records = pod_records(lines, source=self.source, attempt=self.key.attempt)
        checkpoint = await self.store.append(self.key, records)
        self.mark = checkpoint.mark(self.source)
        self.on_stored(len(records), sum(len(r.message) for r in records))
