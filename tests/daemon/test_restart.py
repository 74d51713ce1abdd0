"""A daemon killed with SIGKILL and started again carries on; SIGTERM stops it cleanly.

Both processes are real: localkube runs in a subprocess (``zwmd localkube``, process
kubelet, so runner pods are host processes that outlive the daemon), and ``zwmd serve``
runs in another, configured by environment variables only, as an operator would run it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import free_port
from tests.inprocess import SERVICE_ACCOUNT, K
from tests.rbac import NAMESPACE_LABELS

PY = sys.executable
NAMESPACE = "zenml-restart"
LONG_POLL = """
import sys, httpx
url, wid, token = sys.argv[1:]
try:
    httpx.get(f"{url}/v1/workloads/{wid}/wait?timeout=100",
              headers={"Authorization": f"Bearer {token}"}, timeout=60)
except httpx.TransportError:
    pass  # the daemon closed the connection as it stopped
"""
WAIT_FOR_FLAG = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)"


@dataclass
class Cluster:
    process: subprocess.Popen[str]
    url: str
    kubeconfig: Path

    def jobs(self) -> list[dict[str, Any]]:
        path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
        items: list[dict[str, Any]] = httpx.get(self.url + path, timeout=10).json()["items"]
        return items

    def pods(self) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        items: list[dict[str, Any]] = httpx.get(self.url + path, timeout=10).json()["items"]
        return items


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kubeconfig = tmp_path_factory.mktemp("cluster") / "kubeconfig"
    process = subprocess.Popen(
        [PY, "-m", "zwmd", "localkube", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    url = lines[0].rsplit(" ", 1)[1].strip()
    for path, body in [
        ("/api/v1/namespaces", {"metadata": {"name": NAMESPACE, "labels": NAMESPACE_LABELS}}),
        (
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            {"metadata": {"name": SERVICE_ACCOUNT}},
        ),
    ]:
        assert httpx.post(url + path, json=body, timeout=10).status_code == 201
    yield Cluster(process, url, kubeconfig)
    process.send_signal(signal.SIGTERM)
    process.wait(15)


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    http: httpx.Client
    log: Path

    def workload(self, wid: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/workloads/{wid}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def until(self, wid: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout  # a hang guard
        while True:
            workload = self.workload(wid)
            if workload["state"] in states:
                return workload
            assert time.monotonic() < deadline, (workload, self.log.read_text())
            time.sleep(0.05)


def start(cluster: Cluster, workdir: Path, port: int, token: str) -> DaemonProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env.update(
        {
            f"{K}NAMESPACE": NAMESPACE,
            f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "KUBECONFIG": str(cluster.kubeconfig),
            "ZWMD_API_PORT": str(port),
            "ZWMD_API_TOKEN": token,
            "ZWMD_STATE_DIR": str(workdir / "state"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = workdir / f"zwmd-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PY, "-m", "zwmd", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if http.get("/readyz").status_code == 200:
                return DaemonProcess(process, http, log)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_sigkill_and_restart_loses_nothing_and_duplicates_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    port, token = free_port(), secrets.token_hex(16)
    daemon = start(cluster, tmp_path, port, token)

    def submit(command: list[str], *arguments: str) -> str:
        wid = str(uuid.uuid4())
        body = {"image": "runner:1", "command": command, "arguments": list(arguments)}
        response = daemon.http.post(f"/v1/workloads/{wid}/run", json=body)
        assert response.status_code == 202, response.text
        return wid

    succeeded = submit([PY, "-c", "print('ok')"])
    failed = submit([PY, "-c", "raise SystemExit(3)"])
    daemon.until(succeeded, "succeeded")
    daemon.until(failed, "failed")
    flags = [tmp_path / "release-1", tmp_path / "release-2"]
    running = [submit([PY, "-c", WAIT_FOR_FLAG], str(flag)) for flag in flags]
    for wid in running:
        daemon.until(wid, "running")
    # each queued run also waits for its own flag: a slot frees only when the test says
    holds = [tmp_path / f"hold-{i}" for i in range(3)]
    queued = [
        submit([PY, "-c", WAIT_FOR_FLAG], str(h), "--run_id", str(uuid.uuid4())) for h in holds
    ]
    before = {wid: daemon.workload(wid) for wid in [succeeded, failed, *running, *queued]}
    assert [before[w]["state"] for w in queued] == ["queued"] * 3

    daemon.process.kill()
    assert daemon.process.wait(10) == -signal.SIGKILL
    daemon = start(cluster, tmp_path, port, token)

    after = {wid: daemon.workload(wid) for wid in before}
    for wid, workload in before.items():
        for key in ("state", "reason", "exit_code", "job_name", "created_at", "aliases"):
            assert after[wid][key] == workload[key], (wid, key)
        if workload["state"] == "succeeded":
            assert after[wid]["finished_at"] == workload["finished_at"]
    listed = daemon.http.get("/v1/workloads").json()["items"]
    assert sorted(w["id"] for w in listed) == sorted(before)
    alias = before[queued[0]]["aliases"][0]
    assert daemon.workload(alias)["id"] == queued[0]

    # one slot frees at a time: the queue moves strictly in submission order
    flags[0].write_text("go")
    daemon.until(running[0], "succeeded")
    daemon.until(queued[0], "starting", "running")
    assert [daemon.workload(w)["state"] for w in queued[1:]] == ["queued", "queued"]
    holds[0].write_text("go")
    daemon.until(queued[0], "succeeded")
    daemon.until(queued[1], "starting", "running")
    assert daemon.workload(queued[2])["state"] == "queued"
    for flag in [holds[1], flags[1], holds[2]]:
        flag.write_text("go")
    for wid in [queued[1], running[1], queued[2]]:
        daemon.until(wid, "succeeded")

    jobs = cluster.jobs()
    assert len(jobs) == len(before), "one Job per workload: no duplicate"
    owners = [p["metadata"]["labels"]["job-name"] for p in cluster.pods()]
    assert sorted(owners) == sorted(w["job_name"] for w in before.values()), "one pod each"

    # SIGTERM while a client long-polls a running workload: exit 0 within 10 s
    pending = submit([PY, "-c", WAIT_FOR_FLAG], str(tmp_path / "never"))
    daemon.until(pending, "running")
    waiter = subprocess.Popen([PY, "-c", LONG_POLL, f"{daemon.http.base_url}", pending, token])
    time.sleep(0.5)  # let the request arrive (if it has not, the test is only weaker)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(10) == 0, daemon.log.read_text()
    assert waiter.wait(10) == 0
    daemon.http.close()
