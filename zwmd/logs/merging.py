"""One ordered stream from several sources, and exactly-once pod lines across reconnects.

Responsibility: the rules that put ``log()`` messages, builder lines and runner lines
into one time-ordered stream per workload attempt, and the de-duplication a pod log
follower applies after it reconnects.

Design (merge at read time, not at write time):

- Every record is appended as it arrives, each source in its own order: runner and
  builder lines in the order kubelet serves them, ``zwmd`` messages in the order the API
  receives them (stamped with the daemon's clock at receipt). No reorder window: pod
  lines can reach the store minutes late (a stream that dropped, a daemon restart, the
  final fetch after the container ended), so no window would be wide enough, and a
  window would delay every live line.
- A reader merges the per-source sequences by timestamp (:func:`merge_by_time`, a k-way
  merge reading each source with its own cursor, so memory stays bounded). Ties keep the
  source order ``zwmd``, ``builder``, ``runner``, and within a source the stored order,
  so the result is deterministic and lines sharing a timestamp keep their order.
- A follower first gets the merged stored stream, then new records as they are stored:
  live records are not held back to wait for a late source.
- Messages may arrive before a workload has a Job, or for an id zwmd has never seen:
  they go to the attempt :func:`zwmd.engine.attempts.message_attempt` names, so none is
  lost and, since attempts are read oldest first, they stay in order.

De-duplication: a resumed stream asks kubelet for ``sinceTime = mark.since_ns`` (the
second the last stored line falls in; kubelet's ``sinceTime`` is inclusive and has
second granularity) and gets again the ``mark.count_since`` stored lines of that
second, in the same order, before any new line. :class:`Deduper` drops exactly those:
lines older than ``since`` and the first ``count_since`` lines of the replay that are
not newer than the last stored line. Several lines sharing one timestamp are counted,
not compared, so each is stored once. The pieces of an over-long line count as lines;
framing cuts a line the same way every time (see :mod:`zwmd.logs.records`).
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace

from zwmd.logs.records import (
    MAX_LINE_BYTES,
    NOTE_PREFIX,
    NOTE_QUOTE,
    SOURCE_RUNNER,
    SOURCE_ZWMD,
    LogRecord,
    runner_level_and_message,
    split_lines,
)
from zwmd.logs.store import SourceMark

__all__ = [
    "FIRST_ATTEMPT",
    "Deduper",
    "dedupe",
    "merge_by_time",
    "message_records",
    "note_records",
    "pod_records",
]

#: The attempt number of a workload's first run.
FIRST_ATTEMPT = 1


class Deduper:
    """Drop the lines of a resumed pod log stream that are already stored.

    :param mark: the stored mark of the stream's source (None: nothing stored, keep all).

    Call it with each batch of ``(ts_ns, text)`` lines in stream order; it keeps its
    place between batches.
    """

    __slots__ = ("_last", "_since", "_skip")

    def __init__(self, mark: SourceMark | None) -> None:
        if mark is None:
            self._since, self._last, self._skip = 0, 0, 0
        else:
            self._since, self._last, self._skip = mark.since_ns, mark.last_ts_ns, mark.count_since

    @property
    def replaying(self) -> bool:
        """Whether lines already stored may still come."""
        return self._skip > 0

    def __call__(self, lines: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
        if self._skip <= 0:
            return lines if isinstance(lines, list) else list(lines)
        out: list[tuple[int, str]] = []
        for line in lines:
            if self._skip > 0:
                ts = line[0]
                if ts < self._since:
                    continue  # before the resume point: stored long ago
                if ts <= self._last:
                    self._skip -= 1
                    continue
                self._skip = 0  # newer than anything stored: the replay is over
            out.append(line)
        return out


def dedupe(mark: SourceMark | None, lines: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """The lines of one resumed fetch that are not stored yet (see :class:`Deduper`)."""
    return Deduper(mark)(lines)


def pod_records(
    lines: Iterable[tuple[int, str]], *, source: str = SOURCE_RUNNER, attempt: int
) -> list[LogRecord]:
    """Records of pod lines; a line that carries a ZenML level keeps it, others are INFO."""
    out: list[LogRecord] = []
    for ts, text in lines:
        level, message = runner_level_and_message(text)
        out.append(LogRecord(ts, source, level, message, attempt))
    return out


def message_records(
    message: str,
    *,
    level: int,
    ts_ns: int,
    attempt: int,
    source: str = SOURCE_ZWMD,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> list[LogRecord]:
    """Records of one API message: one per line, long lines cut, same time and level."""
    data = message.encode("utf-8", "replace")
    lines = split_lines(data, max_line_bytes=max_line_bytes) or [""]
    return [LogRecord(ts_ns, source, level, text, attempt) for text in lines]


def note_records(
    text: str, *, level: int, ts_ns: int, attempt: int, max_line_bytes: int = MAX_LINE_BYTES
) -> list[LogRecord]:
    """Records of a note zwmd writes itself (a failure summary, a build's outcome).

    The first line starts with ``zwmd: `` and every further line (details, the quoted
    last lines of a container) with ``zwmd| ``: a container line quoted in a note can
    never pass for a note of its own (see :mod:`zwmd.logs.records`).
    """
    records = message_records(
        text, level=level, ts_ns=ts_ns, attempt=attempt, max_line_bytes=max_line_bytes
    )
    first, *rest = records
    if not first.message.startswith(NOTE_PREFIX):
        first = replace(first, message=NOTE_PREFIX + first.message)
    return [first, *(replace(r, message=NOTE_QUOTE + r.message) for r in rest)]


async def merge_by_time(streams: Sequence[AsyncIterator[LogRecord]]) -> AsyncIterator[LogRecord]:
    """Merge streams that are each in time order; ties go to the earlier stream.

    Holds one record per stream; stops early without reading further when the caller
    stops.
    """
    heads: list[tuple[int, int, LogRecord]] = []
    for i, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heads.append((first.ts_ns, i, first))
    heapq.heapify(heads)
    while heads:
        _, i, record = heads[0]
        yield record
        following = await anext(streams[i], None)
        if following is None:
            heapq.heappop(heads)
        else:
            heapq.heapreplace(heads, (following.ts_ns, i, following))
