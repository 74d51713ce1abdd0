"""The apiserver misbehaves for 60 s while runs come and go; every run ends as its pod did.

Four scenarios, each with its own localkube and daemon:

- 15 % of writes (create, update, patch, delete) answered 500 or 429 for 60 s: the
  apiserver shedding load, or etcd timing out;
- the apiserver down for 60 s (connections refused, open ones closed), then back with
  its objects: a control-plane restart;
- a silent partition for 60 s: every connection open at that moment stops moving bytes,
  with no close and no reset, while new connections work; then the held connections
  are reset, as peers that gave up on them meanwhile;
- a storm of 410 Gone (watch history compacted) with dropped watch and pod-log streams,
  for 60 s.

Runs are submitted before and during the fault (:func:`~tests.faults.harness.run_scenario`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import FAULT_SECONDS, Cluster, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


def test_fifteen_percent_of_writes_failing(tmp_path: Path) -> None:
    def fault(cluster: Cluster) -> int:
        time.sleep(2)  # a few runs start clean
        cluster.fault("fail-fraction", fraction=0.15, seconds=FAULT_SECONDS, seed=7)
        time.sleep(FAULT_SECONDS)
        return int(cluster.fault_counts()["injected"])  # 500s and 429s answered

    run_scenario(tmp_path, "write_faults", fault, seed=21)


def test_the_apiserver_down_for_a_minute(tmp_path: Path) -> None:
    def fault(cluster: Cluster) -> int:
        time.sleep(5)
        cluster.fault("outage", seconds=FAULT_SECONDS)
        return 1

    run_scenario(tmp_path, "apiserver_down", fault, seed=22)


def test_a_silent_partition_for_a_minute(tmp_path: Path) -> None:
    def fault(cluster: Cluster) -> int:
        time.sleep(5)
        stalled = int(cluster.fault("stall")["stalled"])
        time.sleep(FAULT_SECONDS)
        cluster.fault("end-stall", drop=True)
        return stalled  # connections held

    run_scenario(tmp_path, "partition", fault, seed=24)


def test_a_410_storm_with_dropped_streams(tmp_path: Path) -> None:
    def fault(cluster: Cluster) -> int:
        time.sleep(2)
        caused = 0
        for tick in range(int(FAULT_SECONDS)):
            time.sleep(1.0)
            cluster.fault("compact")  # every resumed watch gets 410 Gone
            dropped = cluster.fault("drop-watches" if tick % 2 else "drop-pod-logs")
            caused += 1 + int(dropped["dropped"])
        return caused  # compactions, and streams dropped

    run_scenario(tmp_path, "gone_storm", fault, seed=23)
