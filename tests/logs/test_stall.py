"""A silent partition: open connections to the apiserver stop moving bytes, nothing closes.

localkube's ``stall`` fault holds every connection open at that moment (watches, pod log
follows, kept-alive connections) while new connections are served, as when a load
balancer or a NAT entry in front of an apiserver dies without an RST. Pods (host
processes) print known numbered lines; half of them are printed while every stream the
daemon has is stalled. What a user checks:

- every workload's log, read through the API, holds each line the pod printed exactly
  once, in order: the stalled follows were abandoned after their inactivity timeout and
  resumed from the last stored line;
- ``/readyz`` says 503, with the reason, while the daemon's requests and streams get no
  answer, and 200 once they do again;
- a queued workload starts as soon as a running one ends, while that one's log flush is
  still stuck behind a stalled stream (long before the pipeline's finish timeout), and
  ``GET /wait`` of the ended one answers only once its log is complete.

Timeouts are made short through the daemon's timing config (a few seconds instead of
minutes); what is compared is the configured finish timeout, not a wall-clock constant.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.inprocess import until
from tests.logs.pipelines import Daemon, messages
from zwmd.daemon.serving import DaemonConfig
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

INACTIVITY = 2.0  # seconds: the watches' and the log follows' inactivity timeout
REQUEST_TIMEOUT = 3.0  # seconds: a short Kubernetes call
FINISH_TIMEOUT = 60.0  # seconds a finished Job's logs may take (the default is 120)

# Prints ``<tag> 0`` .. ``<tag> n-1``; at the half it says so (a marker file) and waits
# for ``go``, then prints the rest slowly, so that the rest flows while streams stall.
POD_SCRIPT = """
import os, sys, time
tag, where, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    if i == n // 2:
        open(os.path.join(where, "half-" + tag), "w").close()
        while not os.path.exists(os.path.join(where, "go")):
            time.sleep(0.01)
    print(tag, i, flush=True)
    if i >= n // 2:
        time.sleep(0.02)
