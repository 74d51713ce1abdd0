"""The metrics exposition: every family present, promtool-clean, bounded labels."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zwmd.metrics import FAILURE_REASONS, STATES, Metrics

FAMILIES = {
    "zwmd_workloads": "gauge",
    "zwmd_workload_transitions": "counter",
    "zwmd_workloads_finished": "counter",
    "zwmd_workload_queue_wait_seconds": "histogram",
    "zwmd_workload_build_duration_seconds": "histogram",
    "zwmd_workload_start_duration_seconds": "histogram",
    "zwmd_workload_run_duration_seconds": "histogram",
    "zwmd_builds": "counter",
    "zwmd_watch_events": "counter",
    "zwmd_watch_restarts": "counter",
    "zwmd_watch_relists": "counter",
    "zwmd_watch_last_event_age_seconds": "gauge",
    "zwmd_kube_requests": "counter",
    "zwmd_kube_request_duration_seconds": "histogram",
    "zwmd_log_stored_bytes": "counter",
    "zwmd_log_stored_lines": "counter",
    "zwmd_log_store_errors": "counter",
    "zwmd_log_spooled_bytes": "gauge",
    "zwmd_hook_errors": "counter",
    "zwmd_plugin_info": "info",
    "zwmd_leader": "gauge",
    "zwmd_build_info": "info",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exercised(workload_id: str, clock: FakeClock | None = None) -> Metrics:
    """A Metrics with every recording method called at least once."""
    metrics = Metrics(clock=clock) if clock else Metrics()
    metrics.transition(None, "queued")
    metrics.queue_wait(3.5)
    metrics.transition("queued", "starting")
    metrics.start_duration(2.0)
    metrics.transition("starting", "running")
    metrics.run_duration("failed", 42.0)
    metrics.transition("running", "failed", reason="OOMKilled")
    metrics.transition(None, "cancelled")
    metrics.transition(None, "failed", reason=f"Weird-{workload_id}")  # unknown: bounded
    metrics.finished("succeeded")
    metrics.build("cache_hit", 0.01)
    metrics.build("built", 95.0)
    metrics.build("failed")
    metrics.watch_event("Job", "ADDED")
    metrics.watch_event("pods", "BOOKMARK")  # resource names map to kinds
    metrics.watch_restart("Job", 410)
    metrics.watch_restart("Pod", "timeout")
    metrics.watch_relist("Job")
    metrics.kube_request("create", "jobs", 201, 0.02)
    metrics.kube_request("get", "pods/log", None, 5.0)
    metrics.log_stored("file", 10, 1234)
    metrics.log_store_error("s3", "append")
    metrics.set_spooled_bytes("s3", 4096)
    metrics.hook_error("zwmd_log_store")
    metrics.plugin_loaded("kubernetes", "0.1.0")
    metrics.set_leader(True)
    metrics.count_workloads_with(lambda: ["failed", "cancelled", "failed", f"Weird-{workload_id}"])
    return metrics


def parse(metrics: Metrics) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        family.name: (family.type, [(s.name, s.labels, s.value) for s in family.samples])
        for family in text_string_to_metric_families(body.decode())
    }


def test_every_family_is_exposed_with_its_type() -> None:
    families = parse(Metrics())
    for name, kind in FAMILIES.items():
        assert name in families, name
        # Info families are exposed as gauges in the 0.0.4 text format.
        assert families[name][0] == ("gauge" if kind == "info" else kind), name


def test_known_series_exist_at_zero() -> None:
    families = parse(Metrics())
    states = {s[1]["state"]: s[2] for s in families["zwmd_workloads"][1]}
    assert states == dict.fromkeys(STATES, 0.0)
    finished = {
        (s[1]["outcome"], s[1]["reason"])
        for s in families["zwmd_workloads_finished"][1]
        if s[0].endswith("_total")
    }
    assert {("failed", r) for r in FAILURE_REASONS} <= finished
    assert ("succeeded", "none") in finished
    restarts = {(s[1]["kind"], s[1]["cause"]) for s in families["zwmd_watch_restarts"][1]}
    assert {("Job", "410"), ("Pod", "timeout"), ("Job", "error")} <= restarts
    builds = {s[1]["result"] for s in families["zwmd_builds"][1]}
    assert builds == {"cache_hit", "built", "failed"}


def test_recorded_values() -> None:
    clock = FakeClock()
    metrics = exercised("w", clock)
    clock.now += 7.5
    families = parse(metrics)

    def value(family: str, sample: str, **labels: str) -> float:
        matches = [v for n, ls, v in families[family][1] if n == sample and ls == labels]
        assert len(matches) == 1, (family, sample, labels, families[family][1])
        return matches[0]

    assert value("zwmd_workloads", "zwmd_workloads", state="failed") == 2
    assert value("zwmd_workloads", "zwmd_workloads", state="cancelled") == 1
    assert value("zwmd_workloads", "zwmd_workloads", state="other") == 1
    assert value("zwmd_workloads", "zwmd_workloads", state="running") == 0
    assert (
        value(
            "zwmd_workload_transitions",
            "zwmd_workload_transitions_total",
            **{"from": "none", "to": "queued"},
        )
        == 1
    )
    total = "zwmd_workloads_finished_total"
    assert value("zwmd_workloads_finished", total, outcome="failed", reason="OOMKilled") == 1
    assert value("zwmd_workloads_finished", total, outcome="failed", reason="other") == 1
    assert value("zwmd_workloads_finished", total, outcome="cancelled", reason="none") == 1
    assert value("zwmd_workloads_finished", total, outcome="succeeded", reason="none") == 1
    assert value("zwmd_builds", "zwmd_builds_total", result="cache_hit") == 1
    assert value("zwmd_watch_restarts", "zwmd_watch_restarts_total", kind="Job", cause="410") == 1
    events = "zwmd_watch_events_total"
    assert value("zwmd_watch_events", events, kind="Pod", type="BOOKMARK") == 1
    assert value("zwmd_watch_events", events, kind="Job", type="ADDED") == 1
    assert (
        value(
            "zwmd_kube_requests",
            "zwmd_kube_requests_total",
            verb="get",
            resource="pods/log",
            code="error",
        )
        == 1
    )
    assert value("zwmd_log_stored_bytes", "zwmd_log_stored_bytes_total", store="file") == 1234
    assert value("zwmd_log_spooled_bytes", "zwmd_log_spooled_bytes", store="s3") == 4096
    assert value("zwmd_leader", "zwmd_leader") == 1
    assert value("zwmd_plugin_info", "zwmd_plugin_info", name="kubernetes", version="0.1.0") == 1
    build_info = families["zwmd_build_info"][1][0]
    assert build_info[0] == "zwmd_build_info"
    assert set(build_info[1]) == {"version", "python"}
    # Age since the last event: computed at scrape time from the clock.
    age = "zwmd_watch_last_event_age_seconds"
    assert value(age, age, kind="Job") == 7.5
    assert metrics.last_event_age("Pod") == 7.5

    # counted afresh at every scrape from the daemon's records
    states = ["running", "running", "running", "queued"]
    metrics.count_workloads_with(lambda: states)
    families = parse(metrics)
    assert value("zwmd_workloads", "zwmd_workloads", state="running") == 3
    assert value("zwmd_workloads", "zwmd_workloads", state="failed") == 0
    states.pop(0)
    families = parse(metrics)
    assert value("zwmd_workloads", "zwmd_workloads", state="running") == 2


def test_no_workload_id_in_any_label() -> None:
    workload_id = str(uuid.uuid4())
    body, _ = exercised(workload_id).exposition()
    assert workload_id.encode() not in body
    assert b"Weird" not in body
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            assert "id" not in sample.labels
            assert "workload" not in sample.labels


def test_registries_are_per_instance() -> None:
    first, second = Metrics(), Metrics()
    first.transition(None, "queued")
    first.count_workloads_with(lambda: ["queued"])
    assert first.registry is not second.registry
    assert b'zwmd_workloads{state="queued"} 1.0' in first.exposition()[0]
    assert b'zwmd_workloads{state="queued"} 0.0' in second.exposition()[0]


def test_openmetrics_on_request() -> None:
    body, content_type = exercised("w").exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package 'prometheus')")
        pytest.skip("promtool is missing: apt-get install prometheus")
    return path


def test_promtool_check_metrics_is_silent() -> None:
    body, _ = exercised(str(uuid.uuid4())).exposition()
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == b"", result.stdout
    assert result.stderr == b"", result.stderr
