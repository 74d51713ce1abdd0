"""200 runs while the daemon is SIGKILLed 10 times, at least 3 of them mid-POST.

The runs are submitted through the adapter's HTTP client from 8 threads, spread over
the scenario; a killer thread SIGKILLs ``zwmd serve`` at random moments and starts it
again on the same port and state directory (as systemd or the kubelet would). Some kills
are timed for when a ``POST /run`` is in flight. The client retries through the restart;
every run must end as its pod did, with every line once, and no run the client was not
told about may run.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import Cluster, Daemon, Fleet, in_background

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

WORKLOADS, KILLS, KILLS_MID_POST = 200, 10, 3


def test_sigkills_lose_nothing_double_nothing_and_run_no_ghost(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    daemon = Daemon(cluster, tmp_path, {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "10"})
    daemon.start()
    fleet = Fleet(WORKLOADS, seed=11)
    mid_post = 0

    def killer() -> None:
        nonlocal mid_post
        rng = random.Random(5)
        for kill in range(KILLS):
            time.sleep(rng.uniform(2.0, 6.0))
            if kill < KILLS_MID_POST:  # the first ones land while a request is out
                deadline = time.monotonic() + 30
                while fleet.in_flight == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
                mid_post += fleet.in_flight > 0
            daemon.kill_and_restart()

    try:
        with in_background(killer):
            fleet.submit_all(daemon, spread=1.0)  # the last kills land while runs finish
        verdict = fleet.verdict("kills", daemon, cluster, timeout=300)
        verdict.kills_mid_post = mid_post
        verdict.report()
        assert verdict.kills == KILLS
        assert verdict.kills_mid_post >= KILLS_MID_POST
        assert verdict.refused_posts == 0, verdict.problems
        assert not verdict.bad(), (verdict.bad(), verdict.problems[:20], daemon.output())
    finally:
        daemon.stop()
        cluster.stop()
