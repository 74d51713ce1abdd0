"""Container logs of localkube's pods: append-only line buffers and the log route's reader.

A kubelet writes what a container prints with :meth:`PodLogs.append`; the HTTP route
``GET /api/v1/namespaces/{ns}/pods/{name}/log`` reads it with :meth:`PodLogs.stream`,
with the query parameters of the real API (``container``, ``follow``, ``timestamps``,
``tailLines``, ``sinceTime``, ``sinceSeconds``, ``previous``).

Design notes:

* One buffer per container *instance*: ``start`` (or ``rotate``) begins a new
  instance and keeps exactly one earlier one, which is what ``previous=true`` reads —
  as a kubelet keeps the log of the last terminated container only.
* A buffer is two parallel append-only lists, the arrival times (integer nanoseconds,
  never decreasing) and the lines (bytes, each ending in ``\\n``). ``sinceTime`` is a
  bisection on the times and ``tailLines`` an index, so a read of 100,000 lines costs
  O(n) and a follower never rescans what it has sent.
* A partial last line is held until its newline arrives or the container ends (then it
  is terminated with ``\\n``), so a reader only ever sees complete lines.
* Followers wait on one :class:`anyio.Event` per buffer, spent on every append: one
  wake-up per append call however many lines it brought, and a woken follower sends
  everything that arrived since, in chunks of up to 64 KiB of complete lines.
* ``stream`` validates eagerly (404 for a missing pod, 400 for a missing, unknown or
  not yet started container, or no previous instance) and raises the store's
  :class:`ApiError` *before* returning the iterator, so the route can answer with a
  proper ``Status`` before it starts a chunked response.
* :meth:`PodLogs.drop_streams` (fault injection) cuts every open read: the response
  ends early, while the container still runs, as when the apiserver's connection to the
  kubelet breaks; the logs stay.
* Timestamps are formatted like the kubelet's, RFC 3339 with exactly nine fractional
  digits (``2026-11-22T03:04:05.123456789Z``); the seconds part is cached.
"""

from __future__ import annotations

import bisect
import datetime
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from zwmd.localkube.errors import ApiError, bad_request, not_found

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

__all__ = ["PodLogs", "StreamDropped", "format_timestamp", "parse_timestamp"]

_CHUNK = 64 * 1024
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: str) -> int:
    """An RFC 3339 timestamp (any fraction up to nanoseconds) as nanoseconds since the epoch."""
    match = _RFC3339.match(value.strip())
    if match is None:
        raise bad_request(f'invalid sinceTime "{value}": not RFC 3339')
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    moment = datetime.datetime.fromisoformat(f"{day}T{clock}{zone}")
    nanos = int((fraction or "0").ljust(9, "0"))
    return int(moment.timestamp()) * 1_000_000_000 + nanos


_second_cache: dict[int, str] = {}


