"""zwmd-gcp against gcp-storage-emulator on 127.0.0.1: GCS logs (read back, follow, a 30 s
outage), and registry tokens refreshed before expiry from an injected token source.

The emulator keeps its objects on disk (in its working directory), so killing it and
starting it again on the same port is an outage after which the bucket is still there.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from zwmd_gcp import registry

from tests.daemon_process import free_port
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.plugins import plugin_manager, resolve
from zwmd.settings import Settings, load_settings
from zwmd.testing.logstore_checks import (
    check_a_follower_gets_new_lines_until_the_run_is_complete,
    check_an_outage_loses_nothing,
    check_logs_land_and_read_back_identical,
)
from zwmd.tokens import Fetched

pytestmark = pytest.mark.anyio

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
BUCKET = "zwmd-logs"
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

    async def object_names(self, prefix: str) -> list[str]:
        """The bucket's objects under ``prefix``, as the emulator lists them."""
        async with httpx.AsyncClient() as http:
            listing = await http.get(
                f"{self.url}/storage/v1/b/{BUCKET}/o", params={"prefix": prefix}
            )
        return [item["name"] for item in listing.json()["items"]]

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """GCS is away inside, back on the same port with the same objects after."""
        self.stop()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.start)


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


def store_factory(tmp_path: Path) -> Callable[[str], Awaitable[ObjectLogStore]]:
    """One store per name, each with its own home and state (another process each)."""

    async def make_store(name: str) -> ObjectLogStore:
        settings = gcp_settings(tmp_path / name)
        assert settings.log_store == "gcs"
        return await gcs_store(settings)

    return make_store


async def test_logs_land_in_the_bucket_and_read_back_identical(
    emulator: Emulator, tmp_path: Path
) -> None:
    await check_logs_land_and_read_back_identical(store_factory(tmp_path), emulator.object_names)


async def test_a_follower_gets_new_lines_and_ends_when_the_run_is_complete(
    emulator: Emulator, tmp_path: Path
) -> None:
    await check_a_follower_gets_new_lines_until_the_run_is_complete(store_factory(tmp_path))


async def test_a_30_second_outage_in_the_middle_of_a_run_loses_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    await check_an_outage_loses_nothing(
        store_factory(tmp_path),
        emulator.outage,
        spool_dir=tmp_path / "writer" / "state" / "spool" / "gcs",
    )


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
    assert "pip install ./plugins/zwmd-gcp" in done.stderr
