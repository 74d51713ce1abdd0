"""The adapter inside a real ZenML 0.98.0 server, beside ``zwmd serve --local``.

What a ZenML user sees when they press "Run" on a snapshot: the server asks zwmd for
the runner image (zwmd reuses the snapshot's own orchestrator image: no registry is
configured), logs "Starting pipeline run.", and runs the runner, which fails here since
the stack's integrations (s3, kubernetes) are not installed. The run ends failed, and
its runner logs in the dashboard show zwmd's lines, with timestamps, and the reason.
"""

from __future__ import annotations

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
from zwmd.client import Client, ClientConfig

pytestmark = [pytest.mark.zenml, pytest.mark.timeout(600)]

ORCHESTRATOR_IMAGE = "registry.zwmd.test/ml/zwmd-e2e:orchestrator-1"


def test_a_snapshot_run_goes_through_zwmd(
    zwmd_daemon: DaemonProcess, zenml_server: ZenMLServer
) -> None:
    ids = zenml_server.register("zwmd-e2e", ORCHESTRATOR_IMAGE)
    assert ids["runnable"] is True
    with zenml_server.api() as api:
        run = trigger_run(api, ids["snapshot_id"])
        assert run["body"]["status"] == "initializing"
        run_id = run["id"]
        final = wait_run(api, run_id)
        entries = runner_logs(api, run_id)

    # zwmd received the build, the message and the run; it knows the run by its id
    with Client(ClientConfig(url=zwmd_daemon.url, token=zwmd_daemon.token)) as zwmd:
        workload = zwmd.wait_terminal(run_id, timeout=60)
        text = zwmd.logs(run_id)
    assert run_id in workload.aliases, workload
    assert workload.image == ORCHESTRATOR_IMAGE, workload
    assert workload.state == "failed", workload.describe()
    assert workload.reason
    assert "Starting pipeline run." in text
    assert "zenml" in text.lower(), text  # the runner (ZenML's entrypoint) ran and spoke

    # the ZenML run failed, and says so
    assert final["body"]["status"] == "failed", final["body"]
    assert final["body"]["status_reason"] == "Failed to start run."

    # the dashboard's runner logs are zwmd's lines, with timestamps, and the reason
    messages = [entry["message"] for entry in entries]
    assert "Starting pipeline run." in messages, messages
    assert all(entry["timestamp"] for entry in entries), entries
    assert any(workload.reason in message for message in messages), messages

    # the server loaded the adapter and logged why the run failed
    log = zenml_server.log_text()
    assert LOAD_WARNING not in log
    assert f"zwmd: runner workload {workload.id} failed: {workload.reason}" in log


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
