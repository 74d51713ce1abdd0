"""Throughput of the file log store with many pods logging at once.

Each of ``--writers`` tasks plays one pod log follower: it frames kubelet-style bytes
(``<RFC 3339 time> <text>\\n``) with :class:`~zwmd.logs.records.KubeletLineParser`,
de-duplicates them, turns them into records and appends them to its own workload in
batches of ``--batch`` lines, with an fsync per append as in production. The figures are
lines/s and MB/s (raw pod log bytes) over all writers, the median of ``--runs`` runs,
then the time to read one workload back, and the process's peak RSS.

    python bench/logstore_throughput.py [--writers 20] [--lines 50000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import anyio.lowlevel

from zwmd.logs.filestore import FileLogStore
from zwmd.logs.merging import Deduper, pod_records
from zwmd.logs.records import KubeletLineParser, format_rfc3339
from zwmd.logs.store import LogKey

BASE = 1_795_000_000_000_000_000


def pod_bytes(lines: int, seed: int) -> bytes:
    """A realistic-looking container log: ~100-byte lines, timestamps ~50 us apart."""
    out = []
    for i in range(lines):
        ts = BASE + i * 50_000 + seed
        out.append(
            f"{format_rfc3339(ts)} 2026-11-18 12:00:00,000 INFO step_{seed} "
            f"epoch={i // 1000} batch={i} loss=0.{i % 9973:04d} lr=0.001 ok\n"
        )
    return "".join(out).encode()


async def writer(store: FileLogStore, key: LogKey, data: bytes, batch: int) -> None:
    parser = KubeletLineParser()
    dedupe = Deduper(None)
    pending: list[tuple[int, str]] = []
    chunk = 64 * 1024  # what one read from the log stream might give
    for start in range(0, len(data), chunk):
        pending.extend(dedupe(parser.feed(data[start : start + chunk])))
        while len(pending) >= batch:
            await store.append(key, pod_records(pending[:batch], attempt=key.attempt))
            del pending[:batch]
        await anyio.lowlevel.checkpoint()
    pending.extend(dedupe(parser.flush()))
    if pending:
        await store.append(key, pod_records(pending, attempt=key.attempt))
    await store.close(key)


async def one_run(root: Path, datas: list[bytes], batch: int, fsync: bool) -> tuple[float, float]:
    store = FileLogStore(root, fsync=fsync)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, data in enumerate(datas):
            tg.start_soon(writer, store, LogKey(f"wl-{i}", 1), data, batch)
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    async for _ in FileLogStore(root).read("wl-0"):
        count += 1
    return wrote, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--lines", type=int, default=50_000, help="lines per writer")
    parser.add_argument("--batch", type=int, default=1000, help="lines per append")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()

    datas = [pod_bytes(args.lines, seed) for seed in range(args.writers)]
    total_lines = args.writers * args.lines
    total_mb = sum(len(d) for d in datas) / 1e6
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    writes, reads = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            wrote, read = await one_run(Path(tmp), datas, args.batch, not args.no_fsync)
        writes.append(wrote)
        reads.append(read)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w = statistics.median(writes)
    r = statistics.median(reads)
    print(
        f"{args.writers} writers x {args.lines} lines, batch {args.batch}, "
        f"fsync {'off' if args.no_fsync else 'on'}, median of {args.runs} runs"
    )
    print(
        f"write: {total_lines / w:,.0f} lines/s, {total_mb / w:.1f} MB/s "
        f"({total_lines:,} lines, {total_mb:.1f} MB in {w:.2f} s; runs {min(writes):.2f}-{max(writes):.2f} s)"
    )
    print(f"read back one workload: {args.lines / r:,.0f} lines/s ({r:.3f} s)")
    print(
        f"peak RSS: {rss_peak / 1024:.0f} MiB (of which {rss_before / 1024:.0f} MiB before the runs: "
        f"the generated pod logs held in memory)"
    )


if __name__ == "__main__":
    anyio.run(main)