"""


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="process", bookmark_interval=0.5
    ) as localkube:
        yield localkube


def short_timeouts(
    *, log_inactivity: float = INACTIVITY, max_active: int = 8
) -> Callable[[DaemonConfig], DaemonConfig]:
    def adjust(config: DaemonConfig) -> DaemonConfig:
        return dataclasses.replace(
            config,
            max_active=max_active,
            kube_request_timeout=REQUEST_TIMEOUT,
            watch_timing=dataclasses.replace(
                config.watch_timing,
                inactivity_timeout=INACTIVITY,
                backoff_initial=0.05,
                backoff_max=0.5,
            ),
            log_timing=dataclasses.replace(
                config.log_timing,
                inactivity_timeout=log_inactivity,
                finish_timeout=FINISH_TIMEOUT,
            ),
        )

    return adjust


async def start(daemon: Daemon, where: Path, tag: str, lines: int) -> str:
    workload = await daemon.submit_script(POD_SCRIPT, arguments=[tag, str(where), str(lines)])
    return str(workload["id"])


async def stored_lines(daemon: Daemon, workload_id: str, tag: str) -> list[str]:
    return [m for m in messages(await daemon.logs(workload_id)) if m.startswith(f"{tag} ")]


async def assert_complete(daemon: Daemon, workload_id: str, tag: str, lines: int) -> None:
    """The log holds each line the pod printed exactly once, in order."""
    got = await stored_lines(daemon, workload_id, tag)
    want = [f"{tag} {i}" for i in range(lines)]
    missing = sorted(set(want) - set(got), key=want.index)
    assert got == want, f"{tag}: {len(got)} lines, missing {missing[:5]}, doubled or reordered"


async def readyz(daemon: Daemon) -> tuple[int, str]:
    response = await daemon.probes.get("/readyz")
    return response.status_code, str(response.json()["detail"])


async def test_a_silent_stall_of_every_open_stream_loses_no_line(
    kube: LocalKube, tmp_path: Path
) -> None:
    lines, tags = 400, ["a", "b", "c"]
    async with Daemon.serving(kube, tmp_path / "daemon", adjust=short_timeouts()) as daemon:
        ids = {tag: await start(daemon, tmp_path, tag, lines) for tag in tags}
        await until(lambda: all((tmp_path / f"half-{tag}").exists() for tag in tags))
        stalled = kube.faults.stall()  # every connection open now: watches, follows, pool
        assert stalled >= 2 + len(tags)  # two watches and a follow per pod, at least
        (tmp_path / "go").touch()  # the second half flows while the streams stall
        for tag in tags:
            assert (await daemon.wait(ids[tag], timeout=FINISH_TIMEOUT))["state"] == "succeeded"
        for tag in tags:
            await assert_complete(daemon, ids[tag], tag, lines)
        assert kube.faults.stalled  # all of it happened during the stall
        kube.faults.end_stall(drop=True)  # the held connections never come back
        await until(lambda: _ready(daemon))


async def _ready(daemon: Daemon) -> bool:
    return (await readyz(daemon))[0] == 200


async def test_readyz_is_503_while_the_apiserver_answers_nothing_and_200_after(
    kube: LocalKube, tmp_path: Path
) -> None:
    lines = 200
    async with Daemon.serving(kube, tmp_path / "daemon", adjust=short_timeouts()) as daemon:
        assert (await readyz(daemon))[0] == 200
        wid = await start(daemon, tmp_path, "r", lines)
        await until(lambda: (tmp_path / "half-r").exists())
        # old and new connections alike: requests and reconnections time out too
        kube.faults.stall(everything=True)
        (tmp_path / "go").touch()
        seen: list[tuple[int, str]] = []

        async def not_ready() -> bool:
            seen.append(await readyz(daemon))
            return seen[-1][0] == 503

        await until(not_ready, timeout=6 * INACTIVITY)
        assert kube.faults.stalled
        detail = seen[-1][1]
        assert "stalled" in detail or "no answer" in detail, detail
        await anyio.sleep(2 * INACTIVITY)  # still stalled: reconnections get nothing either
        assert (await readyz(daemon))[0] == 503
        kube.faults.end_stall()
        await until(lambda: _ready(daemon), timeout=6 * INACTIVITY)
        assert (await daemon.wait(wid, timeout=FINISH_TIMEOUT))["state"] == "succeeded"
        await assert_complete(daemon, wid, "r", lines)


async def test_a_queued_workload_starts_while_an_ended_ones_log_flush_is_stuck(
    kube: LocalKube, tmp_path: Path
) -> None:
    lines = 40
    # the follows' inactivity timeout is the finish timeout: a stalled follow is not
    # abandoned before the pipeline would close the log (the flush is truly stuck)
    adjust = short_timeouts(log_inactivity=FINISH_TIMEOUT, max_active=1)
    async with Daemon.serving(kube, tmp_path / "daemon", adjust=adjust) as daemon:
        first = await start(daemon, tmp_path, "first", lines)
        await until(lambda: (tmp_path / "half-first").exists())
        queued = (await daemon.submit_script("print('queued ran')"))["id"]
        assert (await daemon.get(queued))["state"] == "queued"
        assert kube.faults.stall(match=("get", "pods/log")) == 1  # the first's log follow
        (tmp_path / "go").touch()
        await daemon.until_state(first, "succeeded", timeout=30)
        ended = time.monotonic()
        waited: list[float] = []

        async def wait_first() -> None:
            await daemon.wait(first, timeout=FINISH_TIMEOUT * 2)
            waited.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_first)
            await daemon.until_state(queued, "starting", "running", "succeeded", timeout=30)
            admitted = time.monotonic()
            assert admitted - ended < FINISH_TIMEOUT / 4
            assert not waited, "GET /wait answered before the log was complete"
            kube.faults.end_stall()  # the held lines move on; the flush completes
        assert waited
        assert waited[0] > admitted
        await assert_complete(daemon, first, "first", lines)
        assert (await daemon.wait(queued))["state"] == "succeeded"
