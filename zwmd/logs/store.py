"""The log store contract: what every log storage backend offers the daemon.

Responsibility: the types the log pipeline and the API share with a store
(:class:`LogKey`, :class:`SourceMark`, :class:`Checkpoint`) and the :class:`LogStore`
protocol itself. Backends: :class:`zwmd.logs.filestore.FileLogStore` (builtin ``file``,
the default) and :class:`zwmd.logs.objectstore.ObjectLogStore` (the S3/GCS plugins'
``s3`` and ``gcs``); a plugin may add another.

Design notes:

- A workload id may be run more than once (ZenML resumes runs under the same id); each
  run is an *attempt* and has its own key ``(workload_id, attempt)``. Reading a workload
  without an attempt gives every attempt, oldest first.
- ``append`` is durable once it returns, and a batch is all-or-nothing: after a crash a
  store holds a prefix of the appended batches.
- The checkpoint says what is stored, per source, in the terms a pod log follower needs
  to resume without duplicates (see :class:`SourceMark` and
  :func:`zwmd.logs.merging.dedupe`). A store derives it from what it holds, so it is
  never ahead of or behind the data.
- ``close`` marks a key complete: followers end. Appending after ``close`` is allowed
  (ZenML sends a ``log()`` message after a run succeeded) and keeps the key closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from zwmd.logs.records import LogRecord

__all__ = ["Checkpoint", "InvalidKey", "LogKey", "LogStore", "SourceMark", "StoreUnavailable"]

_NS = 1_000_000_000


class InvalidKey(ValueError):
    """A workload id or attempt that a store cannot hold; ``field`` names which.

    Nothing is stored under such an id, so reading it finds nothing.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class StoreUnavailable(Exception):
    """The store could not answer now (its backend is unreachable or failing): ask again.

    Raised by the lookups a request waits on (which attempts exist); what is written goes
    on being kept (spooled) meanwhile.
    """


class LogKey(NamedTuple):
    """One attempt of one workload."""

    workload_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class SourceMark:
    """Where the stored lines of one source end.

    :param source: ``"runner"``, ``"builder"`` or ``"zwmd"``.
    :param last_ts_ns: the greatest timestamp stored for the source.
    :param since_ns: ``last_ts_ns`` rounded down to a whole second: the ``sinceTime`` to
        resume a pod log stream from (kubelet's ``sinceTime`` is inclusive and has second
        granularity).
    :param count_since: how many records of the source with a timestamp at or after
        ``since_ns`` are stored: the lines a resumed stream replays first, to be skipped.
    :param records: how many records of the source are stored in all.
    """

    source: str
    last_ts_ns: int
    since_ns: int
    count_since: int
    records: int

    def advanced(self, ts_ns: int) -> SourceMark:
        """The mark after one more record of this source with time ``ts_ns``."""
        if ts_ns >= self.since_ns + _NS:
            return SourceMark(self.source, ts_ns, ts_ns - ts_ns % _NS, 1, self.records + 1)
        count = self.count_since + (1 if ts_ns >= self.since_ns else 0)
        last = ts_ns if ts_ns > self.last_ts_ns else self.last_ts_ns
        return SourceMark(self.source, last, self.since_ns, count, self.records + 1)

    @classmethod
    def first(cls, source: str, ts_ns: int) -> SourceMark:
        """The mark of a source's first record."""
        return cls(source, ts_ns, ts_ns - ts_ns % _NS, 1, 1)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a store holds for one key.

    :param records: records stored, all sources.
    :param marks: one :class:`SourceMark` per source seen, in first-seen order.
    :param closed: whether :meth:`LogStore.close` was called for the key.
    """

    records: int = 0
    marks: tuple[SourceMark, ...] = field(default=())
    closed: bool = False

    def mark(self, source: str) -> SourceMark | None:
        """The mark of ``source``, or None when no record of it is stored."""
        for m in self.marks:
            if m.source == source:
                return m
        return None

    def advanced(self, records: Sequence[LogRecord]) -> Checkpoint:
        """The checkpoint after ``records`` are stored (pure; ``self`` is unchanged)."""
        if not records:
            return self
        # [last_ts_ns, since_ns, count_since, records] per source, updated in place.
        state: dict[str, list[int]] = {
            m.source: [m.last_ts_ns, m.since_ns, m.count_since, m.records] for m in self.marks
        }
        for r in records:
            ts = r.ts_ns
            s = state.get(r.source)
            if s is None:
                state[r.source] = [ts, ts - ts % _NS, 1, 1]
            elif ts >= s[1] + _NS:
                s[0], s[1], s[2] = ts, ts - ts % _NS, 1
                s[3] += 1
            else:
                if ts >= s[1]:
                    s[2] += 1
                if ts > s[0]:
                    s[0] = ts
                s[3] += 1
        marks = tuple(SourceMark(src, *s) for src, s in state.items())
        return Checkpoint(self.records + len(records), marks, self.closed)


@runtime_checkable
class LogStore(Protocol):
    """Storage of log records per workload attempt.

    Implementations must be safe to use from many tasks of one event loop at once.
    """

    #: The name users select the store by (``ZWMD_LOG_STORE``): ``file``, ``s3``, ...
    name: str

    async def append(self, key: LogKey, records: Sequence[LogRecord]) -> Checkpoint:
        """Store ``records`` after those already stored for ``key``; durable on return.

        Each record's ``attempt`` should equal ``key.attempt`` (the key wins).

        :returns: the checkpoint covering the new records.
        """
        ...

    def read(self, workload_id: str, *, attempt: int | None = None) -> AsyncIterator[LogRecord]:
        """Every stored record of one attempt, or of all attempts (oldest first) if None.

        Within an attempt, records come ordered by time; equal times keep the source
        order ``zwmd``, ``builder``, ``runner`` and, within a source, storage order.
        """
        ...

    def follow(self, workload_id: str, *, attempt: int | None = None) -> AsyncIterator[LogRecord]:
        """Like :meth:`read`, then records as they are appended.

        Ends when the followed attempt (the latest one if ``attempt`` is None) is
        closed and no newer attempt exists, or when the caller stops iterating.
        Records appended while following come in storage order.
        """
        ...

    async def checkpoint(self, key: LogKey) -> Checkpoint | None:
        """What is stored for ``key``, or None when nothing is."""
        ...

    async def close(self, key: LogKey) -> None:
        """Mark ``key`` complete: its followers end once they have read everything."""
        ...

    async def attempts(self, workload_id: str) -> list[int]:
        """The attempts stored for a workload, ascending (empty when none).

        :class:`StoreUnavailable` when the store cannot tell now.
        """
        ...
