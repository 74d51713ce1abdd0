"""Exactly-once pod lines across reconnects and restarts, and the merge rules."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from zwmd.logs.filestore import FileLogStore
from zwmd.logs.merging import (
    Deduper,
    dedupe,
    merge_by_time,
    message_records,
    pod_records,
)
from zwmd.logs.records import KubeletLineParser, LogRecord, format_rfc3339
from zwmd.logs.store import Checkpoint, LogKey

from .test_filestore import tear

pytestmark = pytest.mark.anyio

BASE = 1_795_000_000_000_000_000
SEC = 1_000_000_000


class FakeKubelet:
    """A container log served like kubelet: ``timestamps=true``, ``sinceTime`` in seconds."""

    def __init__(self, lines: Sequence[tuple[int, str]]) -> None:
        self.lines = lines

    def fetch(self, since_ns: int | None) -> bytes:
        since = None if since_ns is None else since_ns - since_ns % SEC  # second granularity
        return b"".join(
            f"{format_rfc3339(ts)} {text}\n".encode()
            for ts, text in self.lines
            if since is None or ts >= since
        )


def pod_log(n: int, seed: int) -> list[tuple[int, str]]:
    """``n`` lines, many sharing a timestamp (several per nanosecond and per second)."""
    rng = random.Random(seed)
    ts, lines = BASE, []
    for i in range(n):
        ts += rng.choice([0, 0, 0, 1, 7_000, SEC // 3])
        lines.append((ts, f"line {i} " + "x" * rng.randint(0, 40)))
    return lines


async def follow_with_drops(
    store: FileLogStore,
    key: LogKey,
    kubelet: FakeKubelet,
    drops: Sequence[int],
    *,
    to_the_end: bool = True,
) -> None:
    """Follow the pod, the stream breaking after ``drops[k]`` bytes, resuming each time."""
    for limit in [*drops, None] if to_the_end else drops:
        checkpoint = await store.checkpoint(key)
        mark = None if checkpoint is None else checkpoint.mark("runner")
        data = kubelet.fetch(None if mark is None else mark.since_ns)
        if limit is not None:
            data = data[:limit]  # the connection dies mid-line
        parser = KubeletLineParser(start_ts_ns=0 if mark is None else mark.last_ts_ns)
        deduper = Deduper(mark)
        # The bytes come in odd-sized chunks; a follower appends in batches.
        for start in range(0, len(data), 4096):
            fresh = deduper(parser.feed(data[start : start + 4096]))
            if fresh:
                await store.append(key, pod_records(fresh, attempt=key.attempt))
        if limit is None:  # the container ended: the stream ends cleanly
            rest = deduper(parser.flush())
            if rest:
                await store.append(key, pod_records(rest, attempt=key.attempt))


async def test_reconnects_with_equal_timestamps_store_each_line_once(tmp_path: Path) -> None:
    lines = pod_log(5_000, seed=1)
    kubelet = FakeKubelet(lines)
    store = FileLogStore(tmp_path)
    key = LogKey("wl-drops", 1)
    await follow_with_drops(store, key, kubelet, drops=[100_000, 90_000, 150_000])
    got = [(r.ts_ns, r.message) async for r in store.read("wl-drops")]
    assert got == lines


async def test_a_killed_daemon_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    lines = pod_log(3_000, seed=2)
    kubelet = FakeKubelet(lines)
    key = LogKey("wl-killed", 1)
    first = FileLogStore(tmp_path)
    await follow_with_drops(first, key, kubelet, drops=[60_000, 50_000], to_the_end=False)
    stored = await first.checkpoint(key)
    assert stored is not None
    assert 0 < stored.records < len(lines)
    # SIGKILL mid-append: half a batch reached the file.
    path = FileLogStore(tmp_path).path(key)
    tear(path, b'{"s":"runner","t":1,"l":20,"m":"half a bat')
    restarted = FileLogStore(tmp_path)
    await follow_with_drops(restarted, key, kubelet, drops=[])
    got = [(r.ts_ns, r.message) async for r in restarted.read("wl-killed")]
    assert got == lines


async def test_a_long_line_replayed_after_a_reconnect_is_stored_once(tmp_path: Path) -> None:
    lines = [(BASE, "a"), (BASE, "b" * 200_000), (BASE, "c"), (BASE + SEC, "d")]
    kubelet = FakeKubelet(lines)
    store = FileLogStore(tmp_path)
    key = LogKey("wl-long", 1)
    await follow_with_drops(store, key, kubelet, drops=[150_000])
    got = [r.message async for r in store.read("wl-long")]
    assert got[0] == "a"
    assert "".join(got[1:-2]) == "b" * 200_000
    assert got[-2:] == ["c", "d"]


def test_dedupe_drops_exactly_what_is_stored() -> None:
    stored = [(BASE + SEC + 5, "one"), (BASE + SEC + 5, "two")]
    mark = Checkpoint().advanced(pod_records(stored, attempt=1)).mark("runner")
    replay = [*stored, (BASE + SEC + 5, "three"), (BASE + 2 * SEC, "four")]
    assert dedupe(mark, replay) == replay[2:]
    assert dedupe(None, replay) == replay
    # A replay that does not go back as far (e.g. a rotated log) loses nothing new.
    assert dedupe(mark, replay[3:]) == replay[3:]


async def test_merge_by_time_is_stable() -> None:
    async def stream(records: list[LogRecord]) -> AsyncIterator[LogRecord]:
        for r in records:
            yield r

    zwmd = message_records("m1\nm2", level=20, ts_ns=BASE + 1, attempt=1)
    pod = pod_records([(BASE, "p0"), (BASE + 1, "p1"), (BASE + 2, "p2")], attempt=1)
    got = [r.message async for r in merge_by_time([stream(zwmd), stream(pod)])]
    assert got == ["p0", "m1", "m2", "p1", "p2"]


def test_an_empty_message_is_one_empty_record() -> None:
    records = message_records("", level=20, ts_ns=BASE, attempt=1)
    assert [r.message for r in records] == [""]
