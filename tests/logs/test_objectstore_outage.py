"""Object-store keys first touched while the bucket is unreachable: spooled, re-based, once.

A new run starting during an outage, or a daemon restarted during one, cannot learn
the key's remote state; its lines are spooled anyway and re-based on the remote when it
answers (see :mod:`zwmd.logs.spooling`). What a user checks: every line read back
exactly once, in order.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from zwmd.logs.merging import dedupe, pod_records
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey, StoreUnavailable
from zwmd.testing.memorybackend import MemoryBackend

pytestmark = pytest.mark.anyio

BASE = 1_795_000_000_000_000_000
SEC = 1_000_000_000


def pod_line(i: int) -> tuple[int, str]:
    """Line ``i`` of a container log: four lines share each timestamp, ~3 per second."""
    return BASE + (i // 4) * 300_000_000, f"line {i}"


def pod_log(n: int) -> list[tuple[int, str]]:
    return [pod_line(i) for i in range(n)]


def records(lines: list[tuple[int, str]]) -> list[LogRecord]:
    return pod_records(lines, attempt=1)


def make(
    backend: MemoryBackend, tmp_path: Path, *, retry_seconds: float = 0.0, chunk_bytes: int = 2048
) -> ObjectLogStore:
    return ObjectLogStore(
        backend,
        name="mem",
        prefix="runner-logs",
        spool_dir=tmp_path / "spool",
        fsync=False,
        chunk_bytes=chunk_bytes,
        poll_seconds=0.05,
        retry_seconds=retry_seconds,
    )


async def collect(it: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [r async for r in it]


async def read_back(backend: MemoryBackend, tmp_path: Path, workload_id: str) -> list[str]:
    """The messages a fresh store (another process, no spool) reads from the bucket."""
    fresh = make(backend, tmp_path / "reader")
    return [r.message for r in await collect(fresh.read(workload_id))]


def spool_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").rglob("*.jsonl*"))


async def append_in_batches(
    store: ObjectLogStore, key: LogKey, lines: list[tuple[int, str]]
) -> None:
    for start in range(0, len(lines), 25):
        await store.append(key, records(lines[start : start + 25]))


async def test_a_new_key_during_an_outage_is_spooled_and_uploaded_by_maintain(
    tmp_path: Path,
) -> None:
    backend = MemoryBackend()
    backend.online = False
    store = make(backend, tmp_path, retry_seconds=0.05)
    key = LogKey("wl-new", 1)
    lines = pod_log(300)
    for start in range(0, 300, 50):  # every append returns: the lines are on local disk
        checkpoint = await store.append(key, records(lines[start : start + 50]))
    await store.close(key)
    assert checkpoint.records == 300
    assert spool_files(tmp_path)
    assert store.spooled_bytes() > 0

    drained = anyio.Event()

    def report(nbytes: int) -> None:
        if backend.online and nbytes == 0:
            drained.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: store.maintain(spooled=report))
            backend.online = True
            await drained.wait()
            tg.cancel_scope.cancel()

    assert await read_back(backend, tmp_path, "wl-new") == [text for _, text in lines]
    assert not spool_files(tmp_path)
    fresh = make(backend, tmp_path / "again")
    stored = await fresh.checkpoint(key)
    assert stored is not None
    assert (stored.records, stored.closed) == (300, True)
    # the key is closed: a follower reads everything and ends
    with anyio.fail_after(10):
        assert len(await collect(fresh.follow("wl-new"))) == 300


async def test_a_store_restarted_during_an_outage_continues_its_spool(tmp_path: Path) -> None:
    backend = MemoryBackend()
    key = LogKey("wl-restart", 1)
    lines = pod_log(300)
    first = make(backend, tmp_path)
    await append_in_batches(first, key, lines[:100])  # uploaded
    backend.online = False
    await append_in_batches(first, key, lines[100:200])  # spooled
    # The daemon dies; a new one starts while the bucket is still unreachable.
    restarted = make(backend, tmp_path)
    checkpoint = await restarted.checkpoint(key)
    assert checkpoint is not None
    assert checkpoint.records == 200  # known from the spool, without asking the bucket
    await append_in_batches(restarted, key, lines[200:300])
    assert (await restarted.append(key, [])).records == 300
    assert await read_back_or_none(backend, tmp_path, "wl-restart") is None

    backend.online = True
    assert await restarted.upload_spool()
    assert await read_back(backend, tmp_path, "wl-restart") == [text for _, text in lines]
    assert not spool_files(tmp_path)
    stored = await make(backend, tmp_path / "again").checkpoint(key)
    assert stored is not None
    assert stored.records == 300
    mark = stored.mark("runner")
    assert mark is not None
    assert mark.records == 300


async def read_back_or_none(backend: MemoryBackend, tmp_path: Path, wid: str) -> list[str] | None:
    try:
        return await read_back(backend, tmp_path, wid)
    except StoreUnavailable:  # the bucket cannot be listed: which attempts exist is unknown
        return None


async def test_lines_a_resumed_follower_stores_again_are_dropped_on_rebase(
    tmp_path: Path,
) -> None:
    backend = MemoryBackend()
    key = LogKey("wl-follow", 1)
    container = pod_log(200)
    first = make(backend, tmp_path)
    await append_in_batches(first, key, container[:98])  # ends inside a shared timestamp
    message = LogRecord(pod_line(50)[0] + 1, "zwmd", 30, "a message", 1)
    await first.append(key, [message])
    # Restarted during an outage, with nothing spooled: nothing is known of the key.
    backend.online = False
    restarted = make(backend, tmp_path)
    assert await restarted.checkpoint(key) is None
    # So the follower fetches the container log from the start and stores what it gets.
    await append_in_batches(restarted, key, dedupe(None, container[:60]))
    # The bucket answers in the middle of the follower's replay.
    backend.online = True
    assert await restarted.upload_spool()
    # Its stream drops, twice; each time it resumes from the store's checkpoint.
    for until in (150, 200):
        checkpoint = await restarted.checkpoint(key)
        assert checkpoint is not None
        mark = checkpoint.mark("runner")
        assert mark is not None
        since = [line for line in container[:until] if line[0] >= mark.since_ns]
        await append_in_batches(restarted, key, dedupe(mark, since))

    got = await read_back(backend, tmp_path, "wl-follow")
    expected = [text for _, text in container]
    expected.insert(expected.index("line 52"), "a message")  # merged by time
    assert got == expected
    stored = await make(backend, tmp_path / "again").checkpoint(key)
    assert stored is not None
    assert stored.records == 201


@pytest.mark.parametrize("crash", ["before the rename", "after the rename", "mid-upload"])
async def test_a_crash_during_recovery_leads_to_the_same_content(
    tmp_path: Path, crash: str
) -> None:
    backend = MemoryBackend()
    key = LogKey("wl-crash", 1)
    container = pod_log(400)
    await append_in_batches(make(backend, tmp_path), key, container[:150])
    backend.online = False
    restarted = make(backend, tmp_path)
    await append_in_batches(restarted, key, container)  # a follower starting over
    unbased = tmp_path / "spool" / "wl-crash" / "1.unbased.jsonl"
    kept = tmp_path / "kept.jsonl"
    shutil.copy(unbased, kept)

    backend.online = True
    if crash == "before the rename":  # a half-written re-base next to the unbased spool
        (unbased.parent / "1.jsonl.rebase").write_bytes(b'{"s":"runner","t":1,"l":20,"m":"x')
    else:
        if crash == "after the rename":
            backend.failing = {"put"}  # the re-base happens, no upload does
        else:
            backend.puts_left = 3  # some uploads happen
        assert not await restarted.upload_spool()
        if crash == "after the rename":  # died before deleting the unbased spool
            shutil.copy(kept, unbased)
        backend.failing, backend.puts_left = set(), None
    # The daemon died there (the store object is abandoned); a new one starts.
    third = make(backend, tmp_path)
    assert await third.upload_spool()
    assert await read_back(backend, tmp_path, "wl-crash") == [text for _, text in container]
    assert not spool_files(tmp_path)
    stored = await make(backend, tmp_path / "again").checkpoint(key)
    assert stored is not None
    assert stored.records == 400
