"""The batch format: how the file store's files, object-store chunks and the spool hold logs.

Responsibility: encoding a batch of :class:`~zwmd.logs.records.LogRecord` with the
checkpoint after it (:func:`encode_batch`), and decoding the complete batches out of
bytes, all at once (:func:`decode_batches`) or as they are read (:class:`BatchDecoder`).
Every store that keeps logs as bytes uses this one codec: the ``file`` store
(:mod:`zwmd.logs.filestore`), the object stores' chunks (:mod:`zwmd.logs.objectstore`)
and their local spool (:mod:`zwmd.logs.spooling`).

Format (UTF-8, one JSON object per ``\\n``-terminated line; a message is a JSON string,
so it never holds a raw newline):

- a record: ``{"s":"runner","t":1795835045123456789,"l":20,"m":"text"}`` -- source,
  time in UTC nanoseconds, ``logging`` level, message. The attempt is not stored: it is
  the key's (the file's, the chunk's).
- a commit: ``{"c":{"n":3,"k":[["runner",last_ts,since,count_since,records]],"x":false}}``
  -- ends every batch: the cumulative checkpoint covering everything before it
  (:class:`~zwmd.logs.store.Checkpoint`) and whether the key is closed.

Design notes:

- Only records followed by a commit line exist. A decoder holds records back until the
  commit that ends their batch; a line that is neither a record nor a commit ends the
  data (a torn batch: what a crash or a write cut short leaves after the last commit),
  and so does a last line without its newline.
- The last commit line of some bytes is the checkpoint of everything up to it, so a
  store never keeps a checkpoint apart from its data.
- A decoder may keep the records of one source only (a read merging sources by time
  runs one decoder per source over the same bytes); it skips the other sources' lines
  by their prefix, without parsing them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from zwmd.logs.records import LogRecord, clean_text
from zwmd.logs.store import Checkpoint, SourceMark

__all__ = [
    "COMMIT_PREFIX",
    "SUFFIX",
    "Batch",
    "BatchDecoder",
    "decode_batches",
    "decode_commit",
    "encode_batch",
]

#: How every commit line starts (and no record line does).
COMMIT_PREFIX: Final = b'{"c":'
#: The name ending of a file or object holding batches.
SUFFIX: Final = ".jsonl"

_RECORD_ERRORS: Final = (orjson.JSONDecodeError, KeyError, TypeError)
_COMMIT_ERRORS: Final = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError)


@dataclass(frozen=True, slots=True)
class Batch:
    """One complete batch: its records, the checkpoint after it, and where it ends.

    :param records: the batch's records (of one source only, when decoded for one).
    :param checkpoint: the commit line's checkpoint: everything up to the batch's end.
    :param end: the offset just after the commit line (from where decoding started).
    """

    records: list[LogRecord]
    checkpoint: Checkpoint
    end: int


def encode_batch(records: Sequence[LogRecord], checkpoint: Checkpoint) -> bytes:
    """The bytes of one batch: a line per record, then the commit line."""
    dumps = orjson.dumps
    parts: list[bytes] = []
    for r in records:
        try:
            message = dumps(r.message)
        except orjson.JSONEncodeError:  # lone surrogates from a caller's str
            message = dumps(clean_text(r.message))
        source = _source_json(r.source)
        parts.append(b'{"s":%b,"t":%d,"l":%d,"m":%b}' % (source, r.ts_ns, r.level, message))
    parts.append(_commit_line(checkpoint))
    parts.append(b"")
    return b"\n".join(parts)


@functools.lru_cache(maxsize=64)
def _source_json(source: str) -> bytes:
    return orjson.dumps(clean_text(source))


def _commit_line(cp: Checkpoint) -> bytes:
    marks = [[m.source, m.last_ts_ns, m.since_ns, m.count_since, m.records] for m in cp.marks]
    return orjson.dumps({"c": {"n": cp.records, "k": marks, "x": cp.closed}})


def decode_commit(line: bytes) -> Checkpoint | None:
    """The checkpoint a commit line (without its newline) records; None if it is torn."""
    try:
        body = orjson.loads(line)["c"]
        marks = tuple(SourceMark(str(k[0]), *(int(v) for v in k[1:5])) for k in body["k"])
        return Checkpoint(int(body["n"]), marks, bool(body["x"]))
    except _COMMIT_ERRORS:
        return None


class BatchDecoder:
    """Complete batches out of bytes fed in order (see the module docs).

    :param attempt: the attempt of the records (the key's).
    :param source: keep only this source's records (every batch is still returned).
    :param offset: where the first bytes fed start; :attr:`end` and each
        :attr:`Batch.end` count from the same origin.
    """

    def __init__(self, attempt: int, *, source: str | None = None, offset: int = 0) -> None:
        self.attempt = attempt
        #: just after the last complete batch decoded: where the next one starts
        self.end = offset
        #: a line that is neither a record nor a commit came: the rest is ignored
        self.torn = False
        self._prefix = None if source is None else b'{"s":' + _source_json(source) + b","
        self._start = offset  # where ``_partial`` starts
        self._partial = b""  # a line without its newline yet
        self._pending: list[LogRecord] = []  # records whose commit has not come yet

    def feed(self, data: bytes) -> list[Batch]:
        """The batches that ``data`` completes; nothing once :attr:`torn`."""
        out: list[Batch] = []
        if self.torn or not data:
            return out
        lines = (self._partial + data if self._partial else data).split(b"\n")
        self._partial = lines.pop()
        pos, prefix, attempt, loads = self._start, self._prefix, self.attempt, orjson.loads
        pending = self._pending
        for line in lines:
            pos += len(line) + 1
            if line.startswith(COMMIT_PREFIX):
                checkpoint = decode_commit(line)
                if checkpoint is None:
                    self.torn = True
                    break
                out.append(Batch(pending, checkpoint, pos))
                pending = []
                self.end = pos
            elif prefix is None or line.startswith(prefix):
                try:
                    d = loads(line)
                    pending.append(LogRecord(d["t"], d["s"], d["l"], d["m"], attempt))
                except _RECORD_ERRORS:
                    self.torn = True
                    break
        self._pending = pending
        self._start = pos
        return out

    def restart(self) -> int:
        """Forget everything after :attr:`end` (to decode it again); :returns: ``end``."""
        self.torn = False
        self._start, self._partial, self._pending = self.end, b"", []
        return self.end


def decode_batches(data: bytes, attempt: int, *, source: str | None = None) -> list[Batch]:
    """The complete batches in ``data`` (a file's, chunk's or spool's bytes from a batch
    start); a torn tail is ignored."""
    return BatchDecoder(attempt, source=source).feed(data)
