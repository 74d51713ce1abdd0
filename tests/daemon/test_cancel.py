"""Cancel and timeout with real processes: localkube's process kubelet runs each pod's
command on this host, so "the process is killed" is checked on the process itself."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon.conftest import Daemon
from tests.inprocess import until
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    """This module's pods are host processes."""
    async with LocalKube(kubernetes_version=KUBERNETES_VERSION, kubelet="process") as localkube:
        yield localkube


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def sleeping(daemon: Daemon, tmp_path: Path, **body: Any) -> tuple[dict[str, object], int]:
    """A run whose process sleeps for ten minutes: the workload and its process id."""
    pid_file = tmp_path / f"pid-{os.urandom(4).hex()}"
    workload = await daemon.submit(
        command=[sys.executable, "-c", SLEEPER], arguments=[str(pid_file)], **body
    )
    await daemon.until_state(str(workload["id"]), "running")
    await until(lambda: pid_file.exists() and bool(pid_file.read_text()))
    pid = int(pid_file.read_text())
    assert alive(pid)
    return workload, pid


async def test_cancel_kills_the_process_and_deletes_the_job(daemon: Daemon, tmp_path: Path) -> None:
    workload, pid = await sleeping(daemon, tmp_path)
    response = await daemon.http.delete(f"/v1/workloads/{workload['id']}")
    assert response.status_code == 204
    cancelled = await daemon.get(str(workload["id"]))
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "Cancelled")
    await until(lambda: not alive(pid))
    await until(lambda: daemon.jobs() == [] and daemon.pods() == [])
    # cancelling again, or waiting, says the same
    assert (await daemon.http.delete(f"/v1/workloads/{workload['id']}")).status_code == 204
    assert (await daemon.wait(str(workload["id"])))["state"] == "cancelled"


async def test_cancel_a_queued_run_starts_the_next(daemon: Daemon, tmp_path: Path) -> None:
    _, first_pid = await sleeping(daemon, tmp_path)
    _, second_pid = await sleeping(daemon, tmp_path)
    queued = await daemon.submit(command=[sys.executable, "-c", "print('third')"])
    last = await daemon.submit(command=[sys.executable, "-c", "print('fourth')"])
    assert (await daemon.get(queued["id"]))["state"] == "queued"
    assert (await daemon.http.delete(f"/v1/workloads/{queued['id']}")).status_code == 204
    assert (await daemon.get(queued["id"]))["state"] == "cancelled"
    assert (await daemon.get(last["id"]))["state"] == "queued", "two are still running"
    for wid in [w["id"] for w in daemon.ops.list("running")]:
        assert (await daemon.http.delete(f"/v1/workloads/{wid}")).status_code == 204
    assert (await daemon.wait(last["id"]))["state"] == "succeeded"
    await until(lambda: not alive(first_pid) and not alive(second_pid))


async def test_timeout_stops_the_process_as_deadline_exceeded(
    daemon: Daemon, tmp_path: Path
) -> None:
    workload, pid = await sleeping(daemon, tmp_path, timeout_seconds=2)
    finished = await daemon.wait(str(workload["id"]))
    assert (finished["state"], finished["reason"]) == ("failed", "DeadlineExceeded")
    await until(lambda: not alive(pid))


CLEANS_UP = """
import signal, sys, time
def stop(*_):
    print("got SIGTERM, cleaning up", flush=True)
    time.sleep(0.5)
    print("cleaned up", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("working", flush=True)
while True:
    time.sleep(0.05)
"""


async def test_what_a_cancelled_run_prints_after_sigterm_is_in_its_log(daemon: Daemon) -> None:
    """A cancelled run's pod is Terminating for its grace period, as on a real cluster:
    it gets SIGTERM, and the lines it prints meanwhile are kept."""
    workload = await daemon.submit(command=[sys.executable, "-u", "-c", CLEANS_UP])
    wid = str(workload["id"])
    await daemon.until_state(wid, "running")
    await until(lambda: daemon_logs_have(daemon, wid, "working"))
    assert (await daemon.http.delete(f"/v1/workloads/{wid}")).status_code == 204
    assert (await daemon.wait(wid))["state"] == "cancelled"
    lines = await daemon.logs(wid)
    assert any(line.endswith("got SIGTERM, cleaning up") for line in lines), lines
    assert any(line.endswith("cleaned up") for line in lines), lines
    assert (await daemon.get(wid))["state"] == "cancelled"  # the pod's exit 0 changes nothing


async def test_a_timed_out_run_fails_once_its_pod_has_stopped(daemon: Daemon) -> None:
    """From 1.31 the Job says FailureTarget at the deadline and Failed once its pods are
    gone; the workload fails as DeadlineExceeded, with what the pod printed on SIGTERM."""
    workload = await daemon.submit(
        command=[sys.executable, "-u", "-c", CLEANS_UP], timeout_seconds=2
    )
    wid = str(workload["id"])
    finished = await daemon.wait(wid)
    assert (finished["state"], finished["reason"]) == ("failed", "DeadlineExceeded")
    lines = await daemon.logs(wid)
    assert any(line.endswith("cleaned up") for line in lines), lines


async def daemon_logs_have(daemon: Daemon, wid: str, text: str) -> bool:
    return any(line.endswith(text) for line in await daemon.logs(wid))
