"""One long-running list+watch of one resource kind, feeding raw dicts to a handler.

Design notes (the watch loop is split from processing, as in kopf):

- A watcher lists once, hands the whole list to ``handler.on_listed`` (the reconcile
  point: whatever is not in the list is gone), then watches from the list's
  resourceVersion and hands each event to ``handler.on_event`` as a plain dict.
- It tracks the resourceVersion of every event and of every BOOKMARK, so a closed
  stream (the server's ``timeoutSeconds``, a dropped connection) resumes where it
  stopped, without a re-list and without replaying what it already saw.
- ``410 Expired`` (as an ERROR event or an HTTP status) means the history is gone:
  re-list. Nothing else forces a re-list.
- No event and no bookmark for ``inactivity_timeout`` seconds means the stream is stuck
  (a half-open TCP connection, a silent partition never says so): drop it and resume.
  The client's stream enforces it (:class:`~zwmd.kube.client.StreamStalled`, the same
  timeout as a log follow's) and tells the readiness probe.
- 429 and 5xx back off exponentially with jitter, honouring ``Retry-After``; a
  connection error backs off the same way. The backoff resets after a good list or
  stream.
- Liveness for the health probe: before every wait the loop says how long that wait may
  last (a list or opening a stream: ``inactivity_timeout``; a stream: the inactivity
  timeout, after which it reconnects itself; a back-off: its delay), plus
  ``liveness_grace``. ``seconds_overdue()`` is how far past that the loop is: 0 while it
  lists, streams, reconnects or backs off as designed, and growing only when it is stuck
  (a handler that never returns, a request that never ends). Reconnecting is not stuck.
- ``reachable`` is False from a failed request (no connection, or 5xx) until the next
  request that succeeds: the readiness probe's "the apiserver is unreachable". A
  refusal (401, 403: RBAC, a revoked token) is kept in ``refused``, in words that name
  the verb to grant, for the probe to say; the loop backs off and tries again, since a
  Role can be fixed while the daemon runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import anyio
import orjson
from anyio.abc import TaskStatus

from zwmd.backoff import Backoff
from zwmd.kube.client import KubeClient, KubeError, Obj


class WatchHandler(Protocol):
    """Where a watcher delivers what it sees; called in order, one call at a time."""

    async def on_listed(self, resource: str, items: list[Obj]) -> None: ...

    async def on_event(self, resource: str, event_type: str, obj: Obj) -> None: ...


class WatchObserver(Protocol):
    """Counters a watcher reports to (metrics); every method must be cheap."""

    def watch_event(self, resource: str, event_type: str) -> None: ...

    def watch_restart(self, resource: str, cause: str) -> None: ...

    def watch_relist(self, resource: str) -> None: ...


class _SilentObserver:
    def watch_event(self, resource: str, event_type: str) -> None:
        pass

    def watch_restart(self, resource: str, cause: str) -> None:
        pass

    def watch_relist(self, resource: str) -> None:
        pass


@dataclass
class WatchTiming:
    """How long to wait for what; the defaults suit a real apiserver."""

    server_timeout: int = 300  # asked of the server per stream (it closes, we resume)
    inactivity_timeout: float = 150.0  # no event or bookmark this long: reconnect
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    liveness_grace: float = 60.0  # how late past an expected wake-up counts as stuck


class _Expired(Exception):
    """The resourceVersion we hold is older than the server's history."""


@dataclass
class Watcher:
    """List+watch of ``resource`` (label-selected) in the client's namespace."""

    kube: KubeClient
    resource: str
    label_selector: str
    handler: WatchHandler
    timing: WatchTiming = field(default_factory=WatchTiming)
    observer: WatchObserver = field(default_factory=_SilentObserver)
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep

    resource_version: str = ""
    listed: bool = False  # at least one list has succeeded
    reachable: bool = False  # the last request to the apiserver succeeded
    refused: str = ""  # why the apiserver refused the last request (401, 403), explained
    last_error: str = ""  # the last failed request, explained ("": none since a success)
    last_progress: float = field(default_factory=time.monotonic)
    _backoff: Backoff = field(init=False)
    _due: float = math.inf  # when the loop must show life again (inf: not running)

    def seconds_since_progress(self) -> float:
        """Seconds since the loop last did something (listed, connected, got a line)."""
        return time.monotonic() - self.last_progress

    def seconds_overdue(self) -> float:
        """How long past its expected next sign of life the loop is: > 0 means stuck."""
        return max(0.0, time.monotonic() - self._due)

    def _progress(self, expect: float | None = None) -> None:
        """A sign of life; the next one is due within ``expect`` seconds (plus the grace)."""
        now = time.monotonic()
        self.last_progress = now
        wait = self.timing.inactivity_timeout if expect is None else expect
        self._due = now + wait + self.timing.liveness_grace

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run forever; signals ``task_status`` once the first list was delivered."""
        started = False
        must_list = True
        while True:
            try:
                if must_list:
                    await self._list()
                    must_list = False
                    if not started:
                        task_status.started()
                        started = True
                await self._stream()
            except _Expired:
                self.observer.watch_restart(self.resource, "410")
                must_list = True
            except TimeoutError:
                self.observer.watch_restart(self.resource, "timeout")
            except KubeError as exc:
                if exc.code == 410:
                    self.observer.watch_restart(self.resource, "410")
                    must_list = True
                    continue
                self.reachable = exc.code != 0 and exc.code < 500
                self.refused = exc.explained() if exc.refused else ""
                self.last_error = exc.explained()
                self.observer.watch_restart(self.resource, "error")
                await self._back_off(exc.retry_after)

    def __post_init__(self) -> None:
        self._backoff = Backoff(self.timing.backoff_initial, self.timing.backoff_max)

    async def _back_off(self, retry_after: float | None) -> None:
        delay = self._backoff.next(retry_after)
        self._progress(expect=delay)
        await self.sleep(delay)
        self._progress()

    async def _list(self) -> None:
        self._progress()
        items, version = await self.kube.list(self.resource, label_selector=self.label_selector)
        self.reachable, self.refused, self.last_error = True, "", ""
        self._backoff.reset()
        self._progress()
        self.observer.watch_relist(self.resource)
        self.resource_version = version
        await self.handler.on_listed(self.resource, items)
        self.listed = True

    async def _stream(self) -> None:
        self._progress()
        # the client bounds the wait for the headers and for every next line alike
        stream = await self.kube.watch(
            self.resource,
            resource_version=self.resource_version,
            label_selector=self.label_selector,
            timeout_seconds=self.timing.server_timeout,
            inactivity_timeout=self.timing.inactivity_timeout,
        )
        self.reachable, self.refused, self.last_error = True, "", ""
        self._backoff.reset()
        async with stream:
            lines = stream.lines().__aiter__()
            while True:
                self._progress()
                try:
                    line = await lines.__anext__()
                except StopAsyncIteration:
                    return  # the server ended the stream: resume from where we are
                except TimeoutError:
                    raise  # stalled (StreamStalled): resume, counted as a timeout
                except (aiohttp.ClientError, OSError) as exc:  # cut mid-stream
                    raise KubeError(0, "Unreachable", f"watch {self.resource}: {exc!r}") from exc
                await self._dispatch(orjson.loads(line))

    async def _dispatch(self, event: dict[str, Any]) -> None:
        event_type: str = event.get("type", "")
        obj: Obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise _Expired()
            raise KubeError(
                int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", "")
            )
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        self.observer.watch_event(self.resource, event_type)
        if event_type != "BOOKMARK":
            await self.handler.on_event(self.resource, event_type, obj)
