"""Log stores on object storage (S3, GCS, ...): chunks, recovery, and a local spool.

Responsibility: :class:`ObjectLogStore`, a :class:`~zwmd.logs.store.LogStore` over any
:class:`ObjectBackend` (put, ranged get, list). zwmd-aws and zwmd-gcp supply only a
backend; a third party adds another object store the same way.

Object layout, under the configured prefix:
``<prefix>/<workload id, %-quoted>/<attempt>/<chunk number, 8 digits>.jsonl``. A chunk
holds whole batches in the file store's line format (records, each batch ended by a
commit line carrying the cumulative :class:`~zwmd.logs.store.Checkpoint`; see
:mod:`zwmd.logs.filestore`), so the last commit line of the last chunk is the key's
checkpoint: there is no separate manifest to keep in step with the data.

Design notes:

- Object stores have no append. Each ``append`` rewrites the key's *open* chunk with
  the new batch added (one PUT, durable on return, all-or-nothing) until the chunk
  holds :attr:`ObjectLogStore.chunk_bytes` or was written :attr:`ObjectLogStore.chunk_puts`
  times; the next batch starts a new chunk. So there is one request per append (what an
  object per append would cost), readers see few objects, every stored line is visible
  at once, and memory holds at most one open chunk per key being written.
- A rewritten chunk only grows, so a follower tails it with ranged GETs from the offset
  it has read, then looks for the next chunk; in-process appends wake it at once, other
  writers are seen within :attr:`ObjectLogStore.poll_seconds`.
- Reading orders records by time across sources with one cursor per source over the
  same chunks and :func:`~zwmd.logs.merging.merge_by_time`: memory stays one chunk per
  source. The end of a read is fixed when it starts (the open chunk's length then).
- Outages: when a PUT fails (or takes longer than ``put_timeout``) the batch is written
  to a local spool file (same format, fsynced) and ``append`` returns: the batch is
  durable. While a key has spooled data, its new batches go to the spool too, so order
  is kept; while the store is down, every key spools without waiting for a timeout. The
  spool is uploaded, oldest first, by :meth:`ObjectLogStore.maintain` (the daemon runs
  it) and by appends once a retry is due; readers see spooled batches once uploaded. A
  key first touched while the bucket is unreachable (a new run, a daemon restarted
  during an outage) spools too, and is re-based on the remote when it answers. Crashes
  lose nothing and store nothing twice: see :mod:`zwmd.logs.spooling`.
- One process writes a given prefix; any number may read.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import anyio
import anyio.to_thread

from zwmd.logs.chunkfiles import SUFFIX, parse_chunk, spooled_keys
from zwmd.logs.filestore import encode_batch
from zwmd.logs.merging import merge_by_time
from zwmd.logs.records import SOURCES, LogRecord
from zwmd.logs.spooling import KeyState, Outage, drop_replayed, next_upload, open_spool
from zwmd.logs.store import Checkpoint, LogKey

__all__ = ["ObjectBackend", "ObjectLogStore"]


@runtime_checkable
class ObjectBackend(Protocol):
    """The four things a log store needs from an object store.

    Any exception means "unavailable now": the store spools and retries. Object names
    are ``/``-separated; the backend maps them into its bucket.
    """

    #: Where the objects are, for messages: ``s3://bucket/prefix``.
    url: str

    async def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as object ``name`` (replacing it), atomically."""
        ...

    async def get(self, name: str, start: int = 0) -> bytes | None:
        """The object's bytes from ``start``; ``b""`` when it has no more; None if missing."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """The names of every object starting with ``prefix``, sorted."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _source_rank(source: str) -> tuple[int, str]:
    return (SOURCES.index(source), "") if source in SOURCES else (len(SOURCES), source)


