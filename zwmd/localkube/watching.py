"""Watch machinery: change events, a bounded per-resource history, and watch streams.

Design notes:

* Every change becomes one :class:`WatchEvent` holding the stored object (never mutated
  after it is stored) and its JSON encoding, made once and shared by every watcher: a
  watch costs no per-watcher serialisation, only joining a prefix, the encoding and a
  suffix per event into the wire line ``{"type": ..., "object": ...}\\n``.
* A :class:`WatchStream` is fed synchronously by the store (one event loop, no locks) and
  drained in batches: while the server writes one batch, the next accumulates, so a fast
  producer costs one write per batch rather than one per event.
* A watcher that falls more than :data:`MAX_PENDING` events behind is closed; its client
  resumes from its last version (or re-lists after 410), as with a real apiserver.
* Selector transitions follow the apiserver: an object that stops matching a watcher's
  selector is sent as ``DELETED``, one that starts matching as ``ADDED``.
* :class:`History` keeps the last ``size`` events per resource. Resuming from a version
  older than what was evicted (or compacted by fault injection) is a 410 Expired.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from zwmd.localkube.errors import expired

JsonDict = dict[str, Any]
Predicate = Callable[[JsonDict], bool]

MAX_PENDING = 200_000  # queued live events after which a watcher is cut off
_PREFIXES = {
    kind: b'{"type":"' + kind.encode() + b'","object":'
    for kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
}


def event_line(event_type: str, encoded_object: bytes) -> bytes:
    """The wire form of one watch event, newline-terminated."""
    return _PREFIXES[event_type] + encoded_object + b"}\n"


class WatchEvent:
    """One change to one object, with its wire line ready to write."""

    __slots__ = ("encoded", "namespace", "obj", "resource", "resource_version", "type")

    def __init__(
        self,
        event_type: str,
        resource: str,
        namespace: str,
        resource_version: int,
        obj: JsonDict,
        encoded: bytes,
    ) -> None:
        self.type = event_type
        self.resource = resource
        self.namespace = namespace
        self.resource_version = resource_version
        self.obj = obj
        self.encoded = encoded

    @property
    def line(self) -> bytes:
        return event_line(self.type, self.encoded)

    def wire_parts(self) -> tuple[bytes, bytes, bytes]:
        """The line in three parts, to join many events without copying each first."""
        return _PREFIXES[self.type], self.encoded, b"}\n"

    def retyped(self, event_type: str) -> WatchEvent:
        return WatchEvent(
            event_type,
            self.resource,
            self.namespace,
            self.resource_version,
            self.obj,
            self.encoded,
        )

    def object(self) -> JsonDict:
        """A private copy of the object (callers may mutate it)."""
        copied: JsonDict = orjson.loads(self.encoded)
        return copied


class WatchStream:
    """One watcher's queue of events; an async iterator over batches of events."""

    def __init__(
        self,
        resource: str,
        namespace: str | None,
        predicate: Predicate | None,
        initial: list[WatchEvent],
        on_close: Callable[[WatchStream], None],
    ) -> None:
        self.resource = resource
        self.namespace = namespace
        self.predicate = predicate
        self.closed = False
        self._pending = initial
        self._wakeup = asyncio.Event()
        self._on_close = on_close
        if initial:
            self._wakeup.set()

    def offer(self, event: WatchEvent, old: JsonDict | None) -> None:
        """Queue ``event`` if it concerns this watcher (called by the store)."""
        if self.namespace is not None and event.namespace != self.namespace:
            return
        predicate = self.predicate
        if predicate is not None:
            now = predicate(event.obj)
            before = old is not None and predicate(old)
            if event.type == "MODIFIED":
                if not now and not before:
                    return
                if not now:
                    event = event.retyped("DELETED")
                elif not before:
                    event = event.retyped("ADDED")
            elif not now:
                return
        self._pending.append(event)
        self._wakeup.set()
        if len(self._pending) > MAX_PENDING:
            self.close()  # too slow a reader: the apiserver ends such watches too

    def close(self) -> None:
        """End the stream: the consumer sees the end once it has drained what is queued."""
        if not self.closed:
            self.closed = True
            self._wakeup.set()
            self._on_close(self)

    async def next_batch(self, wait_seconds: float | None = None) -> list[WatchEvent] | None:
        """Queued events; [] when ``wait_seconds`` passed first; None once closed and drained."""
        if not self._pending:
            if self.closed:
                return None
            self._wakeup.clear()
            if wait_seconds is None:
                await self._wakeup.wait()
            else:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait_seconds)
                except TimeoutError:
                    return []
            if not self._pending:
                return None if self.closed else []
        batch, self._pending = self._pending, []
        return batch

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> list[WatchEvent]:
        while True:
            batch = await self.next_batch()
            if batch is None:
                raise StopAsyncIteration
            if batch:
                return batch


class History:
    """The last ``size`` events of each resource, for resuming watches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._events: dict[str, collections.deque[WatchEvent]] = {}
        self._evicted_up_to: dict[str, int] = {}
        self._compacted_at = 0

    def record(self, event: WatchEvent) -> None:
        events = self._events.get(event.resource)
        if events is None:
            events = self._events[event.resource] = collections.deque()
        if len(events) >= self.size:
            self._evicted_up_to[event.resource] = events.popleft().resource_version
        events.append(event)

    def compact(self, resource_version: int) -> None:
        """Forget every event up to ``resource_version`` (fault injection)."""
        self._compacted_at = resource_version
        for events in self._events.values():
            events.clear()

    def oldest_resumable(self, resource: str) -> int:
        return max(self._evicted_up_to.get(resource, 0), self._compacted_at)

    def since(self, resource: str, resource_version: int) -> Iterable[WatchEvent]:
        """Events after ``resource_version``, or 410 Expired when some were forgotten."""
        oldest = self.oldest_resumable(resource)
        if resource_version < oldest:
            raise expired(f"too old resource version: {resource_version} ({oldest + 1})")
        return [e for e in self._events.get(resource, ()) if e.resource_version > resource_version]

    def __iter__(self) -> Iterator[WatchEvent]:
        for events in self._events.values():
            yield from events
