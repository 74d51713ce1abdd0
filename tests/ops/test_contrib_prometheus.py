"""contrib/prometheus's alerting rules and contrib/grafana's dashboard, as operators use them.

- ``promtool check rules`` accepts the rules, and ``promtool test rules`` runs their unit
  tests (each alert firing on the series that should fire it, silent on a healthy one).
- Every series the rules and the dashboard name is one a daemon exposes.
- A real Prometheus loads the rules next to a real daemon it scrapes: every rule
  evaluates without error and nothing fires for a healthy daemon, and every dashboard
  query is valid PromQL that the server answers, with data where the daemon has some.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_process import DaemonProcess, free_port, start_daemon
from tests.prometheus import require, running_prometheus, wait_for
from zwmd.metrics import Metrics

yaml: Any = importlib.import_module("yaml")  # PyYAML, through kubernetes-asyncio; no stubs

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RULES = CONTRIB / "prometheus" / "zwmd-alerts.yaml"
RULE_TESTS = CONTRIB / "prometheus" / "zwmd-alerts.test.yaml"
DASHBOARD = CONTRIB / "grafana" / "zwmd-dashboard.json"
#: Prometheus' lastEvaluation of a rule not yet evaluated
NEVER = "0001-01-01T00:00:00Z"
SERIES = re.compile(r"\bzwmd_[a-z_]+\b")


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every dashboard target, Grafana's variables filled in
    as Grafana would for "All" daemons and a one-minute rate interval."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
            queries.append((panel["title"], expr))
    return queries


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = require("promtool")
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 10 rules found" in check.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules()}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts - fired == set()


#: the sample names prometheus-client gives each type of family, after the family's name
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def test_the_rules_and_the_dashboard_name_only_series_zwmd_exposes() -> None:
    # every family is exposed (HELP and TYPE) even before it has a sample
    families = text_string_to_metric_families(Metrics().exposition()[0].decode())
    exposed = {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}
    named = {name for rule in rules() for name in SERIES.findall(rule["expr"])}
    named |= {name for _, expr in dashboard_queries() for name in SERIES.findall(expr)}
    assert len(named) > 15
    assert named - exposed == set()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, str]]:
    port = free_port()
    env = {"ZWMD_METRICS_PORT": str(port), "ZWMD_METRICS_HOST": "127.0.0.1"}
    process = start_daemon(tmp_path / "zwmd", env=env)
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        process.stop()


def finish(daemon: DaemonProcess, command: str) -> str:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    workload_id = str(uuid.uuid4())
    with httpx.Client(base_url=daemon.url, headers=headers, timeout=90) as api:
        body = {"image": "runner:1", "command": ["sh", "-c", command]}
        assert api.post(f"/v1/workloads/{workload_id}/run", json=body).status_code == 202
        state: str = api.get(f"/v1/workloads/{workload_id}/wait", params={"timeout": 60}).json()[
            "state"
        ]
        return state


def test_a_real_prometheus_evaluates_the_rules_and_answers_the_dashboard(
    daemon: tuple[DaemonProcess, str], tmp_path: Path
) -> None:
    process, target = daemon
    with running_prometheus(tmp_path / "prometheus", [target], rule_files=[RULES]) as prometheus:
        started = time.time()
        wait_for(lambda: prometheus.scraped_after(started), what="a first scrape")
        assert [finish(process, cmd) for cmd in ("echo hi", "exit 3")] == ["succeeded", "failed"]
        finished_at = time.time()
        wait_for(lambda: prometheus.scraped_after(finished_at + 3), what="scrapes after the runs")

        def evaluated() -> list[dict[str, Any]] | None:
            current = [r for g in prometheus.get("/rules")["groups"] for r in g["rules"]]
            done = current and all(r["lastEvaluation"] != NEVER for r in current)
            return current if done else None

        loaded = wait_for(evaluated, what="every rule evaluated")
        assert len(loaded) == len(rules()) == 10
        assert {r["name"]: r["health"] for r in loaded} == {r["name"]: "ok" for r in loaded}
        assert prometheus.get("/alerts")["alerts"] == []  # a healthy daemon

        answered = {title: prometheus.query(expr) for title, expr in dashboard_queries()}
        with_data = {title for title, result in answered.items() if result}
        # what a daemon that ran two workloads has to show
        expected = {
            "Workloads by state",
            "Transitions",
            "Finished by outcome",
            "Failures by reason",
            "Watch silence",
            "API requests by code",
            "API latency p99",
            "Log bytes stored",
        }
        assert expected - with_data == set()
