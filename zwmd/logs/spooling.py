"""The local spool of an object-store log key, and re-basing it when the remote is unknown.

Responsibility: the spool files of :class:`~zwmd.logs.objectstore.ObjectLogStore` (one
key's batches the bucket did not take yet), how they are found again after a restart,
reconciled with the remote, and re-based when they were written without knowing it;
the store's per-key state (:class:`KeyState`) and its back-off (:class:`Outage`).

Design:

- A spool file holds whole batches in the format of :mod:`zwmd.logs.batches` (records,
  then a commit line with the cumulative :class:`~zwmd.logs.store.Checkpoint`),
  appended and fsynced, so an append is durable when it returns. It comes in two kinds:

  * *based*, ``<spool_dir>/<workload id>/<attempt>.jsonl``: its checkpoints continue
    the remote's. Only batches of this file are uploaded. After a crash, the batches
    the remote already holds (its cumulative record count says which) are skipped.
    While it exists, the remote holds at most what it holds (one writer; the file is
    deleted only once everything in it was uploaded), so its last checkpoint *is* the
    key's checkpoint even when the bucket cannot be asked.
  * *unbased*, ``<attempt>.unbased.jsonl``: written when the store touched the key for
    the first time (a new run, a restarted daemon) while the bucket was unreachable and
    no based file existed, so the remote's state was unknown. Its checkpoints start
    from zero: they say what is known locally, and that is what ``checkpoint`` answers.

- Re-basing, once the bucket answers: the remote's checkpoint is loaded and every
  unbased batch is re-encoded with cumulative checkpoints continuing it. Records the
  remote already holds are dropped, per source, with the pod follower's own rule
  (:class:`~zwmd.logs.merging.Deduper` from the remote's mark of the source): a
  follower told "nothing stored" after a restart fetches its container's log from the
  start, and the lines the remote has are exactly the ones that rule drops. A batch
  left empty (and not closing the key) disappears.
- Crash safety of the re-base: the re-based batches are written to a temporary file,
  fsynced and renamed to the based name (the commit point); then the unbased file is
  deleted. A start that finds both deletes the unbased one (the rename happened); one
  that finds only the unbased file re-bases again, from the same remote; a temporary
  file is rubbish. Uploading then follows the based rules, so a crash anywhere leads to
  the same remote content.
- A follower that started from a local checkpoint may still be replaying lines the
  remote holds when the re-base happens. For such a source the store keeps the
  :class:`Replay` (the Deduper where the re-base left it, and the mark of the local
  stream): later records of the source pass through it, and ``checkpoint`` reports the
  local mark for the source until the replay is over, so a follower that resumes, or
  the next one, continues the same stream and nothing is stored twice.

The functions that touch files block: run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import anyio
import anyio.to_thread

from zwmd.logs.batches import SUFFIX, Batch, decode_batches, encode_batch
from zwmd.logs.merging import Deduper
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint, LogKey, SourceMark

__all__ = [
    "KeyState",
    "Outage",
    "Replay",
    "Spool",
    "drop_replayed",
    "next_upload",
    "open_spool",
    "presented",
    "rebase",
    "reconcile",
    "spooled_keys",
    "unbased_path",
]

_TMP: Final = ".rebase"
#: The spool of a key whose remote state was unknown (see the module docs).
UNBASED_SUFFIX: Final = ".unbased" + SUFFIX


class Outage:
    """Whether the bucket is down, and when to try it again (doubling back-off)."""

    def __init__(self, retry_seconds: float, max_retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.down = False
        self.retry_at = 0.0
        self.backoff = retry_seconds
        #: called with the operation (``append``, ``read``, ...) that failed
        self.on_error: Callable[[str], None] = lambda operation: None

    def due(self) -> bool:
        """Whether a retry is due (always, while the bucket is not known to be down)."""
        return time.monotonic() >= self.retry_at

    def may_try(self) -> bool:
        """Whether to ask the bucket now rather than spool at once."""
        return not self.down or self.due()

    def failed(self, operation: str) -> None:
        self.on_error(operation)
        if not self.down:
            self.down = True
            self.backoff = self.retry_seconds
        else:
            self.backoff = min(self.backoff * 2, self.max_retry_seconds)
        self.retry_at = time.monotonic() + self.backoff

    def succeeded(self) -> None:
        if self.down:
            self.down, self.backoff = False, self.retry_seconds


# -- the spool's files ----------------------------------------------------------------


def _read_spool(path: Path, start: int = 0, end: int | None = None) -> bytes:
    """Bytes ``start`` to ``end`` (or the end) of a spool file; none if it is missing."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read() if end is None else f.read(end - start)
    except FileNotFoundError:
        return b""


