"""The builtin ``file`` log store: one append-only file of batches per workload attempt.

Responsibility: :class:`FileLogStore`, the default :class:`~zwmd.logs.store.LogStore`,
keeping logs under ``<state_dir>/logs/<workload id>/<attempt>.jsonl`` in the batch
format of :mod:`zwmd.logs.batches` (records, each batch ended by a commit line with the
cumulative checkpoint and whether the key is closed).

Crash safety: an ``append`` writes its records and the commit line in one ``pwrite``
at the end of the committed data, then ``fdatasync`` s once (one sync per call, so a
pod follower that batches lines pays one sync per batch). Only records followed by a
commit line exist: readers hold back records until they see the commit that ends their
batch, and when the store first touches a key it scans back from the end of the file
to the last complete commit line and truncates anything after it (a torn batch, or the
zeros a crash can leave). The checkpoint therefore lives in the file itself and can
never disagree with the data. A new file's directory is synced once.

Reading streams from disk in 1 MiB chunks, read and decoded in a worker thread; memory
stays bounded by a chunk and one batch. Reads and followers are those of
:class:`~zwmd.logs.batchstore.BatchLogStore`: a follower tails the file from where the
read stopped, woken by the appending task at once, and polls the file every
:data:`POLL_SECONDS` in case another process writes. What a follower found after the
last complete batch (a batch being written, or a torn one) it reads again on its next
look, so a writer that recovered the file meanwhile cannot mix its bytes with the torn
ones. One process (the daemon) writes a given store; any number may read.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import anyio
import anyio.to_thread

from zwmd.logs.batches import (
    COMMIT_PREFIX,
    SUFFIX,
    Batch,
    BatchDecoder,
    decode_commit,
    encode_batch,
)
from zwmd.logs.batchstore import BatchLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint, LogKey

__all__ = ["POLL_SECONDS", "FileLogStore"]

#: How often a follower looks at the file when no in-process append woke it.
POLL_SECONDS: Final = 0.25
_CHUNK: Final = 1 << 20


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
                i = buf.rfind(b"\n" + COMMIT_PREFIX, 0, search_end)
                if i < 0:
                    break
                good = _try_commit(buf, i + 1, pos)
                search_end = i
            if good is None and pos == 0:
                if buf.startswith(COMMIT_PREFIX):
                    good = _try_commit(buf, 0, 0)
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
    checkpoint = decode_commit(buf[start:nl])
    return None if checkpoint is None else (base + nl + 1, checkpoint)


class _Cursor:
    """The complete batches of one file from a decoder's offset, up to ``end`` if given.

    ``read_some`` is blocking (run it in a thread); it returns at least one batch unless
    it reached the end of the file (or ``end``), or a torn batch. What it read after the
    last complete batch before that, it reads again next time: a writer that recovered
    the file since (see :func:`_recover`) may have written other bytes there.
    """

    def __init__(self, path: Path, decoder: BatchDecoder, end: int | None = None) -> None:
        self.path, self.decoder, self.end = path, decoder, end
        self._scan = decoder.end  # how far the file was read
        self._stopped = False  # the last call reached the end or a torn batch

    def read_some(self) -> list[Batch]:
        out: list[Batch] = []
        try:
            f = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return out
        with f:
            if self._stopped and self._scan != self.decoder.end:
                self._scan = self.decoder.restart()
            self._stopped = False
            f.seek(self._scan)
            while not out:
                want = _CHUNK if self.end is None else min(_CHUNK, self.end - self._scan)
                chunk = f.read(want) if want > 0 else b""
                if not chunk:
                    self._stopped = True
                    break
                self._scan += len(chunk)
                out = self.decoder.feed(chunk)
                if self.decoder.torn:
                    self._stopped = True
                    break
        return out


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


class _FileReader:
    """A read of one key's file (a :class:`~zwmd.logs.batchstore.KeyReader`)."""

    def __init__(self, state: _KeyState, attempt: int) -> None:
        self.state, self.attempt = state, attempt
        self.checkpoint, self.end = state.checkpoint, state.size
        self._tail = _Cursor(state.path, BatchDecoder(attempt, offset=self.end))

    async def stored(self, source: str | None) -> AsyncGenerator[list[LogRecord], None]:
        cursor = _Cursor(self.state.path, BatchDecoder(self.attempt, source=source), self.end)
        while batches := await anyio.to_thread.run_sync(cursor.read_some):
            for batch in batches:
                yield batch.records

    async def newer(self) -> list[Batch]:
        return await anyio.to_thread.run_sync(self._tail.read_some)

    def changed(self) -> anyio.Event:
        return self.state.changed


class FileLogStore(BatchLogStore[_KeyState]):
    """Log records in files under ``state_dir`` (see the module docstring for the format).

    :param state_dir: the daemon's state directory (``ZWMD_STATE_DIR``).
    :param fsync: sync every append (keep it on; off only for throwaway stores).
    """

    name = "file"

    def __init__(self, state_dir: Path, *, fsync: bool = True) -> None:
        super().__init__(poll_seconds=POLL_SECONDS)
        self.root = Path(state_dir) / "logs"
        self.fsync = fsync

    # -- paths ----------------------------------------------------------------------

    def _dir(self, workload_id: str) -> Path:
        return self.root / self._quoted_workload(workload_id)

    def path(self, key: LogKey) -> Path:
        """The file holding ``key``'s records."""
        self._check_attempt(key.attempt)
        return self._dir(key.workload_id) / f"{key.attempt}{SUFFIX}"

    async def _open(self, key: LogKey) -> _KeyState:
        path = self.path(key)
        size, cp = await anyio.to_thread.run_sync(_recover, path)
        return _KeyState(path, size, cp)

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
        self._announce()
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
                stem = n[: -len(SUFFIX)]
                if n.endswith(SUFFIX) and stem.isdigit():
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

    # -- reading (the rest is BatchLogStore's) ----------------------------------------

    async def _reader(self, key: LogKey, operation: str) -> _FileReader:
        return _FileReader(await self._state(key), key.attempt)