def format_timestamp(nanos: int) -> str:
    """Nanoseconds since the epoch as the kubelet writes them: ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
        prefix = _second_cache[seconds] = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{fraction:09d}Z"


class StreamDropped(ConnectionResetError):
    """An open log read was cut by :meth:`PodLogs.drop_streams` (the route ends it)."""


class _Buffer:
    """The log of one container instance."""

    __slots__ = ("changed", "drops", "ended", "lines", "partial", "readers", "stamps")

    def __init__(self) -> None:
        self.drops = 0  # bumped by PodLogs.drop_streams: open reads of this buffer end
        self.readers = 0  # reads open now
        self.stamps: list[int] = []
        self.lines: list[bytes] = []
        self.partial = b""
        self.ended = False
        self.changed: anyio.Event | None = None  # created by the first follower to wait

    def _now(self) -> int:
        now = time.time_ns()
        if self.stamps and now < self.stamps[-1]:
            now = self.stamps[-1]
        return now

    def _wake(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    async def wait(self) -> None:
        if self.changed is None:
            self.changed = anyio.Event()
        await self.changed.wait()

    def append(self, data: bytes) -> None:
        if self.ended or not data:
            return
        data = self.partial + data
        parts = data.split(b"\n")
        self.partial = parts.pop()
        if parts:
            now = self._now()
            self.lines.extend(part + b"\n" for part in parts)
            self.stamps.extend([now] * len(parts))
            self._wake()

    def close(self) -> None:
        if self.ended:
            return
        if self.partial:
            self.lines.append(self.partial + b"\n")
            self.stamps.append(self._now())
            self.partial = b""
        self.ended = True
        self._wake()


class _Container:
    __slots__ = ("current", "previous")

    def __init__(self) -> None:
        self.current: _Buffer | None = None
        self.previous: _Buffer | None = None

    def start(self) -> _Buffer:
        if self.current is not None:
            self.current.close()
            self.previous = self.current
        self.current = _Buffer()
        return self.current


class PodLogs:
    """The logs of every container of every pod, current and previous instance."""

    def __init__(self, store: Store | None = None) -> None:
        self._store = store
        self._pods: dict[tuple[str, str], dict[str, _Container]] = {}
        if store is not None:
            store.add_listener(self._on_change)

    def _on_change(
        self, event_type: str, resource: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        if resource == "pods" and event_type == "DELETED":
            meta = obj.get("metadata", {})
            self.forget(meta.get("namespace", ""), meta.get("name", ""))

    def _container(self, namespace: str, pod: str, container: str) -> _Container:
        containers = self._pods.setdefault((namespace, pod), {})
        entry = containers.get(container)
        if entry is None:
            entry = containers[container] = _Container()
        return entry

    # --- the kubelet's side ---------------------------------------------------------

    def start(self, namespace: str, pod: str, container: str) -> None:
        """A container (re)starts: a new, empty instance; the last one becomes ``previous``."""
        self._container(namespace, pod, container).start()

    rotate = start

    def append(self, namespace: str, pod: str, container: str, data: bytes) -> None:
        """Output of the running instance (started implicitly if it was not)."""
        entry = self._container(namespace, pod, container)
        buffer = entry.current or entry.start()
        buffer.append(data)

    def close(self, namespace: str, pod: str, container: str) -> None:
        """The running instance ended: its partial line is flushed and followers stop."""
        entry = self._pods.get((namespace, pod), {}).get(container)
        if entry is not None and entry.current is not None:
            entry.current.close()

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone: drop its logs and end every follower."""
        for entry in self._pods.pop((namespace, pod), {}).values():
            for buffer in (entry.current, entry.previous):
                if buffer is not None:
                    buffer.close()

    def drop_streams(self) -> int:
        """Cut every open read (fault injection); returns how many reads were cut."""
        count = 0
        for containers in self._pods.values():
            for entry in containers.values():
                for buffer in (entry.current, entry.previous):
                    if buffer is not None and buffer.readers:
                        buffer.drops += 1
                        buffer._wake()
                        count += buffer.readers
        return count

    def lines(
        self, namespace: str, pod: str, container: str, *, previous: bool = False
    ) -> list[bytes]:
        """The complete lines of one instance so far (for tests and diagnostics)."""
        entry = self._pods.get((namespace, pod), {}).get(container)
        buffer = None if entry is None else (entry.previous if previous else entry.current)
        return [] if buffer is None else list(buffer.lines)

    # --- the log route's side -------------------------------------------------------

    def _resolve(self, namespace: str, pod: str, container: str | None) -> str:
        """The container name to read, checked against the pod as the apiserver does."""
        containers = self._pods.get((namespace, pod))
        if self._store is None:
            if containers is None:
                raise not_found("pods", pod)
            names = list(containers)
        else:
            obj = self._store.get("pods", namespace, pod)
            spec = obj.get("spec", {})
            names = [c.get("name", "") for c in spec.get("containers", [])]
            init_names = [c.get("name", "") for c in spec.get("initContainers", [])]
            if container is not None and container in init_names:
                return container
        if container is None:
            if len(names) == 1:
                return names[0]
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {pod}, "
                f"choose one of: [{' '.join(names)}]",
            )
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        return container

    def _waiting_reason(self, namespace: str, pod: str, container: str) -> str:
        if self._store is not None:
            status = self._store.get("pods", namespace, pod).get("status", {})
            for entry in status.get("containerStatuses", []):
                waiting = entry.get("state", {}).get("waiting")
                if entry.get("name") == container and waiting:
                    return str(waiting.get("reason", "ContainerCreating"))
        return "ContainerCreating"

    def stream(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        tail_lines: int | None,
        since_time: str | None,
        previous: bool,
        since_seconds: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Chunks of complete log lines; raises :class:`ApiError` at once for a bad request."""
        name = self._resolve(namespace, pod, container)
        entry = self._pods.get((namespace, pod), {}).get(name)
        if previous:
            buffer = None if entry is None else entry.previous
            if buffer is None:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'previous terminated container "{name}" in pod "{pod}" not found',
                )
        else:
            buffer = None if entry is None else entry.current
            if buffer is None:
                reason = self._waiting_reason(namespace, pod, name)
                raise ApiError(
                    400,
                    "BadRequest",
                    f'container "{name}" in pod "{pod}" is waiting to start: {reason}',
                )
        since = None if since_time is None else parse_timestamp(since_time)
        if since_seconds is not None:
            floor = time.time_ns() - since_seconds * 1_000_000_000
            since = floor if since is None else max(since, floor)
        start = 0 if since is None else bisect.bisect_left(buffer.stamps, since)
        if tail_lines is not None:
            start = max(start, len(buffer.lines) - max(tail_lines, 0))
        return _read(buffer, start, follow=follow, timestamps=timestamps)


async def _read(
    buffer: _Buffer, start: int, *, follow: bool, timestamps: bool
) -> AsyncIterator[bytes]:
    position = start
    drops = buffer.drops
    buffer.readers += 1
    try:
        while True:
            end = len(buffer.lines)
            while position < end or buffer.drops != drops:
                if buffer.drops != drops:
                    raise StreamDropped("localkube: pod log stream dropped (fault injection)")
                chunk: list[bytes] = []
                size = 0
                while position < end and size < _CHUNK:
                    line = buffer.lines[position]
                    if timestamps:
                        line = format_timestamp(buffer.stamps[position]).encode() + b" " + line
                    chunk.append(line)
                    size += len(line)
                    position += 1
                yield b"".join(chunk)
            if not follow or buffer.ended:
                if position >= len(buffer.lines):
                    return
                continue
            await buffer.wait()
    finally:
        buffer.readers -= 1
