"""Log stores on object storage (S3, GCS, ...): chunks, recovery, and a local spool.

Responsibility: :class:`ObjectLogStore`, a :class:`~zwmd.logs.store.LogStore` over any
:class:`ObjectBackend` (put, ranged get, list). zwmd-aws and zwmd-gcp supply only a
backend; a third party adds another object store the same way.

Object layout, under the configured prefix:
``<prefix>/<workload id, %-quoted>/<attempt>/<chunk number, 8 digits>.jsonl``. A chunk
holds whole batches in the format of :mod:`zwmd.logs.batches` (records, each batch
ended by a commit line carrying the cumulative :class:`~zwmd.logs.store.Checkpoint`), so
the last commit line of the last chunk is the key's checkpoint: there is no separate
manifest to keep in step with the data.

Design notes:

- Object stores have no append. Each ``append`` rewrites the key's *open* chunk with
  the new batch added (one PUT, durable on return, all-or-nothing) until the chunk
  holds :attr:`ObjectLogStore.chunk_bytes` or was written :attr:`ObjectLogStore.chunk_puts`
  times; the next batch starts a new chunk. So there is one request per append (what an
  object per append would cost), readers see few objects, every stored line is visible
  at once, and memory holds at most one open chunk per key being written.
- Reads and followers are those of :class:`~zwmd.logs.batchstore.BatchLogStore`; the
  end of a read is fixed when it starts (the open chunk's length then), and memory stays
  one chunk per source. A rewritten chunk only grows, so a follower tails it with ranged
  GETs from the offset it has read, then looks for the next chunk; in-process appends
  wake it at once, other writers are seen within :attr:`ObjectLogStore.poll_seconds`.
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

from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import anyio
import anyio.to_thread

from zwmd.logs.batches import SUFFIX, Batch, decode_batches, encode_batch
from zwmd.logs.batchstore import BatchLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.spooling import (
    KeyState,
    Outage,
    drop_replayed,
    next_upload,
    open_spool,
    spooled_keys,
)
from zwmd.logs.store import Checkpoint, LogKey, StoreUnavailable

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


class ObjectLogStore(BatchLogStore[KeyState]):
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
        super().__init__(poll_seconds=poll_seconds)
        self.backend = backend
        self.name = name
        self.prefix = prefix.strip("/")
        self.spool_dir = Path(spool_dir)
        self.chunk_bytes = chunk_bytes
        self.chunk_puts = chunk_puts
        self.put_timeout = put_timeout
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.fsync = fsync
        self._outage = Outage(retry_seconds, max_retry_seconds)

    # -- names ----------------------------------------------------------------------

    def _workload_prefix(self, workload_id: str) -> str:
        name = self._quoted_workload(workload_id)
        return f"{self.prefix}/{name}/" if self.prefix else f"{name}/"

    def _key_prefix(self, key: LogKey) -> str:
        self._check_attempt(key.attempt)
        return f"{self._workload_prefix(key.workload_id)}{key.attempt}/"

    def chunk_name(self, key: LogKey, seq: int) -> str:
        """The object name of chunk ``seq`` of ``key``."""
        return f"{self._key_prefix(key)}{seq:08d}{SUFFIX}"

    def _spool_path(self, key: LogKey) -> Path:
        self._key_prefix(key)  # validates
        name = self._quoted_workload(key.workload_id)
        return self.spool_dir / name / f"{key.attempt}{SUFFIX}"

    async def _chunks(self, key: LogKey) -> list[str]:
        prefix = self._key_prefix(key)
        return [n for n in await self.backend.list(prefix) if n.endswith(SUFFIX)]

    # -- state ----------------------------------------------------------------------

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
        seq = _chunk_number(names[-1])
        buffer = await self.backend.get(names[-1]) or b""
        batches = decode_batches(buffer, key.attempt)
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
        self._announce()
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
        self._announce()
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
        try:
            names = await self.backend.list(prefix)
        except Exception as exc:
            self._outage.failed("list")
            raise StoreUnavailable(f"the log store could not be listed: {exc}") from exc
        for name in names:
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

    # -- reading (the rest is BatchLogStore's) ----------------------------------------

    async def _reader(self, key: LogKey, operation: str) -> _ObjectReader:
        """The chunks of ``key`` and the last one's bytes now: the end of the read."""
        try:
            names = await self._chunks(key)
            last = (await self.backend.get(names[-1]) or b"") if names else b""
        except Exception:
            self._outage.on_error(operation)
            raise
        return _ObjectReader(self, key, names, last)


def _chunk_number(name: str) -> int:
    return int(name.rsplit("/", 1)[1][: -len(SUFFIX)])


class _ObjectReader:
    """A read of one key's chunks (a :class:`~zwmd.logs.batchstore.KeyReader`)."""

    def __init__(self, store: ObjectLogStore, key: LogKey, names: list[str], last: bytes) -> None:
        self.store, self.key, self.names, self.last = store, key, names, last
        batches = decode_batches(last, key.attempt)
        self.checkpoint = batches[-1].checkpoint if batches else Checkpoint()
        self._seq = _chunk_number(names[-1]) if names else 0  # the chunk a follower tails
        self._offset = len(last)  # how much of it was read

    async def stored(self, source: str | None) -> AsyncGenerator[list[LogRecord], None]:
        for i, name in enumerate(self.names):
            last = i == len(self.names) - 1
            data = self.last if last else await self.store.backend.get(name)
            for batch in decode_batches(data or b"", self.key.attempt, source=source):
                yield batch.records

    async def newer(self) -> list[Batch]:
        get, chunk_name = self.store.backend.get, self.store.chunk_name
        key, seq = self.key, self._seq
        try:
            pieces = [await get(chunk_name(key, seq), self._offset)]
            if pieces[0] == b"":
                following = await get(chunk_name(key, seq + 1))
                if following is not None:  # chunk ``seq`` is final now: its tail first
                    pieces = [await get(chunk_name(key, seq), self._offset)]
                    pieces.append(following)
        except Exception:
            self.store._outage.on_error("follow")
            return []
        out: list[Batch] = []
        for i, data in enumerate(pieces):
            if i == 1:
                self._seq, self._offset = seq + 1, 0
            batches = decode_batches(data or b"", key.attempt)
            if batches:
                self._offset += batches[-1].end
                out.extend(batches)
        return out

    def changed(self) -> anyio.Event:
        state = self.store._states.get(self.key)
        return state.changed if state is not None else self.store._any_change
