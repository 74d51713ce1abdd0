"""100,000 lines from one pod reach the store exactly once, in order, through faults.

Processes as in production: ``zwmd localkube`` (its process kubelet runs the pod) and
``zwmd serve`` against it through a kubeconfig. While the pod prints, its log stream
is cut three times (localkube's ``drop-pod-logs`` fault) and the daemon is SIGKILLed
once and started again on the same state directory. The pod prints in five phases of
20,000 lines, each released by the test, so every fault lands while lines flow; the
pod tells where it is through marker files. A user then reads the logs through
``GET /v1/workloads/{id}/logs`` and finds 0..99999, each once, in order.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon_process import free_port

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
NAMESPACE = "zenml-runners"
SERVICE_ACCOUNT = "zenml-runner"
LINES, PHASES = 100_000, 5

POD_SCRIPT = """
import os, sys, time
where = sys.argv[1]
per_phase = {per_phase}
n = 0
for phase in range(1, {phases} + 1):
    while not os.path.exists(os.path.join(where, f"go-{{phase}}")):
        time.sleep(0.005)
    for batch in range(per_phase // 500):
        sys.stdout.write("".join(f"{{n + i}}\\n" for i in range(500)))
        sys.stdout.flush()
        n += 500
        if batch == per_phase // 1000:
            open(os.path.join(where, f"mid-{{phase}}"), "w").close()
        time.sleep(0.002)
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def localkube(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``zwmd localkube`` as a process: its URL and a kubeconfig for it."""
    kubeconfig = tmp_path / "kubeconfig"
    output = tmp_path / "localkube.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zwmd",
                "localkube",
                "--port",
                "0",
                "--kubeconfig",
                str(kubeconfig),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            assert process.poll() is None, output.read_text()
            return kubeconfig.exists() and "localkube listening on" in output.read_text()

        wait_for(listening, "zwmd localkube to listen")
        match = re.search(r"localkube listening on (\S+)", output.read_text())
        assert match is not None
        url = match[1]
        with httpx.Client(base_url=url) as kube:
            kube.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
            kube.post(
                f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                json={"metadata": {"name": SERVICE_ACCOUNT}},
            ).raise_for_status()
        yield url, kubeconfig
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Daemon:
    """``zwmd serve`` (not local) against the localkube, restartable on the same state."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = workdir / "zwmd.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))},
            "KUBECONFIG": str(kubeconfig),
            f"{K}NAMESPACE": NAMESPACE,
            f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            f"{K}JOB_BACKOFF_LIMIT": "0",
            "ZWMD_API_HOST": "127.0.0.1",
            "ZWMD_API_PORT": str(self.port),
            "ZWMD_API_TOKEN": self.token,
            "ZWMD_STATE_DIR": str(workdir / "state"),
            "PYTHONUNBUFFERED": "1",
        }
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "zwmd", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, "the daemon to be ready")

    def ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log_path.read_text()
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.http.close()


def test_100k_lines_survive_three_dropped_streams_and_a_killed_daemon(
    localkube: tuple[str, Path], tmp_path: Path
) -> None:
    url, kubeconfig = localkube
    where = tmp_path / "pod"
    where.mkdir()
    daemon = Daemon(kubeconfig, tmp_path)
    daemon.start()
    try:
        wid = str(uuid.uuid4())
        script = POD_SCRIPT.format(per_phase=LINES // PHASES, phases=PHASES)
        response = daemon.http.post(
            f"/v1/workloads/{wid}/run",
            json={
                "image": "runner:1",
                "command": [sys.executable, "-u", "-c", script],
                "arguments": [str(where)],
            },
        )
        assert response.status_code == 202, response.text
        faults = {1: "drop", 2: "drop", 3: "kill", 4: "drop"}
        drops = 0
        with httpx.Client(base_url=url) as kube:
            for phase in range(1, PHASES + 1):
                (where / f"go-{phase}").touch()
                wait_for((where / f"mid-{phase}").exists, f"phase {phase} to be half printed")
                fault = faults.get(phase)
                if fault == "drop":  # cut the daemon's open stream (it may be between two)
                    wait_for(
                        lambda: kube.post("/localkube/faults/drop-pod-logs").json()["dropped"] > 0,
                        "an open pod log stream to cut",
                    )
                    drops += 1
                elif fault == "kill":
                    daemon.kill()
                    daemon.start()
        finished = daemon.http.get(f"/v1/workloads/{wid}/wait", params={"timeout": 90}).json()
        assert finished["state"] == "succeeded", finished
        lines = daemon.http.get(f"/v1/workloads/{wid}/logs").text.splitlines()
        numbers = [int(line.rpartition(" ")[2]) for line in lines]
        assert len(numbers) == LINES
        assert numbers == list(range(LINES))
        assert drops == 3
    finally:
        daemon.stop()
