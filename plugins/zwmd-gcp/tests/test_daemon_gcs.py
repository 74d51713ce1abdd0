"""``zwmd serve --local`` with its logs in GCS (gcp-storage-emulator on 127.0.0.1), set up
as an operator would.

The daemon is a subprocess configured only by the seeds' variables: the GCP
implementation source, external logs on, the bucket, and ``STORAGE_EMULATOR_HOST``. A
runner prints numbered lines; what a user sees is checked from every side: the daemon's
log API, the objects in the bucket (listed with the GCS client), a fresh store of the
plugin reading them back, and ``zwmd plugins``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
import pytest
from gcloud.aio.storage import Storage
from zwmd_gcp import __version__ as gcp_version
from zwmd_gcp.plugin import gcs_store

from tests.daemon_process import DaemonProcess, free_port, start_daemon
from zwmd.client import Client, ClientConfig
from zwmd.logs.store import LogKey
from zwmd.settings import load_settings

BUCKET = "zwmd-daemon-logs"
PREFIX = "runner-logs"
LINES = 40
SOURCE = "zenml_cloud_plugins.gcp_kubernetes_workload_manager.GCPKubernetesWorkloadManager"
PRINT_LINES = f"for i in range({LINES}): print(f'line {{i:03d}} of the runner', flush=True)"


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator in a subprocess, with the bucket."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
            *("--port", str(port), "--default-bucket", BUCKET, "--quiet"),
        ],
        cwd=tmp_path_factory.mktemp("gcs"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/storage/v1/b/{BUCKET}", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def gcp_env(emulator_url: str) -> dict[str, str]:
    """What an operator sets (the seeds' variables), plus the emulator's address."""
    return {
        "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": SOURCE,
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS": "true",
        "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET": f"gs://{BUCKET}/{PREFIX}",
        "STORAGE_EMULATOR_HOST": emulator_url,
    }


@pytest.fixture(scope="module")
def daemon(
    gcp_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    env = {**gcp_env, "HOME": str(tmp_path_factory.mktemp("home"))}
    process = start_daemon(tmp_path_factory.mktemp("zwmd-gcs"), env=env)
    yield process
    assert process.stop() == 0, process.output()  # SIGTERM: a clean stop


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZWMD_", "ZENML_", "STORAGE_EMULATOR_"))
    }
    env.update(extra)
    return env


def test_runner_logs_go_to_the_bucket_and_read_back_through_the_daemon(
    daemon: DaemonProcess, gcp_env: dict[str, str], tmp_path: Path
) -> None:
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
    assert re.search(r'^zwmd_log_spooled_bytes\{store="gcs"\} 0(\.0)?$', metrics, re.M), metrics

    async def from_the_bucket() -> tuple[list[str], list[str], list[int]]:
        storage = Storage()
        try:
            listing = await storage.list_objects(BUCKET, params={"prefix": f"{PREFIX}/{wid}/"})
        finally:
            await storage.close()
        names = [str(item["name"]) for item in listing.get("items", [])]
        # a fresh store, made by the plugin from the same variables, reads the same lines
        settings = load_settings(
            _clean_env({**gcp_env, "ZWMD_STATE_DIR": str(tmp_path)}), local=True
        )
        assert settings.log_store == "gcs"
        store = gcs_store(settings)
        try:
            records = [r async for r in store.read(wid)]
            attempts = await store.attempts(wid)
            assert await store.checkpoint(LogKey(wid, 1)) is not None
        finally:
            await store.aclose()
        return names, [r.message for r in records], attempts

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", gcp_env["STORAGE_EMULATOR_HOST"])
        names, messages_from_bucket, attempts = _in_a_thread_of_its_own(from_the_bucket)

    assert names, daemon.output()
    assert all(name.startswith(f"{PREFIX}/{wid}/1/") for name in names), names
    assert all(name.endswith(".jsonl") for name in names), names
    assert messages_from_bucket == expected
    assert attempts == [1]


def test_zwmd_plugins_lists_the_gcp_plugin_with_its_version_and_hooks(
    gcp_env: dict[str, str],
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zwmd", "plugins"],
        env=_clean_env(gcp_env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ", 1)[0]: line for line in done.stdout.splitlines()}
    assert "gcp" in rows, done.stdout
    _, version, hooks = rows["gcp"].split("  ")
    assert version == f"zwmd-gcp {gcp_version}"
    assert set(hooks.removeprefix("hooks: ").split(", ")) == {
        "zwmd_implementations",
        "zwmd_log_store",
        "zwmd_registry_credentials",
    }


T = TypeVar("T")


def _in_a_thread_of_its_own(fn: Callable[[], Awaitable[T]]) -> T:
    """``anyio.run(fn)`` on a thread of its own: this synchronous test may run while
    anyio's pytest plugin keeps an event loop alive on the main thread for async
    fixtures of other modules, and a thread runs one event loop at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn).result()
