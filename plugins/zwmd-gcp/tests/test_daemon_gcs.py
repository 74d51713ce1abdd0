"""``zwmd serve --local`` with its logs in GCS (gcp-storage-emulator on 127.0.0.1), set up
as an operator would.

The daemon is a subprocess configured only by the seeds' variables: the GCP
implementation source, external logs on, the bucket, and ``STORAGE_EMULATOR_HOST``. A
runner prints numbered lines; what a user sees is checked from every side: the daemon's
log API, the objects in the bucket (listed with the GCS client), a fresh store of the
plugin reading them back, and ``zwmd plugins``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gcloud.aio.storage import Storage
from zwmd_gcp import __version__ as gcp_version
from zwmd_gcp.plugin import gcs_store

from tests.daemon_process import DaemonProcess, free_port, start_daemon
from zwmd.testing.logstore_checks import check_runner_logs_through_the_daemon

BUCKET = "zwmd-daemon-logs"
PREFIX = "runner-logs"
SOURCE = "zenml_cloud_plugins.gcp_kubernetes_workload_manager.GCPKubernetesWorkloadManager"


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
    async def list_objects(prefix: str) -> list[str]:  # with the GCS client
        storage = Storage()
        try:
            listing = await storage.list_objects(BUCKET, params={"prefix": prefix})
        finally:
            await storage.close()
        return [str(item["name"]) for item in listing.get("items", [])]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", gcp_env["STORAGE_EMULATOR_HOST"])
        check_runner_logs_through_the_daemon(
            daemon,
            store="gcs",
            prefix=PREFIX,
            settings_env=_clean_env(gcp_env),
            open_store=gcs_store,
            list_objects=list_objects,
            state_dir=tmp_path,
        )


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
