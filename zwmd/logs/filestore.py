"""The builtin ``file`` log store: one append-only NDJSON file per workload attempt.

Responsibility: :class:`FileLogStore`, the default :class:`~zwmd.logs.store.LogStore`,
keeping logs under ``<state_dir>/logs/<workload id>/<attempt>.jsonl``.

File format (UTF-8, one JSON object per ``\\n``-terminated line; a message is a JSON
string, so it never holds a raw newline):

- a record: ``{"s":"runner","t":1795835045123456789,"l":20,"m":"text"}`` -- source,
  time in UTC nanoseconds, ``logging`` level, message. The attempt is the file's.
- a commit: ``{"c":{"n":3,"k":[["runner",last_ts,since,count_since,records]],"x":false}}``
  -- written after every batch: the checkpoint covering everything before it
  (:class:`~zwmd.logs.store.Checkpoint`) and whether the key is closed.

Crash safety: an ``append`` writes its records and the commit line in one ``pwrite``
at the end of the committed data, then ``fdatasync`` s once (one sync per call, so a
pod follower that batches lines pays one sync per batch). Only records followed by a
commit line exist: readers hold back records until they see the commit that ends their
batch, and when the store first touches a key it scans back from the end of the file
to the last complete commit line and truncates anything after it (a torn batch, or the
zeros a crash can leave). The checkpoint therefore lives in the file itself and can
never disagree with the data. A new file's directory is synced once.

Reading streams from disk in 1 MiB chunks in a worker thread; memory stays bounded by
a chunk and one batch. A read orders records by time across sources with one cursor
per source over the same file and a k-way merge (see :mod:`zwmd.logs.merging`). A
follower then tails the file from where the read stopped; it is woken by the appending
task at once, and polls the file every :data:`POLL_SECONDS` in case another process
writes. One process (the daemon) writes a given store; any number may read.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread
import orjson

from zwmd.logs.merging import merge_by_time
from zwmd.logs.records import SOURCES, LogRecord, clean_text
from zwmd.logs.store import Checkpoint, LogKey, SourceMark

__all__ = ["POLL_SECONDS", "FileLogStore"]

#: How often a follower looks at the file when no in-process append woke it.
POLL_SECONDS: Final = 0.25
_CHUNK: Final = 1 << 20
_COMMIT: Final = b'{"c":'
_SUFFIX: Final = ".jsonl"


def _source_rank(source: str) -> tuple[int, str]:
    return (SOURCES.index(source), "") if source in SOURCES else (len(SOURCES), source)


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


def parse_commit(line: bytes) -> Checkpoint:
    """The checkpoint a commit line (see :func:`encode_batch`) records."""
    body = orjson.loads(line)["c"]
    marks = tuple(SourceMark(str(k[0]), *(int(v) for v in k[1:5])) for k in body["k"])
    return Checkpoint(int(body["n"]), marks, bool(body["x"]))


def _recover(path: Path) -> tuple[int, Checkpoint]:
    """Find the last complete commit; truncate whatever follows it. Blocking."""
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below, in a thread
    except FileNotFoundError:
        return 0, Checkpoint()
    with f:
        size = os.fstat(f.fileno()).st_size
        pos, buf, block = size, b"", 64 * 1024
        good: tuple[int, Checkpoint] | None = None
        while good is None:
            start = max(0, pos - block)
            f.seek(start)
            buf = f.read(pos - start) + buf
            pos = start
            search_end = len(buf)
            while good is None:
                i = buf.rfind(b"\n" + _COMMIT, 0, search_end)
                if i < 0:
                    break
                good = _try_commit(buf, i + 1, pos)
                search_end = i
            if good is None and pos == 0:
                good = _try_commit(buf, 0, 0) if buf.startswith(_COMMIT) else (0, Checkpoint())
                if good is None:
                    good = (0, Checkpoint())
            block *= 2
        if good[0] < size:
            f.truncate(good[0])
            os.fsync(f.fileno())
        return good


def _try_commit(buf: bytes, start: int, base: int) -> tuple[int, Checkpoint] | None:
    nl = buf.find(b"\n", start)
    if nl < 0:
        return None
    try:
        return base + nl + 1, parse_commit(buf[start:nl])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return None


class _Cursor:
    """Committed records of one file from an offset, optionally one source only.

    ``read_some`` is blocking (run it in a thread); it returns at least one record
    unless it reached the end of the file (or ``end``), and never returns a record whose
    batch is not committed.
    """

    def __init__(
        self, path: Path, attempt: int, source: str | None, offset: int, end: int | None
    ) -> None:
        self.path, self.attempt, self.end = path, attempt, end
        self.prefix = None if source is None else b'{"s":' + orjson.dumps(source) + b","
        self.committed = offset
        self.closed = False
        self.at_end = False
        self._scan = offset
        self._partial = b""
        self._pending: list[LogRecord] = []

    def read_some(self) -> list[LogRecord]:
        out: list[LogRecord] = []
        self.at_end = False
        try:
            f = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            self.at_end = True
            return out
        with f:
            if os.fstat(f.fileno()).st_size < self._scan:  # truncated by a recovering writer
                self._scan, self._partial, self._pending = self.committed, b"", []
            f.seek(self._scan)
            while not out:
                want = _CHUNK if self.end is None else min(_CHUNK, self.end - self._scan)
                chunk = f.read(want) if want > 0 else b""
                if not chunk:
                    self.at_end = True
                    break
                self._scan += len(chunk)
                self._parse(chunk, out)
        return out

    def _parse(self, chunk: bytes, out: list[LogRecord]) -> None:
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        end = self._scan - len(data)  # file offset of ``data``
        prefix, pending, attempt, loads = self.prefix, self._pending, self.attempt, orjson.loads
        for line in lines:
            end += len(line) + 1
            if line.startswith(_COMMIT):
                out.extend(pending)
                pending.clear()
                self.committed = end
                if b'"x":true' in line:
                    self.closed = True
            elif prefix is None or line.startswith(prefix):
                try:
                    d = loads(line)
                    pending.append(LogRecord(d["t"], d["s"], d["l"], d["m"], attempt))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn line can only sit after the last commit


async def _batches(cursor: _Cursor) -> AsyncGenerator[list[LogRecord], None]:
    """Every record a cursor has to give, a chunk at a time, read in a worker thread."""
    while True:
        records = await anyio.to_thread.run_sync(cursor.read_some)
        if records:
            yield records
        if cursor.at_end:
            return


async def _drain(cursor: _Cursor) -> AsyncGenerator[LogRecord, None]:
    """Every record a cursor has to give, one at a time."""
    async for batch in _batches(cursor):
        for record in batch:
            yield record


@dataclass(eq=False)
class _KeyState:
    path: Path
    size: int
    checkpoint: Checkpoint
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class FileLogStore:
    """Log records in files under ``state_dir`` (see the module docstring for the format).

    :param state_dir: the daemon's state directory (``ZWMD_STATE_DIR``).
    :param fsync: sync every append (keep it on; off only for throwaway stores).
    """

    name = "file"

    def __init__(self, state_dir: Path, *, fsync: bool = True) -> None:
        self.root = Path(state_dir) / "logs"
        self.fsync = fsync
        self._states: dict[LogKey, _KeyState] = {}
        self._loading: dict[LogKey, anyio.Lock] = {}
        self._any_change = anyio.Event()

    # -- paths ----------------------------------------------------------------------

    def _dir(self, workload_id: str) -> Path:
        if not isinstance(workload_id, str) or not workload_id or len(workload_id) > 200:
            raise ValueError(
                f"workload_id: must be a string of 1-200 characters, got {workload_id!r}"
            )
        name = quote(workload_id, safe="")
        if name in {".", ".."}:
            raise ValueError(f"workload_id: {workload_id!r} is not allowed")
        return self.root / name

    def path(self, key: LogKey) -> Path:
        """The file holding ``key``'s records."""
        if isinstance(key.attempt, bool) or not isinstance(key.attempt, int) or key.attempt < 0:
            raise ValueError(f"attempt: must be an integer >= 0, got {key.attempt!r}")
        return self._dir(key.workload_id) / f"{key.attempt}{_SUFFIX}"

    async def _state(self, key: LogKey) -> _KeyState:
        state = self._states.get(key)
        if state is not None:
            return state
        path = self.path(key)
        lock = self._loading.setdefault(key, anyio.Lock())
        async with lock:
            state = self._states.get(key)
            if state is None:
                size, cp = await anyio.to_thread.run_sync(_recover, path)
                state = self._states[key] = _KeyState(path, size, cp)
        self._loading.pop(key, None)
        return state

    # -- writing --------------------------------------------------------------------

    def _write(self, state: _KeyState, payload: bytes) -> None:
        """Write ``payload`` at the committed end, durably. Blocking."""
        path = state.path
        created = not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_size != state.size:  # rest of a failed write: drop it
                os.ftruncate(fd, state.size)
            view, offset = memoryview(payload), state.size
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if created and self.fsync:
            for d in (path.parent, path.parent.parent):
                dfd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)

    async def _commit(self, key: LogKey, records: Sequence[LogRecord], close: bool) -> Checkpoint:
        state = await self._state(key)
        async with state.lock:
            cp = state.checkpoint

            def encode_and_write() -> tuple[Checkpoint, int]:
                new = cp.advanced(records)
                if close and not new.closed:
                    new = Checkpoint(new.records, new.marks, True)
                payload = encode_batch(records, new)
                self._write(state, payload)
                return new, len(payload)

            new, written = await anyio.to_thread.run_sync(encode_and_write)
            state.checkpoint = new
            state.size += written
            state.notify()
        self._any_change.set()
        self._any_change = anyio.Event()
        return new

    async def append(self, key: LogKey, records: Sequence[LogRecord]) -> Checkpoint:
        """Store ``records`` for ``key``; they are on disk when this returns."""
        if not records:
            return (await self._state(key)).checkpoint
        return await self._commit(key, records, close=False)

    async def close(self, key: LogKey) -> None:
        """Mark ``key`` complete (a commit line with ``"x":true``); followers end."""
        state = await self._state(key)
        if not state.checkpoint.closed:
            await self._commit(key, (), close=True)

    async def checkpoint(self, key: LogKey) -> Checkpoint | None:
        """What is stored for ``key``; None when no file exists for it."""
        state = await self._state(key)
        return state.checkpoint if state.size else None

    async def attempts(self, workload_id: str) -> list[int]:
        """The attempts with a file, ascending."""
        directory = self._dir(workload_id)

        def scan() -> list[int]:
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                return []
            found = []
            for n in names:
                stem = n[: -len(_SUFFIX)]
                if n.endswith(_SUFFIX) and stem.isdigit():
                    found.append(int(stem))
            return sorted(found)

        return await anyio.to_thread.run_sync(scan)

    async def workloads(self) -> list[str]:
        """Every workload id with a directory in the store."""

        def scan() -> list[str]:
            try:
                return sorted(unquote(n) for n in os.listdir(self.root))
            except FileNotFoundError:
                return []

        return await anyio.to_thread.run_sync(scan)

    # -- reading --------------------------------------------------------------------

    async def read(
        self, workload_id: str, *, attempt: int | None = None
    ) -> AsyncIterator[LogRecord]:
        """Every stored record of one attempt, or of each attempt in turn; time-ordered."""
        wanted = [attempt] if attempt is not None else await self.attempts(workload_id)
        for a in wanted:
            key = LogKey(workload_id, a)
            state = await self._state(key)
            async for record in self._merged(key, state, state.size):
                yield record

    async def _merged(self, key: LogKey, state: _KeyState, end: int) -> AsyncIterator[LogRecord]:
        """The records before ``end``, merged by time: one cursor per source."""
        sources = sorted((m.source for m in state.checkpoint.marks), key=_source_rank)
        if end == 0 or not sources:
            return
        if len(sources) == 1:
            async for batch in _batches(_Cursor(state.path, key.attempt, None, 0, end)):
                for record in batch:
                    yield record
            return
        streams = [_drain(_Cursor(state.path, key.attempt, s, 0, end)) for s in sources]
        try:
            async for record in merge_by_time(streams):
                yield record
        finally:
            for stream in streams:
                await stream.aclose()

    async def follow(
        self, workload_id: str, *, attempt: int | None = None
    ) -> AsyncIterator[LogRecord]:
        """Read, then tail; see :meth:`zwmd.logs.store.LogStore.follow`."""
        if attempt is not None:
            async for record in self._follow_key(LogKey(workload_id, attempt)):
                yield record
            return
        known = await self.attempts(workload_id)
        while not known:  # nothing stored yet: wait for the first attempt
            event = self._any_change
            with anyio.move_on_after(POLL_SECONDS):
                await event.wait()
            known = await self.attempts(workload_id)
        for a in known[:-1]:
            async for record in self.read(workload_id, attempt=a):
                yield record
        current = known[-1]
        while True:
            async for record in self._follow_key(LogKey(workload_id, current)):
                yield record
            newer = [a for a in await self.attempts(workload_id) if a > current]
            if not newer:
                return
            current = newer[0]

    async def _follow_key(self, key: LogKey) -> AsyncIterator[LogRecord]:
        state = await self._state(key)
        start = state.size
        async for record in self._merged(key, state, start):
            yield record
        cursor = _Cursor(state.path, key.attempt, None, start, None)
        cursor.closed = state.checkpoint.closed and state.size == start
        while True:
            event = state.changed
            records = await anyio.to_thread.run_sync(cursor.read_some)
            for record in records:
                yield record
            if cursor.at_end:
                if cursor.closed:
                    return
                with anyio.move_on_after(POLL_SECONDS):
                    await event.wait()
