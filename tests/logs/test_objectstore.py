"""The object-store log machinery: chunks, follow, outages spooled and uploaded, crashes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from zwmd.logs.objectstore import ObjectLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey, LogStore
from zwmd.testing.memorybackend import MemoryBackend

pytestmark = pytest.mark.anyio

BASE = 1_795_000_000_000_000_000
SEC = 1_000_000_000


def runner(i: int, attempt: int = 1) -> LogRecord:
    return LogRecord(BASE + i * 1000, "runner", 20, f"line {i} " + "x" * (i % 50), attempt)


def make(backend: MemoryBackend, tmp_path: Path, *, chunk_bytes: int = 64 * 1024) -> ObjectLogStore:
    return ObjectLogStore(
        backend,
        name="mem",
        prefix="runner-logs",
        spool_dir=tmp_path / "spool",
        fsync=False,
        chunk_bytes=chunk_bytes,
        poll_seconds=0.05,
        retry_seconds=0.05,
    )


async def collect(it: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [r async for r in it]


def test_object_store_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(make(MemoryBackend(), tmp_path), LogStore)


async def test_lines_land_in_few_chunks_and_read_back_identical(tmp_path: Path) -> None:
    backend = MemoryBackend()
    store = make(backend, tmp_path)
    key = LogKey("wl/1 ü", 1)
    sent = [runner(i) for i in range(20_000)]
    with anyio.fail_after(30):
        for start in range(0, len(sent), 100):
            await store.append(key, sent[start : start + 100])
        got = await collect(store.read("wl/1 ü"))
    assert got == sent
    names = sorted(backend.objects)
    assert all(n.startswith("runner-logs/wl%2F1%20%C3%BC/1/") for n in names)
    assert len(names) < 200 / 4  # 200 appends, far fewer objects
    assert all(len(backend.objects[n]) <= 64 * 1024 for n in names)
    # A restarted daemon (a fresh store) continues the same chunks and checkpoint.
    again = make(backend, tmp_path)
    assert await again.checkpoint(key) == await store.checkpoint(key)
    more = [runner(i) for i in range(20_000, 20_010)]
    await again.append(key, more)
    assert await collect(make(backend, tmp_path).read("wl/1 ü", attempt=1)) == sent + more


async def test_sources_are_merged_by_time_and_attempts_kept_apart(tmp_path: Path) -> None:
    store = make(MemoryBackend(), tmp_path)
    key1, key2 = LogKey("wl", 1), LogKey("wl", 2)
    run = [LogRecord(BASE + i * SEC, "runner", 20, f"r{i}", 1) for i in range(5)]
    msgs = [LogRecord(BASE + i * SEC + 1, "zwmd", 30, f"m{i}", 1) for i in range(5)]
    await store.append(key1, run)
    await store.append(key1, msgs)
    await store.append(key2, [LogRecord(BASE, "runner", 20, "second run", 2)])
    assert await store.attempts("wl") == [1, 2]
    got = [r.message for r in await collect(store.read("wl"))]
    assert got == ["r0", "m0", "r1", "m1", "r2", "m2", "r3", "m3", "r4", "m4", "second run"]
    checkpoint = await store.checkpoint(key1)
    assert checkpoint is not None
    assert checkpoint.records == 10
    assert {m.source for m in checkpoint.marks} == {"runner", "zwmd"}
    assert await store.checkpoint(LogKey("other", 1)) is None


async def test_follow_gets_new_lines_across_chunks_and_ends_on_close(tmp_path: Path) -> None:
    backend = MemoryBackend()
    writer = make(backend, tmp_path, chunk_bytes=2048)
    key = LogKey("wl-follow", 1)
    first = [runner(i) for i in range(10)]
    await writer.append(key, first)
    later = [runner(i) for i in range(10, 400)]
    # One follower in the writer's process, one in another (a second store on the bucket).
    reader = make(backend, tmp_path / "other")
    got: dict[str, list[LogRecord]] = {}

    async def follow(name: str, store: ObjectLogStore) -> None:
        got[name] = await collect(store.follow("wl-follow"))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow, "same", writer)
            tg.start_soon(follow, "other", reader)
            for start in range(0, len(later), 13):
                await writer.append(key, later[start : start + 13])
                await anyio.sleep(0.001)
            await writer.close(key)
    assert got["same"] == first + later
    assert got["other"] == first + later
    assert len(backend.objects) > 10  # the follower crossed chunk boundaries


async def test_an_outage_spools_to_disk_and_uploads_everything_when_back(tmp_path: Path) -> None:
    backend = MemoryBackend()
    store = make(backend, tmp_path)
    key = LogKey("wl-outage", 1)
    sent = [runner(i) for i in range(3000)]
    spooled: list[int] = []
    drained = anyio.Event()
    reported = anyio.Event()

    def report(nbytes: int) -> None:
        spooled.append(nbytes)
        if nbytes > 0:
            reported.set()
        if backend.online and nbytes == 0 and len(spooled) > 1:
            drained.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: store.maintain(spooled=report))
            await store.append(key, sent[:1000])
            backend.online = False
            for start in range(1000, 2000, 100):  # appends return while the store is down
                checkpoint = await store.append(key, sent[start : start + 100])
            assert checkpoint.records == 2000
            assert store.spooled_bytes() > 0
            assert list((tmp_path / "spool").rglob("*.jsonl"))
            await reported.wait()  # the maintenance loop reports the spool it holds
            backend.online = True
            for start in range(2000, 3000, 100):
                await store.append(key, sent[start : start + 100])
            await store.close(key)
            await drained.wait()  # maintain() reports an empty spool
            tg.cancel_scope.cancel()
    assert await collect(make(backend, tmp_path / "fresh").read("wl-outage")) == sent
    assert not list((tmp_path / "spool").rglob("*.jsonl"))
    assert max(spooled) > 0


async def test_a_spool_left_by_a_crash_is_uploaded_once(tmp_path: Path) -> None:
    backend = MemoryBackend()
    store = make(backend, tmp_path)
    key = LogKey("wl-crash", 1)
    sent = [runner(i) for i in range(500)]
    await store.append(key, sent[:100])
    backend.online = False
    await store.append(key, sent[100:300])
    spool = next((tmp_path / "spool").rglob("*.jsonl"))
    kept = tmp_path / "kept.jsonl"
    shutil.copy(spool, kept)
    # The daemon dies here. A new one finds the spool and uploads it when S3 is back.
    backend.online = True
    restarted = make(backend, tmp_path)
    checkpoint = await restarted.checkpoint(key)
    assert checkpoint is not None
    assert checkpoint.records == 300
    assert await restarted.upload_spool()
    await restarted.append(key, sent[300:])
    assert await collect(restarted.read("wl-crash")) == sent
    # Died after uploading but before deleting the spool: nothing is stored twice.
    spool.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(kept, spool)
    third = make(backend, tmp_path)
    assert await third.upload_spool()
    assert await collect(third.read("wl-crash")) == sent
    assert not spool.exists()


async def test_bad_workload_ids_are_refused_with_the_field_named(tmp_path: Path) -> None:
    store = make(MemoryBackend(), tmp_path)
    with pytest.raises(ValueError, match="workload_id"):
        await store.append(LogKey("", 1), [runner(0)])
    with pytest.raises(ValueError, match="attempt"):
        await store.append(LogKey("wl", -1), [runner(0)])


async def test_the_daemon_reports_spooled_bytes_and_failed_uploads_in_its_metrics(
    tmp_path: Path,
) -> None:
    from zwmd.daemon.starting import maintain_log_store
    from zwmd.metrics import Metrics

    reported = anyio.Event()

    class Watched(Metrics):
        def set_spooled_bytes(self, store: str, nbytes: int) -> None:
            super().set_spooled_bytes(store, nbytes)
            if nbytes > 0:
                reported.set()

    metrics = Watched()
    backend = MemoryBackend()
    store = make(backend, tmp_path)
    key = LogKey("wl-metrics", 1)
    await store.append(key, [runner(0)])
    backend.online = False
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(maintain_log_store, store, metrics)
            await anyio.sleep(0.1)  # let maintain() start
            await store.append(key, [runner(1)])
            await reported.wait()
            tg.cancel_scope.cancel()
    text = metrics.exposition()[0].decode()
    errors = [line for line in text.splitlines() if line.startswith("zwmd_log_store_errors_total{")]
    assert any('store="mem"' in e and 'operation="append"' in e for e in errors)
    assert float(errors[0].split()[-1]) >= 1
    spooled = [line for line in text.splitlines() if line.startswith("zwmd_log_spooled_bytes{")]
    assert float(spooled[0].split()[-1]) > 0
