"""zwmd-gcp against gcp-storage-emulator on 127.0.0.1: GCS logs (read back, follow, a 30 s
outage), and registry tokens refreshed before expiry from an injected token source.

The emulator keeps its objects on disk (in its working directory), so killing it and
starting it again on the same port is an outage after which the bucket is still there.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from zwmd_gcp import registry

from tests.daemon_process import free_port
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey
from zwmd.plugins import plugin_manager, resolve
from zwmd.settings import Settings, load_settings
from zwmd.tokens import Fetched

pytestmark = pytest.mark.anyio

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
BUCKET = "zwmd-logs"
BASE = 1_795_000_000_000_000_000
ZWMD = "import sys; from zwmd.cli import main; sys.exit(main(sys.argv[1:]))"  # the `zwmd` script


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


class Emulator:
    """gcp-storage-emulator in a subprocess, restartable on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--default-bucket", BUCKET, "--quiet"),
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/storage/v1/b/{BUCKET}", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("gcp-storage-emulator did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = Emulator(tmp_path_factory.mktemp("gcs"))
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", server.url)
        yield server
    server.stop()


def gcp_settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "HOME": str(tmp_path),
            "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": (
                "zenml_cloud_plugins.gcp_kubernetes_workload_manager.GCPKubernetesWorkloadManager"
            ),
            f"{K}NAMESPACE": "zenml",
            f"{K}SERVICE_ACCOUNT": "zenml-runner",
            f"{K}ENABLE_EXTERNAL_LOGS": "true",
            "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET": f"gs://{BUCKET}/runner-logs",
            "ZWMD_STATE_DIR": str(tmp_path / "state"),
            **extra,
        }
    )


async def gcs_store(settings: Settings) -> ObjectLogStore:
    """The store exactly as the daemon gets it: through the plugin manager's hook."""
    manager = plugin_manager()
    store = await resolve(manager.hook.zwmd_log_store(settings=settings, name=settings.log_store))
    assert isinstance(store, ObjectLogStore)
    store.poll_seconds = store.retry_seconds = 0.2
    return store


def lines(start: int, stop: int, attempt: int = 1) -> list[LogRecord]:
    return [
        LogRecord(BASE + i * 1000, "runner", 20, f"step {i}: ünïcode {'·' * (i % 7)}", attempt)
        for i in range(start, stop)
    ]


async def collect(it: AsyncIterator[LogRecord]) -> list[LogRecord]:
    return [r async for r in it]


async def test_logs_land_in_the_bucket_and_read_back_identical(
    emulator: Emulator, tmp_path: Path
) -> None:
    settings = gcp_settings(tmp_path)
    assert settings.log_store == "gcs"
    store = await gcs_store(settings)
    sent = lines(0, 5000)
    key = LogKey("run-read-back", 1)
    for start in range(0, len(sent), 250):
        await store.append(key, sent[start : start + 250])
    await store.close(key)
    async with httpx.AsyncClient() as http:
        listing = await http.get(
            f"{emulator.url}/storage/v1/b/{BUCKET}/o", params={"prefix": "runner-logs/run-read"}
        )
    names = [item["name"] for item in listing.json()["items"]]
    assert names
    assert all(n.startswith("runner-logs/run-read-back/1/") for n in names)
    fresh = await gcs_store(gcp_settings(tmp_path / "elsewhere"))
    assert await collect(fresh.read("run-read-back")) == sent
    assert await fresh.checkpoint(key) == await store.checkpoint(key)
    await store.aclose()
    await fresh.aclose()


async def test_a_follower_gets_new_lines_and_ends_when_the_run_is_complete(
    emulator: Emulator, tmp_path: Path
) -> None:
    writer = await gcs_store(gcp_settings(tmp_path))
    reader = await gcs_store(gcp_settings(tmp_path / "reader"))
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


async def test_a_30_second_outage_in_the_middle_of_a_run_loses_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    store = await gcs_store(gcp_settings(tmp_path))
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
            emulator.stop()
            try:
                for i in range(60):  # 30 seconds of a run logging while GCS is away
                    await store.append(key, sent[1000 + i * 10 : 1010 + i * 10])
                    await anyio.sleep(0.5)
                assert store.spooled_bytes() > 0
                assert list((tmp_path / "state" / "spool" / "gcs").rglob("*.jsonl"))
            finally:
                await anyio.to_thread.run_sync(emulator.start)
            restarted = True
            for start in range(1600, 3100, 100):
                await store.append(key, sent[start : start + 100])
            await store.close(key)
            await drained.wait()
            tg.cancel_scope.cancel()
    assert max(reports) > 0
    fresh = await gcs_store(gcp_settings(tmp_path / "elsewhere"))
    assert await collect(fresh.read("run-outage")) == sent
    await store.aclose()
    await fresh.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_registry_tokens_are_oauth2accesstoken_auths_refreshed_before_expiry(
    tmp_path: Path,
) -> None:
    clock = Clock()
    issued: list[str] = []

    async def source() -> Fetched[str]:  # stands in for Google's default credentials
        issued.append(f"ya29.token-{len(issued)}")
        return Fetched(issued[-1], clock.now + 3600)

    cache = registry.set_token_source(source, clock=clock)
    try:
        settings = gcp_settings(
            tmp_path, **{f"{K}DOCKER_REGISTRY": "europe-west3-docker.pkg.dev/project/zenml"}
        )
        manager = plugin_manager()

        async def ask(host: str) -> dict[str, Any] | None:
            answer = manager.hook.zwmd_registry_credentials(settings=settings, registry=host)
            result: dict[str, Any] | None = await resolve(answer)
            return result

        auths = await ask("europe-west3-docker.pkg.dev")
        assert auths is not None
        entry = auths["europe-west3-docker.pkg.dev"]
        assert base64.b64decode(entry["auth"]).decode() == "oauth2accesstoken:ya29.token-0"
        assert entry["expires_at"] == clock.now + 3600
        assert await ask("gcr.io") is not None
        assert await ask("eu.gcr.io") is not None
        assert await ask("registry.example") is None
        clock.now += 3600 - 601  # more than 10 minutes left: the same token
        assert (await ask("gcr.io") or {})["gcr.io"]["auth"] == entry["auth"]
        clock.now += 2  # within 10 minutes of expiry: a new one
        renewed = (await ask("gcr.io") or {})["gcr.io"]
        assert base64.b64decode(renewed["auth"]).decode() == "oauth2accesstoken:ya29.token-1"
        assert cache.fetches == 2
    finally:
        registry.set_token_source(registry.google_token)


def test_choosing_gcp_without_the_plugin_stops_zwmd_serve_saying_what_to_install(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": "gcp",
        "ZWMD_STATE_DIR": str(tmp_path / "state"),
        "ZWMD_DISABLE_PLUGINS": "gcp",
    }
    done = subprocess.run(
        [sys.executable, "-c", ZWMD, "serve", "--local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "install zwmd-gcp" in done.stderr
