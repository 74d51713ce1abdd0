"""The adapter inside a real ZenML 0.98.0 server, beside ``zwmd serve --local``.

What a ZenML user sees when they press "Run" on a snapshot: the server asks zwmd for
the runner image (zwmd reuses the snapshot's own orchestrator image: no registry is
configured), logs "Starting pipeline run.", and runs the runner, which fails here since
the stack's integrations (s3, kubernetes) are not installed. The run ends failed, and
its runner logs in the dashboard show zwmd's lines, with timestamps, and the reason.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.daemon_process import DaemonProcess, free_port
from tests.zenml.servers import (
    LOAD_WARNING,
    ZenMLServer,
    runner_logs,
    start_zenml_server,
    trigger_run,
    wait_run,
)
from zwmd.apiclient import Client, ClientConfig, Workload

pytestmark = [pytest.mark.zenml, pytest.mark.timeout(600)]

ORCHESTRATOR_IMAGE = "registry.zwmd.test/ml/zwmd-e2e:orchestrator-1"
MISSING_INTEGRATION = re.compile(
    r"The `\w+` integration that you are trying to use is not installed"
)


@dataclass
class SnapshotRun:
    """One press of "Run", as the ZenML server and zwmd each recorded it."""

    run_id: str
    final: dict[str, Any]
    entries: list[dict[str, Any]]
    workload: Workload
    zwmd_text: str
    server_log: str


@pytest.fixture(scope="module")
def snapshot_run(zwmd_daemon: DaemonProcess, zenml_server: ZenMLServer) -> SnapshotRun:
    ids = zenml_server.register("zwmd-e2e", ORCHESTRATOR_IMAGE)
    assert ids["runnable"] is True
    with zenml_server.api() as api:
        run = trigger_run(api, ids["snapshot_id"])
        assert run["body"]["status"] == "initializing"
        final = wait_run(api, run["id"])
        entries = runner_logs(api, run["id"])
    with Client(ClientConfig(url=zwmd_daemon.url, token=zwmd_daemon.token)) as zwmd:
        workload = zwmd.wait_terminal(run["id"], timeout=60)  # the run id is an alias
        text = zwmd.logs(run["id"])
    return SnapshotRun(run["id"], final, entries, workload, text, zenml_server.log_text())


def test_zwmd_received_the_build_the_message_and_the_run(snapshot_run: SnapshotRun) -> None:
    workload = snapshot_run.workload
    assert snapshot_run.run_id in workload.aliases, workload
    assert workload.state == "failed", workload.describe()
    assert workload.reason
    lines = snapshot_run.zwmd_text.splitlines()
    started = [i for i, line in enumerate(lines) if line.endswith("Starting pipeline run.")]
    traceback = [i for i, line in enumerate(lines) if "Traceback (most recent call" in line]
    assert started, lines[:5]
    assert traceback, lines  # the runner ran ZenML's entrypoint, which failed
    assert started[0] < traceback[0]


def test_the_run_fails_and_its_runner_logs_say_why(snapshot_run: SnapshotRun) -> None:
    body = snapshot_run.final["body"]
    assert body["status"] == "failed", body
    assert body["status_reason"] == "Failed to start run."

    # the dashboard's runner logs: zwmd's and the runner's lines, with timestamps, in
    # order, and why it failed (the stack's integrations are not installed here)
    entries = snapshot_run.entries
    messages = [entry["message"] for entry in entries]
    assert "Starting pipeline run." in messages[:3], messages
    assert all(entry["timestamp"] for entry in entries), entries
    stamps = [entry["timestamp"] for entry in entries]
    assert stamps == sorted(stamps)
    runner = [e["message"] for e in entries if e["name"] == "runner"]
    assert any(MISSING_INTEGRATION.search(message) for message in runner), messages
    reason = snapshot_run.workload.reason or "?"
    failure = [e for e in entries if e["name"] == "zwmd" and reason in e["message"]]
    assert failure, messages
    assert failure[0]["level"] >= 40  # ERROR


def test_the_server_loaded_the_adapter_and_logged_the_failure(snapshot_run: SnapshotRun) -> None:
    workload = snapshot_run.workload
    assert LOAD_WARNING not in snapshot_run.server_log
    expected = f"zwmd: runner workload {workload.id} failed: {workload.reason}"
    assert expected in snapshot_run.server_log


def test_the_adapter_finds_the_snapshot_images_in_the_store(
    snapshot_run: SnapshotRun, zenml_server: ZenMLServer
) -> None:
    """Mode 3's input: the orchestrator image of the snapshot's build, found from the
    per-run snapshot copy (ZenML's workload id), from the run id, and with no type."""
    snapshot_copy, run_id = snapshot_run.workload.id, snapshot_run.run_id
    found = zenml_server.candidate_images(
        f"{snapshot_copy}:snapshot", f"{run_id}:run", f"{run_id}:-", f"{uuid.uuid4()}:-"
    )
    expected = {"orchestrator": ORCHESTRATOR_IMAGE}
    assert found[f"{snapshot_copy}:snapshot"] == expected
    assert found[f"{run_id}:run"] == expected
    assert found[f"{run_id}:-"] == expected
    assert list(found.values())[-1] == {}


def test_without_registry_the_runner_reuses_the_snapshot_image(snapshot_run: SnapshotRun) -> None:
    """Mode 3: no runner image and no registry configured, so zwmd ran the runner in the
    orchestrator image of the snapshot's own build, and said so in the run's logs."""
    assert snapshot_run.workload.image == ORCHESTRATOR_IMAGE, snapshot_run.workload
    zwmd_lines = [e["message"] for e in snapshot_run.entries if e["name"] == "zwmd"]
    assert any("snapshot's own build" in line for line in zwmd_lines), zwmd_lines


def test_without_zwmd_the_run_fails_and_says_why(
    zenml_venv: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    server = start_zenml_server(
        tmp_path_factory.mktemp("zenml-nowhere"), zwmd_env={"ZWMD_URL": nowhere}
    )
    try:
        ids = server.register("zwmd-nowhere", ORCHESTRATOR_IMAGE)
        with server.api() as api:
            run_id = trigger_run(api, ids["snapshot_id"])["id"]
            final = wait_run(api, run_id, timeout=60)
            entries = runner_logs(api, run_id)
        log = server.log_text()
    finally:
        server.stop()
    assert final["body"]["status"] == "failed"
    assert final["body"]["status_reason"] == "Failed to start run."
    assert LOAD_WARNING not in log
    assert f"cannot reach zwmd at {nowhere}" in log
    assert any(f"cannot reach zwmd at {nowhere}" in e["message"] for e in entries), entries


def test_an_adapter_that_does_not_load_is_only_a_warning(
    zenml_venv: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Why the test above reads the server log: ZenML starts anyway and every run fails."""
    server = start_zenml_server(
        tmp_path_factory.mktemp("zenml-broken"),
        zwmd_env={},
        source="zwmd.no_such_module.WorkloadManager",
    )
    try:
        ids = server.register("zwmd-broken", ORCHESTRATOR_IMAGE)
        with server.api() as api:
            run_id = trigger_run(api, ids["snapshot_id"])["id"]
            final = wait_run(api, run_id, timeout=60)
        log = server.log_text()
    finally:
        server.stop()
    assert LOAD_WARNING in log
    assert final["body"]["status"] == "failed"
    assert final["body"]["status_reason"] == "Failed to start run."
