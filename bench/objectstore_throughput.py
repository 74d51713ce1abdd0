"""S3 (moto) and GCS (gcp-storage-emulator) log throughput while 20 workloads log at once.

Usage: python bench/objectstore_throughput.py [--workloads 20] [--lines 20000] [--batch 200]

Starts both emulators on 127.0.0.1, appends ``lines`` runner lines (~100 bytes) per
workload in batches of ``batch`` through the plugins' stores (``s3``, ``gcs``), all
workloads concurrently, then reads everything back and checks it. Prints lines/s, MB/s,
requests, and the peak Python heap (tracemalloc) during the writes. The emulators run
in their own threads/processes, so their memory is not counted; moto's threads share
this process's CPU and heap (so the S3 heap figure includes moto's copies of the objects;
the GCS figure is the store's own).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import anyio

from zwmd.logs.objectstore import ObjectLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey

BASE = 1_795_000_000_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gcs_emulator(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
            *("--port", str(port), "--in-memory", "--default-bucket", "zwmd-bench", "--quiet"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(store: ObjectLogStore, workloads: int, lines: int, batch: int) -> None:
    async def one(w: int) -> None:
        key = LogKey(f"bench-{w}", 1)
        for start in range(0, lines, batch):
            records = [
                LogRecord(BASE + i * 1000, "runner", 20, f"workload {w} step {i} " + "x" * 60, 1)
                for i in range(start, min(start + batch, lines))
            ]
            await store.append(key, records)
        await store.close(key)

    tracemalloc.start()
    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for w in range(workloads):
            tg.start_soon(one, w)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    total = workloads * lines
    nbytes = total * 90
    print(
        f"  {store.name}: {total} lines in {elapsed:.1f}s = {total / elapsed:,.0f} lines/s, "
        f"{nbytes / elapsed / 1e6:.1f} MB/s of text; peak Python heap {peak / 1e6:.1f} MB"
    )
    t0 = time.perf_counter()
    got = 0
    for w in range(workloads):
        async for _ in store.read(f"bench-{w}"):
            got += 1
    elapsed = time.perf_counter() - t0
    assert got == total, (got, total)
    print(f"  {store.name}: read back {got} lines in {elapsed:.1f}s = {got / elapsed:,.0f} lines/s")


async def main(args: argparse.Namespace) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    work = Path(tempfile.mkdtemp(prefix="zwmd-bench-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto.get_host_and_port()[1]}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    port = free_port()
    gcs = start_gcs_emulator(port)
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        import aioboto3
        from zwmd_aws.s3 import S3Backend
        from zwmd_gcp.gcs import GcsBackend

        async with aioboto3.Session().client("s3", region_name="us-east-1") as s3:
            await s3.create_bucket(Bucket="zwmd-bench")
        await anyio.sleep(2)  # the emulator starts
        print(
            f"{args.workloads} workloads x {args.lines} lines, {args.batch} lines per append "
            f"(one PUT each), chunks of at most 1 MiB"
        )
        backends = [
            ("s3", S3Backend("zwmd-bench", region="us-east-1")),
            ("gcs", GcsBackend("zwmd-bench")),
        ]
        for name, backend in backends:
            store = ObjectLogStore(backend, name=name, prefix="bench", spool_dir=work / name)
            await run(store, args.workloads, args.lines, args.batch)
            await store.aclose()
    finally:
        moto.stop()
        gcs.terminate()
        gcs.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=20)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=200)
    anyio.run(main, parser.parse_args())
