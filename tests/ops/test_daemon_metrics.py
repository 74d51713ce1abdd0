"""What a running daemon reports at ``/metrics`` and tells its plugins.

Runs go through the API of a daemon served in the test's loop, on localkube with the
process kubelet; the test reads the scrape as Prometheus would.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.inprocess import Cluster, daemon_on_cluster, until
from zwmd.hookspecs import hookimpl
from zwmd.plugins import plugin_manager

pytestmark = pytest.mark.anyio


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(exposition: str, name: str, **labels: str) -> float:
    return samples(exposition)[(name, tuple(sorted(labels.items())))]


def moved(text: str, old: str, new: str) -> float:
    """Transitions counted from ``old`` to ``new`` (a series that never moved is absent)."""
    key = ("zwmd_workload_transitions_total", (("from", old), ("to", new)))
    return samples(text).get(key, 0.0)


async def test_phase_histograms_and_finished_counts(tmp_path: Path) -> None:
    async with daemon_on_cluster(tmp_path) as daemon:
        assert (await daemon.run("sleep 1; exit 0"))["state"] == "succeeded"
        assert (await daemon.run("exit 0"))["state"] == "succeeded"
        assert (await daemon.run("sleep 1; exit 3"))["state"] == "failed"
        text = await daemon.scrape()

    assert value(text, "zwmd_workloads_finished_total", outcome="succeeded", reason="none") == 2
    assert value(text, "zwmd_workloads_finished_total", outcome="failed", reason="Error") == 1
    assert value(text, "zwmd_workloads", state="succeeded") == 2
    assert value(text, "zwmd_workloads", state="failed") == 1
    for state in ("queued", "starting", "running"):
        assert value(text, "zwmd_workloads", state=state) == 0
    assert moved(text, "none", "queued") == 3
    # one observation per workload and phase it went through
    assert value(text, "zwmd_workload_queue_wait_seconds_count") == 3
    started = moved(text, "starting", "running")
    assert started >= 2  # the two that slept were seen running
    assert value(text, "zwmd_workload_start_duration_seconds_count") == started
    ran_ok = moved(text, "running", "succeeded") + moved(text, "starting", "succeeded")
    assert value(text, "zwmd_workload_run_duration_seconds_count", outcome="succeeded") == ran_ok
    assert value(text, "zwmd_workload_run_duration_seconds_count", outcome="failed") == 1
    assert value(text, "zwmd_workload_run_duration_seconds_sum", outcome="failed") > 0
    assert value(text, "zwmd_leader") == 1
    assert value(text, "zwmd_watch_events_total", kind="Job", type="ADDED") >= 3
    assert value(text, "zwmd_watch_relists_total", kind="Pod") == 1
    assert value(text, "zwmd_watch_last_event_age_seconds", kind="Job") >= 0


async def test_adopted_workloads_show_in_the_gauge_after_a_restart(tmp_path: Path) -> None:
    cluster, namespace = Cluster(), "ns-adopt"
    async with anyio.create_task_group() as tg:
        await cluster.start(tg, namespace)
        async with daemon_on_cluster(tmp_path, cluster=cluster, namespace=namespace) as first:
            for _ in range(3):
                assert (await first.run("exit 0"))["state"] == "succeeded"
        async with daemon_on_cluster(tmp_path, cluster=cluster, namespace=namespace) as second:
            text = await second.scrape()
            # nothing moved in this daemon: it learnt the three from one list of Jobs
            assert value(text, "zwmd_workloads", state="succeeded") == 3
            assert moved(text, "running", "succeeded") == 0
        tg.cancel_scope.cancel()


class _Recorder:
    """A plugin that records every change; async, as the hookspec allows."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, str]] = []

    @hookimpl
    async def zwmd_workload_state_changed(
        self, workload: dict[str, Any], old: str, new: str
    ) -> None:
        assert "environment" not in workload
        self.changes.append((workload["id"], old, new))


class _Broken:
    @hookimpl
    def zwmd_workload_state_changed(self, new: str) -> None:
        raise RuntimeError(f"broken plugin ({new})")


class _Hanging:
    @hookimpl
    async def zwmd_workload_state_changed(self) -> None:
        await anyio.sleep_forever()


def manager_with(*plugins: object) -> pluggy.PluginManager:
    manager = plugin_manager(entry_points=False)
    for plugin in plugins:
        manager.register(plugin)
    return manager


def told(recorder: _Recorder, workload_id: str) -> list[tuple[str, str]]:
    return [(old, new) for wid, old, new in recorder.changes if wid == workload_id]


async def test_state_changes_reach_plugins_and_hook_errors_are_counted(tmp_path: Path) -> None:
    recorder = _Recorder()
    manager = manager_with(_Broken(), recorder)
    async with daemon_on_cluster(tmp_path, plugins=manager) as daemon:
        workload_id = str(uuid.uuid4())
        assert (await daemon.run("sleep 1", workload_id))["state"] == "succeeded"
        await until(lambda: "succeeded" in dict(told(recorder, workload_id)).values())
        text = await daemon.scrape()

    changes = told(recorder, workload_id)
    assert changes[0] == ("queued", "starting")
    assert changes[-1][1] == "succeeded"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(changes))  # in order
    # the broken plugin raised once per change, and the other plugin was told anyway
    assert value(text, "zwmd_hook_errors_total", hook="zwmd_workload_state_changed") == len(changes)


async def test_a_hanging_hook_does_not_hold_up_workloads(tmp_path: Path) -> None:
    recorder = _Recorder()
    manager = manager_with(_Hanging(), recorder)
    async with daemon_on_cluster(tmp_path, plugins=manager) as daemon:
        hooks = daemon.ops.listener.hooks  # type: ignore[union-attr]
        hooks.timeout = 0.2
        first = await daemon.run("exit 0")
        second = await daemon.run("exit 0")
        assert (first["state"], second["state"]) == ("succeeded", "succeeded")
        # every change timed out in the hanging plugin, and still reached the recorder
        await until(lambda: "succeeded" in dict(told(recorder, second["id"])).values())
        text = await daemon.scrape()
    changes = len(told(recorder, first["id"])) + len(told(recorder, second["id"]))
    assert value(text, "zwmd_hook_errors_total", hook="zwmd_workload_state_changed") == changes