def _append_spool(path: Path, payload: bytes, fsync: bool) -> None:
    """Append ``payload``, synced (with the directory when the file is new) if ``fsync``."""
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    if created and fsync:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _truncate(path: Path, size: int) -> None:
    """Cut a spool file back to ``size`` bytes, durably."""
    with open(path, "r+b") as f:
        f.truncate(size)
        os.fsync(f.fileno())


def _unlink_spool(path: Path) -> None:
    """Delete a spool file, and its directory once no other attempt is spooled there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):  # other attempts still spooled
        path.parent.rmdir()


def spooled_keys(root: Path) -> list[LogKey]:
    """The keys with a spool file (based or unbased) under ``root``, sorted."""
    keys: list[LogKey] = []
    try:
        directories = sorted(os.listdir(root))
    except FileNotFoundError:
        return keys
    for d in directories:
        try:
            names = os.listdir(root / d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for n in names:
            end = UNBASED_SUFFIX if n.endswith(UNBASED_SUFFIX) else SUFFIX
            stem = n[: -len(end)]
            if n.endswith(end) and stem.isdigit():
                keys.append(LogKey(unquote(d), int(stem)))
    return sorted(set(keys))


def unbased_path(path: Path) -> Path:
    """The unbased spool file next to the based one at ``path``."""
    return path.with_name(path.name[: -len(SUFFIX)] + UNBASED_SUFFIX)


@dataclass(eq=False)
class Spool:
    """One key's spool: ``size`` bytes of whole batches, the first ``sent`` uploaded."""

    path: Path  # the based file
    size: int = 0
    sent: int = 0
    unbased: bool = False  # the batches are in the unbased file, checkpoints from zero

    @property
    def file(self) -> Path:
        """The file appends go to."""
        return unbased_path(self.path) if self.unbased else self.path

    @property
    def pending(self) -> int:
        """Bytes not uploaded yet."""
        return self.size - self.sent

    def add(self, payload: bytes, fsync: bool) -> None:
        """Append a batch, durably."""
        _append_spool(self.file, payload, fsync)
        self.size += len(payload)

    def clear(self) -> None:
        """Everything was uploaded: delete the file."""
        _unlink_spool(self.file)
        self.size = self.sent = 0


def next_upload(
    spool: Spool, attempt: int, chunk_bytes: int, open_room: int
) -> tuple[bytes, Batch]:
    """The next spooled bytes to upload, and their last batch.

    Whole batches: as many as fit ``open_room`` (room left in the open chunk) if the
    first one does, else as many as fit a new chunk (at least one).
    """
    want = chunk_bytes
    while True:  # read at least one whole batch, about a chunk's worth
        end = min(spool.sent + want, spool.size)
        data = _read_spool(spool.file, spool.sent, end)
        batches = decode_batches(data, attempt)
        if batches or end >= spool.size:
            break
        want *= 2
    if not batches:  # cannot happen: the spool holds whole batches
        raise RuntimeError(f"{spool.file}: spool has no complete batch")
    room = open_room if batches[0].end <= open_room else chunk_bytes
    take = batches[0]
    for batch in batches:
        if batch.end > room:
            break
        take = batch
    return data[: take.end], take


@dataclass(eq=False)
class Replay:
    """A source still replaying lines the remote holds (see the module docs)."""

    deduper: Deduper
    mark: SourceMark  # where the local stream of the source is


def _whole_batches(path: Path, attempt: int) -> list[Batch]:
    """The complete batches of a spool file; a torn tail is cut off (on disk too)."""
    data = _read_spool(path)
    batches = decode_batches(data, attempt)
    good = batches[-1].end if batches else 0
    if good < len(data):
        _truncate(path, good)
    return batches


def open_spool(path: Path, attempt: int) -> tuple[Spool, Checkpoint | None]:
    """The spool found on disk for a key, and the checkpoint it knows (None: nothing)."""
    tmp = path.with_name(path.name + _TMP)
    if tmp.exists():
        tmp.unlink()  # a re-base that did not reach its rename
    unbased = unbased_path(path)
    based = _whole_batches(path, attempt)
    if based:
        _unlink_spool(unbased)  # a re-base renamed, then crashed before this
        return Spool(path, based[-1].end), based[-1].checkpoint
    _unlink_spool(path)
    batches = _whole_batches(unbased, attempt)
    if batches:
        return Spool(path, batches[-1].end, unbased=True), batches[-1].checkpoint
    _unlink_spool(unbased)
    return Spool(path), None


