"""A real ``zwmd serve --local`` process, as Prometheus, promtool and systemd see it.

- Prometheus (Debian's ``prometheus``) on 127.0.0.1 scrapes the daemon's metrics
  listener; a PromQL query through its HTTP API returns how many workloads finished.
- ``promtool check metrics`` has nothing to say about the live exposition.
- The daemon's ``sd_notify`` datagrams on ``$NOTIFY_SOCKET``: ``READY=1`` once ready,
  ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC``, ``STOPPING=1`` on SIGTERM.
- On SIGTERM a call in flight gets ``ZWMD_SHUTDOWN_GRACE_SECONDS`` to finish, no more.

Without the binaries these tests are skipped with the reason, unless ``CI`` is set:
then they fail.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import DaemonProcess, free_port, start_daemon
from tests.prometheus import require, running_prometheus, wait_for


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, str]]:
    """A daemon with its metrics listener on 127.0.0.1; yields it and that listener's URL."""
    port = free_port()
    env = {"ZWMD_METRICS_PORT": str(port), "ZWMD_METRICS_HOST": "127.0.0.1"}
    process = start_daemon(tmp_path / "zwmd", env=env)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def run(daemon: DaemonProcess, command: str) -> dict[str, Any]:
    """Run ``sh -c command`` through the API and return the finished workload."""
    headers = {"Authorization": f"Bearer {daemon.token}"}
    workload_id = str(uuid.uuid4())
    with httpx.Client(base_url=daemon.url, headers=headers, timeout=90) as api:
        body = {"image": "runner:1", "command": ["sh", "-c", command]}
        assert api.post(f"/v1/workloads/{workload_id}/run", json=body).status_code == 202
        response = api.get(f"/v1/workloads/{workload_id}/wait", params={"timeout": 60})
        workload: dict[str, Any] = response.json()
        assert workload["state"] in ("succeeded", "failed"), workload
        return workload


def test_prometheus_scrapes_the_number_of_finished_workloads(
    daemon: tuple[DaemonProcess, str], tmp_path: Path
) -> None:
    process, metrics_url = daemon
    outcomes = [run(process, command)["state"] for command in ("exit 0", "exit 0", "exit 7")]
    assert outcomes == ["succeeded", "succeeded", "failed"]
    finished_at = time.time()

    target = metrics_url.removeprefix("http://")
    with running_prometheus(tmp_path / "prometheus", [target]) as prometheus:
        wait_for(lambda: prometheus.scraped_after(finished_at), what="a scrape after the runs")
        (finished,) = prometheus.query("sum(zwmd_workloads_finished_total)")
        assert float(finished["value"][1]) == 3
        by_outcome = {
            r["metric"]["outcome"]: float(r["value"][1])
            for r in prometheus.query("sum by (outcome) (zwmd_workloads_finished_total)")
        }
        assert by_outcome == {"succeeded": 2, "failed": 1, "cancelled": 0}
        (up,) = prometheus.query('up{job="zwmd"}')
        assert up["value"][1] == "1"


def test_promtool_has_nothing_to_say_about_the_exposition(
    daemon: tuple[DaemonProcess, str],
) -> None:
    promtool = require("promtool")
    process, metrics_url = daemon
    run(process, "exit 0")  # every kind of series has values now
    exposition = httpx.get(f"{metrics_url}/metrics").content
    assert b"zwmd_workloads_finished_total" in exposition
    check = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, b"")


def test_the_daemon_speaks_sd_notify(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(60)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    process = start_daemon(tmp_path / "zwmd", env=env)
    messages: list[str] = []

    def receive_until(assignment: str) -> None:
        while assignment not in messages:
            messages.extend(receiver.recv(4096).decode().splitlines())

    try:
        receive_until("READY=1")
        assert httpx.get(f"{process.url}/readyz").status_code == 200
        receive_until("WATCHDOG=1")
        process.process.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert process.process.wait(30) == 0
    finally:
        process.stop()
        receiver.close()
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert any(m.startswith("STATUS=") for m in messages)


def _wait_in_background(daemon: DaemonProcess, command: str) -> tuple[threading.Thread, list[Any]]:
    """Start ``sh -c command`` and a ``/wait`` call for it in a thread; its outcome lands
    in the returned list (the finished workload's state, another status code, or the
    exception)."""
    headers = {"Authorization": f"Bearer {daemon.token}"}
    workload_id = str(uuid.uuid4())
    api = httpx.Client(base_url=daemon.url, headers=headers, timeout=90)
    body = {"image": "runner:1", "command": ["sh", "-c", command]}
    assert api.post(f"/v1/workloads/{workload_id}/run", json=body).status_code == 202
    wait_for(
        lambda: api.get(f"/v1/workloads/{workload_id}").json()["state"] == "running",
        what="the workload to run",
    )
    outcome: list[Any] = []

    def call() -> None:
        try:
            response = api.get(f"/v1/workloads/{workload_id}/wait", params={"timeout": 60})
            ok = response.status_code == 200
            outcome.append(response.json()["state"] if ok else response.status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)
        finally:
            api.close()

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)  # the call is in flight
    return thread, outcome


def test_sigterm_lets_a_call_in_flight_finish(tmp_path: Path) -> None:
    process = start_daemon(tmp_path / "zwmd", env={"ZWMD_SHUTDOWN_GRACE_SECONDS": "30"})
    try:
        thread, outcome = _wait_in_background(process, "sleep 3")
        process.process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert outcome == ["succeeded"]
        assert process.process.wait(30) == 0
    finally:
        process.stop()


def test_sigterm_waits_no_longer_than_the_grace(tmp_path: Path) -> None:
    process = start_daemon(tmp_path / "zwmd", env={"ZWMD_SHUTDOWN_GRACE_SECONDS": "1"})
    try:
        thread, outcome = _wait_in_background(process, "sleep 120")
        signalled = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(30) == 0
        stopped = time.monotonic() - signalled
        thread.join(60)
        assert 1 <= stopped < 20, stopped
        assert len(outcome) == 1
        assert outcome[0] != "succeeded"
    finally:
        process.stop()
