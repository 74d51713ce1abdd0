"""What a user checks of an object-store log store, for any plugin's emulator.

The checks take the plugin's specifics as arguments and assert the rest:

- ``make_store(name)`` returns a store as the daemon gets it (through the plugin
  manager's ``zwmd_log_store`` hook), configured with its own home/state directory for
  each ``name`` (one process per name, all on the same bucket and prefix);
- ``list_objects(prefix)`` returns the object names under ``prefix`` in the bucket,
  asked of the emulator directly (not through the store);
- ``outage()`` is an async context manager: the object store is unreachable inside it
  and back (same port, same objects) after it.

They run in ``async def`` tests under anyio's pytest plugin::

    async def test_an_outage_loses_nothing(emulator, tmp_path):
        await check_an_outage_loses_nothing(make_store, emulator.outage)

:func:`check_runner_logs_through_the_daemon` is the end-to-end body: a running
``zwmd serve --local`` whose logs go to the plugin's store.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, TypeVar

import anyio
import httpx

from zwmd.apiclient import Client, ClientConfig
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey
from zwmd.settings import Settings, load_settings

__all__ = [
    "BASE",
    "check_a_follower_gets_new_lines_until_the_run_is_complete",
    "check_an_outage_loses_nothing",
    "check_logs_land_and_read_back_identical",
    "check_runner_logs_through_the_daemon",
    "collect",
    "in_a_thread_of_its_own",
    "lines",
]

BASE = 1_795_000_000_000_000_000
"""Timestamp (ns) of the first line :func:`lines` makes."""

StoreFactory = Callable[[str], Awaitable[ObjectLogStore]]
ListObjects = Callable[[str], Awaitable[list[str]]]
Outage = Callable[[], AbstractAsyncContextManager[object]]


def lines(start: int, stop: int, attempt: int = 1) -> list[LogRecord]:
    """Numbered runner lines with non-ASCII text, 1 µs apart."""
    return [
        LogRecord(BASE + i * 1000, "runner", 20, f"step {i}: ünïcode {'·' * (i % 7)}", attempt)
        for i in range(start, stop)
    ]


async def collect(it: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [r async for r in it]


async def check_logs_land_and_read_back_identical(
    make_store: StoreFactory, list_objects: ListObjects
) -> None:
    """5000 lines in batches of 250 land as ``.jsonl`` chunks under
    ``<prefix>/run-read-back/1/`` and another process's store reads them back identical,
    with the same checkpoint."""
    store = await make_store("writer")
    sent = lines(0, 5000)
    key = LogKey("run-read-back", 1)
    for start in range(0, len(sent), 250):
        await store.append(key, sent[start : start + 250])
    await store.close(key)
    root = f"{store.prefix}/" if store.prefix else ""
    names = await list_objects(f"{root}run-read")
    assert names
    assert all(n.startswith(f"{root}run-read-back/1/") for n in names), names
    assert all(n.endswith(".jsonl") for n in names), names
    fresh = await make_store("elsewhere")
    assert await collect(fresh.read("run-read-back")) == sent
    assert await fresh.checkpoint(key) == await store.checkpoint(key)
    await store.aclose()
    await fresh.aclose()


async def check_a_follower_gets_new_lines_until_the_run_is_complete(
    make_store: StoreFactory,
) -> None:
    """A follower in another process gets every line appended while it follows, and its
    iteration ends once the run's key is closed."""
    writer = await make_store("writer")
    reader = await make_store("reader")  # another process, same bucket
    key = LogKey("run-follow", 1)
    sent = lines(0, 600)
    await writer.append(key, sent[:100])
    got: list[LogRecord] = []

    async def follow() -> None:
        got.extend(await collect(reader.follow("run-follow")))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            for start in range(100, 600, 50):
                await writer.append(key, sent[start : start + 50])
                await anyio.sleep(0.05)
            await writer.close(key)
    assert got == sent
    await writer.aclose()
    await reader.aclose()


async def check_an_outage_loses_nothing(
    make_store: StoreFactory, outage: Outage, *, spool_dir: Path | None = None
) -> None:
    """A 30 s outage in the middle of a run: appends go on (spooled to local disk, in
    ``spool_dir`` if given, else the store's), ``maintain`` reports the spooled bytes and
    then 0 once the store answers again, and every line reads back in order."""
    store = await make_store("writer")
    store.put_timeout = 5
    key = LogKey("run-outage", 1)
    sent = lines(0, 3100)
    reports: list[int] = []
    drained = anyio.Event()
    restarted = False

    def spooled(nbytes: int) -> None:
        reports.append(nbytes)
        if restarted and nbytes == 0:
            drained.set()

    with anyio.fail_after(110):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: store.maintain(spooled=spooled))
            await store.append(key, sent[:1000])
            async with outage():
                for i in range(60):  # 30 seconds of a run logging while the store is away
                    await store.append(key, sent[1000 + i * 10 : 1010 + i * 10])
                    await anyio.sleep(0.5)
                assert store.spooled_bytes() > 0
                assert list((spool_dir or store.spool_dir).rglob("*.jsonl"))
            restarted = True
            for start in range(1600, 3100, 100):
                await store.append(key, sent[start : start + 100])
            await store.close(key)
            await drained.wait()
            tg.cancel_scope.cancel()
    assert max(reports) > 0
    fresh = await make_store("elsewhere")
    assert await collect(fresh.read("run-outage")) == sent
    await store.aclose()
    await fresh.aclose()