def rebase(
    batches: Sequence[Batch], remote: Checkpoint
) -> tuple[bytes, Checkpoint, dict[str, Deduper]]:
    """Unbased batches re-encoded after ``remote``, its records dropped (module docs).

    :returns: the bytes, the checkpoint after them, and the dedupers of the sources
        whose replay of the remote's records is not over.
    """
    dedupers: dict[str, Deduper] = {}
    checkpoint = remote
    parts: list[bytes] = []
    for batch in batches:
        kept: list[LogRecord] = []
        for record in batch.records:
            deduper = dedupers.get(record.source)
            if deduper is None:
                deduper = dedupers[record.source] = Deduper(remote.mark(record.source))
            if deduper([(record.ts_ns, record.message)]):
                kept.append(record)
        closes = batch.checkpoint.closed and not checkpoint.closed
        if not kept and not closes:
            continue
        checkpoint = checkpoint.advanced(kept)
        if closes:
            checkpoint = Checkpoint(checkpoint.records, checkpoint.marks, True)
        parts.append(encode_batch(kept, checkpoint))
    return b"".join(parts), checkpoint, {s: d for s, d in dedupers.items() if d.replaying}


def _write_rebased(path: Path, payload: bytes, fsync: bool) -> None:
    """Create the based file with ``payload``, atomically (temporary file, rename)."""
    tmp = path.with_name(path.name + _TMP)
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def reconcile(
    spool: Spool, attempt: int, remote: Checkpoint, fsync: bool
) -> tuple[Checkpoint, dict[str, Replay]]:
    """Put ``spool`` on top of the remote's checkpoint; update it in place.

    An unbased spool is re-based (and becomes based); of a based one, the batches the
    remote holds already count as sent. :returns: the key's checkpoint (remote and
    spooled) and the sources still replaying.
    """
    if spool.unbased:
        unbased = unbased_path(spool.path)
        batches = _whole_batches(unbased, attempt)
        payload, checkpoint, dedupers = rebase(batches, remote)
        if payload:
            _write_rebased(spool.path, payload, fsync)
        _unlink_spool(unbased)
        spool.unbased, spool.size, spool.sent = False, len(payload), 0
        local = batches[-1].checkpoint if batches else Checkpoint()
        replays: dict[str, Replay] = {}
        for source, deduper in dedupers.items():
            mark = local.mark(source)
            if mark is not None:
                replays[source] = Replay(deduper, mark)
        if not payload:
            spool.clear()
        return checkpoint, replays
    checkpoint = remote
    if spool.size:
        batches = _whole_batches(spool.path, attempt)
        for batch in batches:
            if batch.checkpoint.records <= remote.records and not (
                batch.checkpoint.closed and not remote.closed
            ):
                spool.sent = batch.end  # uploaded before a crash
            else:
                checkpoint = batches[-1].checkpoint
                break
        if spool.pending == 0:
            spool.clear()
    return checkpoint, {}


def drop_replayed(replays: dict[str, Replay], records: Sequence[LogRecord]) -> list[LogRecord]:
    """``records`` without those still replaying what the remote holds (module docs)."""
    out: list[LogRecord] = []
    for record in records:
        replay = replays.get(record.source)
        if replay is not None:
            replay.mark = replay.mark.advanced(record.ts_ns)
            kept = replay.deduper([(record.ts_ns, record.message)])
            if not replay.deduper.replaying:
                del replays[record.source]
            if not kept:
                continue
        out.append(record)
    return out


def presented(checkpoint: Checkpoint, replays: dict[str, Replay]) -> Checkpoint:
    """The checkpoint to tell callers: a replaying source's mark is the local one."""
    if not replays:
        return checkpoint
    marks = tuple(replays[m.source].mark if m.source in replays else m for m in checkpoint.marks)
    return Checkpoint(checkpoint.records, marks, checkpoint.closed)


@dataclass(eq=False)
class KeyState:
    """What an :class:`~zwmd.logs.objectstore.ObjectLogStore` knows of one key."""

    checkpoint: Checkpoint  # everything stored: uploaded and spooled (from 0 if unbased)
    spool: Spool
    loaded: bool = False  # the remote's state is known (the fields below)
    remote_records: int = 0  # records uploaded
    seq: int = -1  # number of the open chunk (-1: none yet)
    buffer: bytes = b""  # the open chunk's bytes
    puts: int = 0  # times the open chunk was written
    replays: dict[str, Replay] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def spooled(self) -> int:
        """Bytes spooled and not uploaded."""
        return self.spool.pending

    @property
    def presented(self) -> Checkpoint:
        """The checkpoint to tell callers (see :func:`presented`)."""
        return presented(self.checkpoint, self.replays)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def settle(
        self, attempt: int, seq: int, buffer: bytes, puts: int, remote: Checkpoint, fsync: bool
    ) -> None:
        """The remote's open chunk is known: put the spool on it (see :func:`reconcile`)."""
        checkpoint, replays = await anyio.to_thread.run_sync(
            reconcile, self.spool, attempt, remote, fsync
        )
        self.seq, self.buffer, self.puts = seq, buffer, puts
        self.remote_records = remote.records
        self.checkpoint, self.replays, self.loaded = checkpoint, replays, True