class ObjectLogStore:
    """A :class:`~zwmd.logs.store.LogStore` on an :class:`ObjectBackend` (see module docs).

    :param backend: where the chunks go.
    :param name: the store's name (``s3``, ``gcs``, ...).
    :param prefix: object-name prefix, without a trailing ``/`` (may be empty).
    :param spool_dir: local directory for batches the backend did not take.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        *,
        name: str,
        prefix: str,
        spool_dir: Path,
        chunk_bytes: int = 1 << 20,
        chunk_puts: int = 64,
        poll_seconds: float = 1.0,
        put_timeout: float = 10.0,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 10.0,
        fsync: bool = True,
    ) -> None:
        self.backend = backend
        self.name = name
        self.prefix = prefix.strip("/")
        self.spool_dir = Path(spool_dir)
        self.chunk_bytes = chunk_bytes
        self.chunk_puts = chunk_puts
        self.poll_seconds = poll_seconds
        self.put_timeout = put_timeout
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.fsync = fsync
        self._states: dict[LogKey, KeyState] = {}
        self._loading: dict[LogKey, anyio.Lock] = {}
        self._any_change = anyio.Event()
        self._outage = Outage(retry_seconds, max_retry_seconds)

    # -- names ----------------------------------------------------------------------

    def _workload_prefix(self, workload_id: str) -> str:
        if not isinstance(workload_id, str) or not workload_id or len(workload_id) > 200:
            raise ValueError(
                f"workload_id: must be a string of 1-200 characters, got {workload_id!r}"
            )
        name = quote(workload_id, safe="")
        if name in {".", ".."}:
            raise ValueError(f"workload_id: {workload_id!r} is not allowed")
        return f"{self.prefix}/{name}/" if self.prefix else f"{name}/"

    def _key_prefix(self, key: LogKey) -> str:
        if isinstance(key.attempt, bool) or not isinstance(key.attempt, int) or key.attempt < 0:
            raise ValueError(f"attempt: must be an integer >= 0, got {key.attempt!r}")
        return f"{self._workload_prefix(key.workload_id)}{key.attempt}/"

    def chunk_name(self, key: LogKey, seq: int) -> str:
        """The object name of chunk ``seq`` of ``key``."""
        return f"{self._key_prefix(key)}{seq:08d}{SUFFIX}"

    def _spool_path(self, key: LogKey) -> Path:
        self._key_prefix(key)  # validates
        return self.spool_dir / quote(key.workload_id, safe="") / f"{key.attempt}{SUFFIX}"

    async def _chunks(self, key: LogKey) -> list[str]:
        prefix = self._key_prefix(key)
        return [n for n in await self.backend.list(prefix) if n.endswith(SUFFIX)]

    # -- state ----------------------------------------------------------------------

    async def _state(self, key: LogKey) -> KeyState:
        state = self._states.get(key)
        if state is not None:
            return state
        lock = self._loading.setdefault(key, anyio.Lock())
        async with lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = await self._open(key)
        self._loading.pop(key, None)
        return state

    async def _open(self, key: LogKey) -> KeyState:
        """The key's local spool, then (when the bucket may answer) the remote's state."""
        path = self._spool_path(key)
        spool, local = await anyio.to_thread.run_sync(open_spool, path, key.attempt)
        state = KeyState(local or Checkpoint(), spool)
        if self._outage.may_try():
            await self._recover(state, key)
        if not state.loaded and not spool.size:
            spool.unbased = True  # nothing known: count from zero, re-base later
        return state

    async def _remote(self, key: LogKey) -> tuple[int, bytes, int, Checkpoint]:
        """The remote's open chunk: number, bytes (whole batches), puts, and checkpoint."""
        names = await self._chunks(key)
        if not names:
            return -1, b"", 0, Checkpoint()
        seq = int(names[-1].rsplit("/", 1)[1][: -len(SUFFIX)])
        buffer = await self.backend.get(names[-1]) or b""
        batches = parse_chunk(buffer, key.attempt)
        if not batches:
            return seq, b"", 0, Checkpoint()
        return seq, buffer[: batches[-1].end], len(batches), batches[-1].checkpoint

    async def _recover(self, state: KeyState, key: LogKey) -> bool:
        """Load the remote's state and put the spool on it (re-based if it was unknown).

        The caller holds the state's lock (or has not published it). False: unreachable.
        """
        if state.loaded:
            return True
        try:
            with anyio.fail_after(self.put_timeout):
                seq, buffer, puts, remote = await self._remote(key)
        except Exception:
            self._outage.failed("append")
            return False
        await state.settle(key.attempt, seq, buffer, puts, remote, self.fsync)
        return True

    # -- writing --------------------------------------------------------------------

    async def _put(self, state: KeyState, key: LogKey, payload: bytes, records: int) -> None:
        """Upload ``payload`` (whole batches) into the open or a new chunk. Raises if not."""
        fits = len(state.buffer) + len(payload) <= self.chunk_bytes
        if state.seq >= 0 and state.buffer and fits and state.puts < self.chunk_puts:
            seq, data, puts = state.seq, state.buffer + payload, state.puts + 1
        else:
            seq, data, puts = state.seq + 1, payload, 1
        try:
            with anyio.fail_after(self.put_timeout):
                await self.backend.put(self.chunk_name(key, seq), data)
        except Exception:
            self._outage.failed("append")
            raise
        state.seq, state.buffer, state.puts = seq, data, puts
        state.remote_records = records
        self._outage.succeeded()

    async def _drain(self, state: KeyState, key: LogKey) -> bool:
        """Upload what ``state`` has spooled (caller holds its lock); True when all is sent."""
        while state.spooled:
            open_room = 0
            if state.seq >= 0 and state.buffer and state.puts < self.chunk_puts:
                open_room = self.chunk_bytes - len(state.buffer)
            payload, last = await anyio.to_thread.run_sync(
                next_upload, state.spool, key.attempt, self.chunk_bytes, open_room
            )
            try:
                await self._put(state, key, payload, last.checkpoint.records)
            except Exception:
                return False
            state.spool.sent += len(payload)
            state.notify()
        await anyio.to_thread.run_sync(state.spool.clear)
        self._any_change.set()
        self._any_change = anyio.Event()
        return True

    async def _commit(self, key: LogKey, records: Sequence[LogRecord], close: bool) -> Checkpoint:
        state = await self._state(key)
        async with state.lock:
            if not state.loaded and self._outage.may_try():
                await self._recover(state, key)
            if state.replays:
                records = drop_replayed(state.replays, records)
                if not records and not close:
                    return state.presented
            new = state.checkpoint.advanced(records)
            if close and not new.closed:
                new = Checkpoint(new.records, new.marks, True)
            payload = await anyio.to_thread.run_sync(encode_batch, records, new)
            if state.loaded and state.spooled and self._outage.due():
                await self._drain(state, key)
            uploaded = False
            if state.loaded and not state.spooled and self._outage.may_try():
                try:
                    await self._put(state, key, payload, new.records)
                    uploaded = True
                except Exception:
                    uploaded = False
            if not uploaded:
                await anyio.to_thread.run_sync(state.spool.add, payload, self.fsync)
            state.checkpoint = new
            state.notify()
            answer = state.presented
        self._any_change.set()
        self._any_change = anyio.Event()
        return answer

    async def append(self, key: LogKey, records: Sequence[LogRecord]) -> Checkpoint:
        """Store ``records`` for ``key``: uploaded, or spooled on local disk, on return."""
        if not records:
            return (await self._state(key)).presented
        return await self._commit(key, records, close=False)

    async def close(self, key: LogKey) -> None:
        """Mark ``key`` complete; followers end once they have read everything."""
        state = await self._state(key)
        if not state.checkpoint.closed:
            await self._commit(key, (), close=True)
        async with state.lock:
            if state.loaded and not state.spooled:
                state.buffer = b""  # free it: a later append starts a new chunk

    async def checkpoint(self, key: LogKey) -> Checkpoint | None:
        """What is stored (uploaded or spooled) for ``key``; None when nothing is.

        While the remote's state is unknown (see :mod:`zwmd.logs.spooling`): what is
        known locally, so a follower keeps going; the re-base drops what it repeats.
        """
        state = await self._state(key)
        if not state.loaded and self._outage.may_try():
            async with state.lock:
                await self._recover(state, key)
        checkpoint = state.presented
        if checkpoint.records or checkpoint.closed:
            return checkpoint
        return None

    async def attempts(self, workload_id: str) -> list[int]:
        """The attempts stored for a workload (remote or spooled), ascending."""
        found: set[int] = set()
        prefix = self._workload_prefix(workload_id)
        for name in await self.backend.list(prefix):
            head = name[len(prefix) :].split("/", 1)[0]
            if head.isdigit():
                found.add(int(head))
        found.update(
            k.attempt
            for k, s in self._states.items()
            if k.workload_id == workload_id and (s.checkpoint.records or s.checkpoint.closed)
        )
        return sorted(found)

    # -- the spool, in the background --------------------------------------------------

    def spooled_bytes(self) -> int:
        """Bytes held on local disk, waiting for the backend."""
        return sum(s.spooled for s in self._states.values())

    async def upload_spool(self) -> bool:
        """Try to upload everything spooled (found again on disk too); True when done."""
        for key in await anyio.to_thread.run_sync(spooled_keys, self.spool_dir):
            if key not in self._states:
                await self._state(key)
        for key, state in list(self._states.items()):
            if not state.loaded and not self._outage.may_try():
                return False
            if state.spooled or not state.loaded:
                async with state.lock:
                    if not await self._recover(state, key):
                        return False
                    if state.spooled and not await self._drain(state, key):
                        return False
        return True

    async def maintain(
        self,
        *,
        spooled: Callable[[int], None] = lambda n: None,
        error: Callable[[str], None] = lambda op: None,
    ) -> None:
        """Run forever: upload the spool when the backend is back; report.

        :param spooled: called with :meth:`spooled_bytes` after every round.
        :param error: called with the operation (``append``, ``read``, ...) that failed.
        """
        self._outage.on_error = error
        while True:
            if self._outage.due():
                await self.upload_spool()
            spooled(self.spooled_bytes())
            await anyio.sleep(max(self.retry_seconds / 2, 0.05))

    async def aclose(self) -> None:
        """Release the backend's connections (spooled data stays on disk)."""
        await self.backend.aclose()

    # -- reading --------------------------------------------------------------------

    async def _snapshot(self, key: LogKey) -> tuple[list[str], bytes]:
        """The chunk names of ``key`` and the last one's bytes now: the end of a read."""
        names = await self._chunks(key)
        last = (await self.backend.get(names[-1]) or b"") if names else b""
        return names, last

    async def _source_records(
        self, key: LogKey, names: list[str], last: bytes, source: str | None
    ) -> AsyncGenerator[LogRecord, None]:
        for i, name in enumerate(names):
            data = last if i == len(names) - 1 else await self.backend.get(name)
            for batch in parse_chunk(data or b"", key.attempt):
                for record in batch.records:
                    if source is None or record.source == source:
                        yield record

    async def _merged(self, key: LogKey, names: list[str], last: bytes) -> AsyncIterator[LogRecord]:
        if not names:
            return
        batches = parse_chunk(last, key.attempt)
        marks = batches[-1].checkpoint.marks if batches else ()
        sources = sorted((m.source for m in marks), key=_source_rank)
        if len(sources) <= 1:
            async for record in self._source_records(key, names, last, None):
                yield record
            return
        streams = [self._source_records(key, names, last, s) for s in sources]
        try:
            async for record in merge_by_time(streams):
                yield record
        finally:
            for stream in streams:
                await stream.aclose()

    async def read(
        self, workload_id: str, *, attempt: int | None = None
    ) -> AsyncIterator[LogRecord]:
        """Every uploaded record of one attempt, or of each in turn; time-ordered."""
        wanted = [attempt] if attempt is not None else await self.attempts(workload_id)
        for a in wanted:
            key = LogKey(workload_id, a)
            try:
                names, last = await self._snapshot(key)
            except Exception:
                self._outage.on_error("read")
                raise
            async for record in self._merged(key, names, last):
                yield record

    async def follow(
        self, workload_id: str, *, attempt: int | None = None
    ) -> AsyncIterator[LogRecord]:
        """Read, then tail; see :meth:`zwmd.logs.store.LogStore.follow`."""
        if attempt is not None:
            async for record in self._follow_key(LogKey(workload_id, attempt)):
                yield record
            return
        known = await self.attempts(workload_id)
        while not known:
            event = self._any_change
            with anyio.move_on_after(self.poll_seconds):
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
        names, last = await self._snapshot(key)
        async for record in self._merged(key, names, last):
            yield record
        batches = parse_chunk(last, key.attempt)
        closed = bool(batches) and batches[-1].checkpoint.closed
        seq = int(names[-1].rsplit("/", 1)[1][: -len(SUFFIX)]) if names else 0
        offset = len(last)
        while True:
            state = self._states.get(key)
            event = state.changed if state is not None else self._any_change
            progressed = False
            try:
                pieces = [await self.backend.get(self.chunk_name(key, seq), offset)]
                if pieces[0] == b"":
                    following = await self.backend.get(self.chunk_name(key, seq + 1))
                    if following is not None:  # chunk ``seq`` is final now: its tail first
                        pieces = [await self.backend.get(self.chunk_name(key, seq), offset)]
                        pieces.append(following)
            except Exception:
                self._outage.on_error("follow")
                pieces = []
            for i, data in enumerate(pieces):
                if i == 1:
                    seq, offset = seq + 1, 0
                batches = parse_chunk(data or b"", key.attempt)
                if not batches:
                    continue
                offset += batches[-1].end
                closed = batches[-1].checkpoint.closed
                progressed = True
                for batch in batches:
                    for record in batch.records:
                        yield record
            if progressed:
                continue
            if closed:
                return
            with anyio.move_on_after(self.poll_seconds):
                await event.wait()