# -- end to end: zwmd serve --local with its logs in the plugin's store -------------------


class Daemon(Protocol):
    """A running ``zwmd serve --local`` (e.g. ``tests/daemon_process.DaemonProcess``)."""

    @property
    def url(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def state_dir(self) -> Path: ...
    def output(self) -> str: ...


LINES = 40
PRINT_LINES = f"for i in range({LINES}): print(f'line {{i:03d}} of the runner', flush=True)"

T = TypeVar("T")


def in_a_thread_of_its_own(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)`` on a thread of its own: a synchronous test may run while
    anyio's pytest plugin keeps an event loop alive on the main thread for async
    fixtures of other modules, and a thread runs one event loop at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn).result()


def check_runner_logs_through_the_daemon(
    daemon: Daemon,
    *,
    store: str,
    prefix: str,
    settings_env: Mapping[str, str],
    open_store: Callable[[Settings], ObjectLogStore],
    list_objects: ListObjects,
    state_dir: Path,
) -> None:
    """A runner of ``daemon`` prints numbered lines; a user sees them all, from every side.

    - the daemon's log API (``zenml`` entries and ``text``) gives exactly those lines;
    - the daemon's default file store did not keep them;
    - ``zwmd_log_spooled_bytes{store=...}`` is 0 (the store's ``maintain`` runs);
    - ``list_objects`` finds ``.jsonl`` chunks under ``<prefix>/<workload>/1/``;
    - a fresh store, ``open_store(load_settings(settings_env + ZWMD_STATE_DIR=state_dir,
      local=True))`` whose name is ``store``, reads back the same lines, attempt 1.

    Synchronous: the listing and the fresh store run on a thread of their own, in the
    caller's process environment (set the emulator's variables around the call).
    """
    expected = [f"line {i:03d} of the runner" for i in range(LINES)]
    wid = str(uuid.uuid4())
    with Client(ClientConfig(url=daemon.url, token=daemon.token)) as client:
        client.run(wid, image="any", command=[sys.executable, "-c", PRINT_LINES])
        done = client.wait_terminal(wid, timeout=90)
        assert done.state == "succeeded", f"{done.describe()}\n{daemon.output()}"
        entries = client.logs(wid, "zenml")
        text = client.logs(wid, "text")
    metrics = httpx.get(f"{daemon.url}/metrics", timeout=10).text

    messages = [json.loads(line)["message"] for line in entries.splitlines() if line]
    assert messages == expected, daemon.output()
    assert [line.partition(" UTC] ")[2] for line in text.splitlines()] == expected, text

    # the daemon did not keep them in the default file store
    assert not (daemon.state_dir / "logs" / wid).exists()

    # the store's background work (spool upload) runs beside serve and reports
    spooled = rf'^zwmd_log_spooled_bytes\{{store="{re.escape(store)}"\}} 0(\.0)?$'
    assert re.search(spooled, metrics, re.M), metrics

    async def from_the_bucket() -> tuple[list[str], list[str], list[int]]:
        names = await list_objects(f"{prefix}/{wid}/")
        # a fresh store, made by the plugin from the same variables, reads the same lines
        settings = load_settings({**settings_env, "ZWMD_STATE_DIR": str(state_dir)}, local=True)
        assert settings.log_store == store
        fresh = open_store(settings)
        try:
            records = [r async for r in fresh.read(wid)]
            attempts = await fresh.attempts(wid)
            assert await fresh.checkpoint(LogKey(wid, 1)) is not None
        finally:
            await fresh.aclose()
        return names, [r.message for r in records], attempts

    names, messages_from_bucket, attempts = in_a_thread_of_its_own(from_the_bucket)

    # the objects are in the bucket, under the configured prefix
    assert names, daemon.output()
    assert all(name.startswith(f"{prefix}/{wid}/1/") for name in names), names
    assert all(name.endswith(".jsonl") for name in names), names
    assert messages_from_bucket == expected
    assert attempts == [1]
