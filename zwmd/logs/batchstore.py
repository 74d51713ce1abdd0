"""What the file and object log stores share: reading and following keys that hold batches.

Responsibility: :class:`BatchLogStore`, the base of :class:`~zwmd.logs.filestore.FileLogStore`
and :class:`~zwmd.logs.objectstore.ObjectLogStore`. It implements ``read`` and
``follow`` of :class:`~zwmd.logs.store.LogStore` once, over a :class:`KeyReader` that
each store gives for one key (where its bytes are, and how to read them); it also loads
each key's state once, and checks workload ids and attempts the same way for both.

Design notes:

- A read is fixed when it starts: :meth:`BatchLogStore._reader` notes the key's
  checkpoint and where its stored bytes end then. The records up to there come ordered
  by time across sources, with one decoder per source over the same bytes and
  :func:`~zwmd.logs.merging.merge_by_time`; memory stays a piece (a file chunk, an
  object) per source. With a single source, one decoder reads everything.
- A follower then takes the batches committed after that end, in storage order, as
  they come. It is woken at once by an append of this process (the key's
  ``changed`` event) and looks again every :attr:`BatchLogStore.poll_seconds` in case
  another process writes. It ends once it has read a commit that closes the key.
- Following a workload without an attempt follows its latest attempt (after reading
  the older ones), then any newer one; before anything is stored it waits for the first
  attempt, woken by any commit of this process (:meth:`BatchLogStore._announce`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Final, Generic, Protocol, TypeVar
from urllib.parse import quote

import anyio

from zwmd.logs.batches import Batch
from zwmd.logs.merging import merge_by_time
from zwmd.logs.records import SOURCES, LogRecord
from zwmd.logs.store import Checkpoint, InvalidKey, LogKey

__all__ = ["BatchLogStore", "KeyReader", "source_rank"]

StateT = TypeVar("StateT")

#: A workload id's length, and its percent-encoded form's (one file or object name segment).
MAX_ID_CHARS: Final = 200
MAX_SEGMENT_BYTES: Final = 255


class KeyReader(Protocol):
    """One read of one key, as a store gives it (see :meth:`BatchLogStore._reader`)."""

    #: What was stored when the read began: its sources, and whether the key is closed.
    checkpoint: Checkpoint

    def stored(self, source: str | None) -> AsyncGenerator[list[LogRecord], None]:
        """The records stored when the read began, in storage order, in pieces; only
        those of ``source`` unless it is None."""
        ...

    async def newer(self) -> list[Batch]:
        """The batches committed since the read began (or the last call); [] if none yet."""
        ...

    def changed(self) -> anyio.Event:
        """An event set when this process next commits to the key."""
        ...


def source_rank(source: str) -> tuple[int, str]:
    """The order of sources whose records have equal times (see :data:`SOURCES`)."""
    return (SOURCES.index(source), "") if source in SOURCES else (len(SOURCES), source)


class BatchLogStore(ABC, Generic[StateT]):
    """``read``, ``follow`` and per-key state for a store of batches (module docs).

    :param poll_seconds: how often a follower looks for another process's appends.
    """

    def __init__(self, *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._states: dict[LogKey, StateT] = {}
        self._loading: dict[LogKey, anyio.Lock] = {}
        self._any_change = anyio.Event()

    # -- what a store provides --------------------------------------------------------

    @abstractmethod
    async def attempts(self, workload_id: str) -> list[int]:
        """The attempts stored for a workload, ascending."""

    @abstractmethod
    async def _open(self, key: LogKey) -> StateT:
        """The state of a key this store instance has not touched yet."""

    @abstractmethod
    async def _reader(self, key: LogKey, operation: str) -> KeyReader:
        """A read of ``key`` beginning now, for ``operation`` (``read``, ``follow``)."""

    # -- keys and their state -------------------------------------------------------

    @staticmethod
    def _quoted_workload(workload_id: str) -> str:
        """``workload_id`` as one path segment; :class:`InvalidKey` for ids no store takes.

        The segment is the id percent-encoded, so it must fit in one file name (255
        bytes) as well as the id's own 200 characters: a UUID always does, 70 times ``é``
        (420 bytes encoded) does not.
        """
        if not isinstance(workload_id, str) or not workload_id or len(workload_id) > MAX_ID_CHARS:
            shown = workload_id if len(str(workload_id)) <= 60 else f"{workload_id[:57]}..."
            raise InvalidKey(
                "workload_id", f"must be a string of 1-{MAX_ID_CHARS} characters, got {shown!r}"
            )
        name = quote(workload_id, safe="")
        if name in {".", ".."}:
            raise InvalidKey("workload_id", f"{workload_id!r} is not allowed")
        if len(name) > MAX_SEGMENT_BYTES:
            raise InvalidKey(
                "workload_id",
                f"{len(name)} bytes once percent-encoded, more than a file name holds "
                f"({MAX_SEGMENT_BYTES}); use ASCII letters, digits and '-._~'",
            )
        return name

    @staticmethod
    def _check_attempt(attempt: int) -> None:
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise InvalidKey("attempt", f"must be an integer >= 0, got {attempt!r}")

    async def _state(self, key: LogKey) -> StateT:
        """The key's state, opened once however many tasks ask at the same time."""
        state = self._states.get(key)
        if state is not None:
            return state
        self._quoted_workload(key.workload_id)  # refuse a bad key before keeping a lock
        self._check_attempt(key.attempt)
        lock = self._loading.setdefault(key, anyio.Lock())
        async with lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = await self._open(key)
        self._loading.pop(key, None)
        return state

    def _announce(self) -> None:
        """Something was committed: wake the followers waiting for a first attempt."""
        self._any_change.set()
        self._any_change = anyio.Event()

    # -- reading --------------------------------------------------------------------

    async def read(
        self, workload_id: str, *, attempt: int | None = None
    ) -> AsyncIterator[LogRecord]:
        """Every stored record of one attempt, or of each attempt in turn; time-ordered."""
        wanted = [attempt] if attempt is not None else await self.attempts(workload_id)
        for a in wanted:
            reader = await self._reader(LogKey(workload_id, a), "read")
            async for record in _merged(reader):
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
        while not known:  # nothing stored yet: wait for the first attempt
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
        reader = await self._reader(key, "follow")
        async for record in _merged(reader):
            yield record
        closed = reader.checkpoint.closed
        while True:
            event = reader.changed()  # before looking: an append meanwhile sets it
            batches = await reader.newer()
            for batch in batches:
                for record in batch.records:
                    yield record
            if batches:
                closed = batches[-1].checkpoint.closed
                continue
            if closed:
                return
            with anyio.move_on_after(self.poll_seconds):
                await event.wait()


async def _merged(reader: KeyReader) -> AsyncIterator[LogRecord]:
    """The records a read began with, merged by time: one decoder per source."""
    sources = sorted((m.source for m in reader.checkpoint.marks), key=source_rank)
    if len(sources) <= 1:
        async with aclosing(reader.stored(None)) as pieces:
            async for piece in pieces:
                for record in piece:
                    yield record
        return
    streams = [_each(reader.stored(s)) for s in sources]
    try:
        async for record in merge_by_time(streams):
            yield record
    finally:
        for stream in streams:
            await stream.aclose()


async def _each(pieces: AsyncGenerator[list[LogRecord], None]) -> AsyncGenerator[LogRecord, None]:
    async with aclosing(pieces):
        async for piece in pieces:
            for record in piece:
                yield record
