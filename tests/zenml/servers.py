"""A real ZenML 0.98.0 server for the adapter tests, run from its own virtualenv.

zenml pins many packages, so it never enters the project's environment: it lives in the
virtualenv named by ``ZWMD_TEST_ZENML_VENV`` (default ``.zenml-venv`` in the repository, made by the
commands in ``tests/zenml/README.md``), with zwmd installed into it too. These helpers
drive that environment from the outside, as an operator would: uvicorn serving
``zenml.zen_server.zen_server_api:app`` on 127.0.0.1 with a SQLite store in a temp dir,
password login of the auto-created ``default`` user, registration through the ZenML
client (``register_stack.py`` run by the venv's python), and the REST API for the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_process import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("ZWMD_TEST_ZENML_VENV", REPOSITORY / ".zenml-venv"))
PYTHON = VENV / "bin" / "python"
HERE = Path(__file__).resolve().parent
ADAPTER_SOURCE = "zwmd.zenml.WorkloadManager"
LOAD_WARNING = "Unable to load workload manager source."
TERMINAL = {"completed", "failed", "cached", "stopped"}


def venv_problem() -> str | None:
    """Why the zenml virtualenv cannot be used, or None when it can."""
    if not PYTHON.exists():
        return f"no zenml virtualenv at {VENV} (see tests/zenml/README.md)"
    probe = subprocess.run(
        [
            str(PYTHON),
            "-c",
            "import zenml.zen_server.zen_server_api, zwmd.zenml, zenml; print(zenml.__version__)",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    if probe.returncode != 0:
        return f"the virtualenv at {VENV} cannot import zenml's server and zwmd:\n{probe.stderr}"
    if probe.stdout.strip() != "0.98.0":
        return f"the virtualenv at {VENV} has zenml {probe.stdout.strip()}, not 0.98.0"
    return None


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}


@dataclass
class ZenMLServer:
    """A running ZenML server: its URL, process and log file."""

    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def login(self) -> str:
        """Password login of the default user (empty password), as the dashboard does."""
        response = httpx.post(
            f"{self.url}/api/v1/login", data={"username": "default", "password": ""}, timeout=30
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.login()}"}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=60)

    def register(self, name: str, orchestrator_image: str) -> dict[str, Any]:
        """A non-local stack, a build with ``is_local=False``, and a snapshot of it."""
        env = _clean_env()
        env.update(
            ZENML_CONFIG_PATH=str(self.workdir / f"client-{name}"),
            ZENML_STORE_URL=self.url,
            ZENML_STORE_API_TOKEN=self.login(),
            ZENML_ANALYTICS_OPT_IN="false",
            ZENML_LOGGING_COLORS_DISABLED="true",
        )
        out = subprocess.run(
            [str(PYTHON), str(HERE / "register_stack.py"), name, orchestrator_image],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.workdir,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"registration failed:\n{out.stdout}\n{out.stderr}")
        ids: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return ids

    def candidate_images(self, *pairs: str) -> dict[str, dict[str, str]]:
        """What the adapter would send as ``reuse_images`` for each ``ID:KIND``, read
        from this server's store by ``candidate_images.py`` in the zenml venv."""
        env = _clean_env()
        env.update(
            ZENML_CONFIG_PATH=str(self.workdir / "reader-config"),
            ZENML_STORE_URL=f"sqlite:///{self.workdir / 'zenml.db'}",
            ZENML_STORE_TYPE="sql",
            ZENML_ANALYTICS_OPT_IN="false",
            ZENML_LOGGING_COLORS_DISABLED="true",
        )
        out = subprocess.run(
            [str(PYTHON), str(HERE / "candidate_images.py"), *pairs],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.workdir,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"reading the store failed:\n{out.stdout}\n{out.stderr}")
        found: dict[str, dict[str, str]] = json.loads(out.stdout.strip().splitlines()[-1])
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_zenml_server(
    workdir: Path,
    *,
    zwmd_env: Mapping[str, str],
    source: str = ADAPTER_SOURCE,
    ready_timeout: float = 120.0,
) -> ZenMLServer:
    """uvicorn + ZenML's app on a free port; ``zwmd_env`` tells the adapter the daemon."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _clean_env()
    env.update(
        ZENML_CONFIG_PATH=str(workdir / "server-config"),
        ZENML_LOCAL_STORES_PATH=str(workdir / "stores"),
        ZENML_STORE_URL=f"sqlite:///{workdir / 'zenml.db'}",
        ZENML_STORE_TYPE="sql",
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_COLORS_DISABLED="true",
        ZENML_SERVER_DEPLOYMENT_TYPE="other",
        ZENML_SERVER_AUTO_ACTIVATE="true",
        ZENML_SERVER_SERVER_URL=url,
        ZENML_SERVER_JWT_SECRET_KEY="zwmd-test-only-secret",
        ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE=source,
        PYTHONUNBUFFERED="1",
    )
    env.update(zwmd_env)
    log_path = workdir / "zenml-server.log"
    argv = [
        str(PYTHON),
        "-m",
        "uvicorn",
        "zenml.zen_server.zen_server_api:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ZenMLServer(process, url, workdir, log_path)
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the ZenML server exited:\n{server.log_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the ZenML server did not start:\n{server.log_text()}")
        time.sleep(0.2)


def trigger_run(api: httpx.Client, snapshot_id: str) -> dict[str, Any]:
    """What the dashboard's "Run" button does."""
    response = api.post(f"/pipeline_snapshots/{snapshot_id}/runs", json={})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_run(api: httpx.Client, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
    """Poll the run until its status is terminal; return it."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api.get(f"/runs/{run_id}").json()
        if run["body"]["status"] in TERMINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def runner_logs(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The dashboard's runner-logs view of a run."""
    response = api.get(f"/runs/{run_id}/logs", params={"source": "runner"})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries
