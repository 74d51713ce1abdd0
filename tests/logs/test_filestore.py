"""The file log store: durable, ordered, crash-safe, followable, bounded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from zwmd.logs.filestore import FileLogStore
from zwmd.logs.merging import message_records
from zwmd.logs.records import LogRecord, split_lines
from zwmd.logs.store import Checkpoint, LogKey, LogStore

pytestmark = pytest.mark.anyio

BASE = 1_795_000_000_000_000_000  # 2026-11-18, in ns
SEC = 1_000_000_000


def runner(i: int, attempt: int = 1, *, ts: int | None = None) -> LogRecord:
    return LogRecord(BASE + i * 1000 if ts is None else ts, "runner", 20, f"line {i}", attempt)


def tear(path: Path, data: bytes) -> None:
    """Append bytes the way a write cut short by a crash leaves them."""
    with open(path, "ab") as f:
        f.write(data)


async def collect(it: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [r async for r in it]


@asynccontextmanager
async def followed(store: FileLogStore, workload_id: str) -> AsyncIterator[list[LogRecord]]:
    """The records a follower of ``workload_id`` gets while the body runs, and until it
    ends by itself (within 5 s in all)."""
    got: list[LogRecord] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def follower() -> None:
                got.extend(await collect(store.follow(workload_id)))

            tg.start_soon(follower)
            yield got


def test_file_store_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FileLogStore(tmp_path), LogStore)
    assert FileLogStore(tmp_path).name == "file"


async def test_100k_lines_in_batches_read_back_identical_and_in_order(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-100k", 1)
    sent = [runner(i) for i in range(100_000)]
    with anyio.fail_after(10):
        for start in range(0, len(sent), 500):
            await store.append(key, sent[start : start + 500])
        got = await collect(store.read("wl-100k"))
    assert got == sent
    checkpoint = await store.checkpoint(key)
    assert checkpoint is not None
    assert checkpoint.records == 100_000
    # A fresh store (a restarted daemon) sees the same data and checkpoint.
    reopened = FileLogStore(tmp_path)
    assert await reopened.checkpoint(key) == checkpoint
    assert await collect(reopened.read("wl-100k", attempt=1)) == sent


async def test_torn_record_is_dropped_and_later_appends_are_fine(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-crash", 1)
    await store.append(key, [runner(0), runner(1)])
    path = store.path(key)
    good_size = path.stat().st_size
    # A crash mid-write: one complete record line of an uncommitted batch, then half a line,
    # then the zeros a filesystem can leave behind.
    tear(
        path,
        b'{"s":"runner","t":1795000000000002000,"l":20,"m":"line 2"}\n'
        b'{"s":"runner","t":17950000000000030' + b"\0" * 100,
    )
    # Another process reading meanwhile sees only the committed records.
    assert [r.message for r in await collect(FileLogStore(tmp_path).read("wl-crash"))] == [
        "line 0",
        "line 1",
    ]
    restarted = FileLogStore(tmp_path)
    checkpoint = await restarted.checkpoint(key)
    assert checkpoint is not None
    assert checkpoint.records == 2
    assert path.stat().st_size == good_size  # the torn tail is truncated
    await restarted.append(key, [runner(2), runner(3)])
    got = await collect(FileLogStore(tmp_path).read("wl-crash"))
    assert [r.message for r in got] == ["line 0", "line 1", "line 2", "line 3"]


async def test_torn_first_batch_leaves_an_empty_log(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-torn-first", 1)
    path = store.path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"s":"runner","t":1,"l":20,"m":"x"}\n{"c":{"n":1,')
    assert await store.checkpoint(key) is None
    assert path.stat().st_size == 0
    await store.append(key, [runner(7)])
    assert [r.message for r in await collect(store.read("wl-torn-first"))] == ["line 7"]


async def test_invalid_utf8_and_a_5mib_line_are_stored_in_pieces(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-bytes", 1)
    big = os.urandom(5 * 1024 * 1024)  # random bytes: invalid UTF-8, newlines, NULs, ...
    huge_line = b"A" * (5 * 1024 * 1024)
    data = b"before \xff\n" + huge_line + b"\n" + big + b"\nafter"
    texts = split_lines(data)
    await store.append(key, [LogRecord(BASE, "runner", 20, t, 1) for t in texts])
    got = [r.message for r in await collect(store.read("wl-bytes"))]
    assert got == texts
    assert got[0] == "before \ufffd"
    assert got[-1] == "after"
    assert "".join(got[1 : 1 + len(huge_line) // (64 * 1024)]) == "A" * len(huge_line)
    assert len(got) > 80  # 5 MiB lines became many records instead of being dropped


async def test_follow_gets_new_records_within_a_second_and_ends_on_close(
    tmp_path: Path,
) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-follow", 1)
    await store.append(key, [runner(0)])
    send, receive = anyio.create_memory_object_stream[LogRecord | None](100)

    async def follower() -> None:
        async with send:
            async for record in store.follow("wl-follow"):
                await send.send(record)
            await send.send(None)  # the follow ended by itself

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(follower)
        with anyio.fail_after(1):
            first = await receive.receive()
        assert first is not None
        assert first.message == "line 0"
        for i in range(1, 4):
            await store.append(key, [runner(i)])
            with anyio.fail_after(1):  # within a second of the append
                record = await receive.receive()
            assert record is not None
            assert record.message == f"line {i}"
        await store.close(key)
        with anyio.fail_after(1):
            assert await receive.receive() is None


async def test_follow_from_another_process_polls_the_file(tmp_path: Path) -> None:
    writer, reader = FileLogStore(tmp_path), FileLogStore(tmp_path)
    key = LogKey("wl-xproc", 2)
    await writer.append(key, [runner(0, 2)])
    async with followed(reader, "wl-xproc") as got:
        await anyio.sleep(0.1)
        await writer.append(key, [runner(1, 2)])
        await writer.close(key)
    assert [(r.message, r.attempt) for r in got] == [("line 0", 2), ("line 1", 2)]


async def test_a_follower_skips_a_torn_batch_a_restarted_writer_truncates(
    tmp_path: Path,
) -> None:
    reader = FileLogStore(tmp_path)
    key = LogKey("wl-torn-follow", 1)
    await FileLogStore(tmp_path).append(key, [runner(0)])
    async with followed(reader, "wl-torn-follow") as got:
        await anyio.sleep(0.1)
        # The writer crashes mid-batch; the follower polls the torn tail.
        tear(
            reader.path(key),
            b'{"s":"runner","t":1795000000000001000,"l":20,"m":"torn 1"}\n'
            b'{"s":"runner","t":17950000000000020',
        )
        await anyio.sleep(0.6)
        restarted = FileLogStore(tmp_path)  # truncates the torn batch, writes anew
        await restarted.append(key, [runner(i) for i in range(2, 6)])
        await restarted.close(key)
    assert [r.message for r in got] == ["line 0", "line 2", "line 3", "line 4", "line 5"]


async def test_follow_waits_for_a_workload_with_no_logs_yet(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    async with followed(store, "wl-later") as got:
        await anyio.sleep(0.05)
        key = LogKey("wl-later", 1)
        await store.append(
            key, message_records("Starting pipeline run.", level=20, ts_ns=BASE, attempt=1)
        )
        await store.close(key)
    assert [r.message for r in got] == ["Starting pipeline run."]


async def test_attempts_are_kept_apart_and_read_in_order(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    await store.append(LogKey("wl-resumed", 2), [runner(5, 2, ts=BASE + 10 * SEC)])
    await store.append(LogKey("wl-resumed", 1), [runner(0, 1), runner(1, 1)])
    await store.close(LogKey("wl-resumed", 1))
    assert await store.attempts("wl-resumed") == [1, 2]
    assert await store.attempts("never-seen") == []
    every = await collect(store.read("wl-resumed"))
    assert [(r.attempt, r.message) for r in every] == [(1, "line 0"), (1, "line 1"), (2, "line 5")]
    second = await collect(store.read("wl-resumed", attempt=2))
    assert [r.message for r in second] == ["line 5"]
    # Following all attempts reads the closed first one, then follows the second.
    async with anyio.create_task_group() as tg:
        followed: list[LogRecord] = []

        async def follower() -> None:
            followed.extend(await collect(store.follow("wl-resumed")))

        tg.start_soon(follower)
        await anyio.sleep(0.05)
        await store.close(LogKey("wl-resumed", 2))
    assert followed == every


async def test_messages_and_pod_lines_are_read_in_time_order(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-merge", 1)
    # The API message arrives first; the pod lines around it reach the store later.
    await store.append(
        key, message_records("Starting pipeline run.", level=20, ts_ns=BASE + 2 * SEC, attempt=1)
    )
    await store.append(key, [runner(i, ts=BASE + i * SEC) for i in range(5)])
    await store.append(
        key, message_records("Run failed:\nOOMKilled", level=40, ts_ns=BASE + 9 * SEC, attempt=1)
    )
    got = [(r.source, r.message) for r in await collect(store.read("wl-merge"))]
    assert got == [
        ("runner", "line 0"),
        ("runner", "line 1"),
        ("zwmd", "Starting pipeline run."),  # ties: zwmd before runner
        ("runner", "line 2"),
        ("runner", "line 3"),
        ("runner", "line 4"),
        ("zwmd", "Run failed:"),
        ("zwmd", "OOMKilled"),
    ]


async def test_append_after_close_is_kept(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-after", 1)
    await store.append(key, [runner(0)])
    await store.close(key)
    checkpoint = await store.append(
        key, message_records("Run succeeded.", level=20, ts_ns=BASE + SEC, attempt=1)
    )
    assert checkpoint.closed
    assert checkpoint.records == 2
    with anyio.fail_after(2):
        got = await collect(store.follow("wl-after", attempt=1))
    assert [r.message for r in got] == ["line 0", "Run succeeded."]


async def test_checkpoint_is_none_until_something_is_stored(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("wl-cp", 1)
    assert await store.checkpoint(key) is None
    assert await store.append(key, []) == Checkpoint()
    await store.append(
        key, [runner(0, ts=BASE + 1), runner(1, ts=BASE + SEC + 5), runner(2, ts=BASE + SEC + 5)]
    )
    checkpoint = await store.checkpoint(key)
    assert checkpoint is not None
    mark = checkpoint.mark("runner")
    assert mark is not None
    assert (mark.last_ts_ns, mark.since_ns, mark.count_since, mark.records) == (
        BASE + SEC + 5,
        BASE + SEC,
        2,
        3,
    )


async def test_ids_that_could_escape_the_directory_are_refused_or_encoded(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path)
    with pytest.raises(ValueError, match="workload_id"):
        await store.append(LogKey("..", 1), [runner(0)])
    with pytest.raises(ValueError, match="attempt"):
        await store.append(LogKey("ok", -1), [runner(0)])
    await store.append(LogKey("a/../b", 1), [runner(0)])
    assert store.path(LogKey("a/../b", 1)).parent.parent == tmp_path / "logs"
    assert await store.workloads() == ["a/../b"]
