"""The HTTP client and the ZenML adapter, against a real ``zwmd serve --local``.

What a user of ``zwmd.apiclient`` (the CLI, the ZenML server through the adapter) sees: an
unreachable daemon is named with the hint to start it, a wrong token is a clear 401,
and a runner's life (run, wait, get, logs, follow, cancel) reads back as it happened.
The adapter is exercised here as a plain class (zenml is not installed in this
environment); ``tests/zenml/`` loads it into a real ZenML server. Local mode never runs a
builder, so the adapter's wait for a build is checked against a scripted daemon.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.daemon_process import DaemonProcess, free_port, start_daemon
from zwmd.apiclient import (
    ApiError,
    Client,
    ClientConfig,
    DaemonUnreachable,
    Workload,
    ZwmdError,
)
from zwmd.zenml import WorkloadFailed, WorkloadManager

PY = sys.executable


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = start_daemon(tmp_path_factory.mktemp("zwmd"))
    yield process
    process.stop()


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(ClientConfig(url=daemon.url, token=daemon.token)) as c:
        yield c


def _run(client: Client, code: str) -> str:
    wid = str(uuid.uuid4())
    client.run(wid, image="python:3.11-slim", command=[PY, "-c", code], timeout_seconds=120)
    return wid


# -- no daemon --------------------------------------------------------------------------


def test_unreachable_daemon_is_named_with_the_hint_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(ClientConfig(url=url, timeout=3)) as c, pytest.raises(DaemonUnreachable) as err:
        c.get(uuid.uuid4())
    assert f"cannot reach zwmd at {url}" in str(err.value)
    assert "zwmd serve" in str(err.value)


def test_unreachable_socket_is_named(tmp_path: Path) -> None:
    sock = tmp_path / "zwmd.sock"
    with (
        Client(ClientConfig(socket=str(sock), timeout=3)) as c,
        pytest.raises(DaemonUnreachable) as err,
    ):
        c.healthz()
    assert f"cannot reach zwmd at unix socket {sock}" in str(err.value)


def test_configuration_comes_from_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    config = ClientConfig.from_env(
        {"ZWMD_URL": "http://zwmd.internal:9000/", "ZWMD_API_TOKEN_FILE": str(token_file)}
    )
    assert config.url == "http://zwmd.internal:9000"
    assert config.read_token() == "s3cret"
    assert ClientConfig.from_env({}).url == "http://127.0.0.1:8390"
    by_socket = ClientConfig.from_env({"ZWMD_URL": "unix:///run/zwmd/api.sock"})
    assert by_socket.socket == "/run/zwmd/api.sock"
    with pytest.raises(ZwmdError, match="ZWMD_CLIENT_TIMEOUT must be a number of seconds"):
        ClientConfig.from_env({"ZWMD_CLIENT_TIMEOUT": "soon"})
    assert ClientConfig.from_env({}).retry_seconds == 30
    assert ClientConfig.from_env({"ZWMD_CLIENT_RETRY_SECONDS": "0"}).retry_seconds == 0
    with pytest.raises(ZwmdError, match="ZWMD_CLIENT_RETRY_SECONDS must be a number of seconds"):
        ClientConfig.from_env({"ZWMD_CLIENT_RETRY_SECONDS": "-1"})


# -- against the daemon -----------------------------------------------------------------


def test_wrong_token_is_a_clear_401(daemon: DaemonProcess) -> None:
    with (
        Client(ClientConfig(url=daemon.url, token="not-the-token")) as c,
        pytest.raises(ApiError) as err,
    ):
        c.list()
    assert err.value.status == 401
    assert "401" in str(err.value)
    assert "ZWMD_API_TOKEN" in str(err.value)
    with Client(ClientConfig(url=daemon.url)) as c:
        assert c.healthz() is not None  # probes need no token


def test_an_invalid_request_names_the_field(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.run(uuid.uuid4(), image="x", command=[PY], timeout_seconds=-1)
    assert err.value.status == 422
    assert "timeout_seconds" in err.value.detail


def test_unknown_workload_is_404(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.get(uuid.uuid4())
    assert err.value.status == 404


def test_run_wait_get_logs_round_trip(client: Client) -> None:
    wid = str(uuid.uuid4())
    client.log(wid, "before the job exists")
    first = client.run(
        wid,
        image="python:3.11-slim",
        command=[PY, "-c", "print(42)"],
        environment={"ZENML_STORE_API_TOKEN": "secret"},
        timeout_seconds=60,
    )
    assert first.id == wid
    assert first.state in {"queued", "starting", "running", "succeeded"}
    again = client.run(
        wid,
        image="python:3.11-slim",
        command=[PY, "-c", "print(42)"],
        environment={"ZENML_STORE_API_TOKEN": "secret"},
        timeout_seconds=60,
    )
    assert again.id == wid  # the same request again is the same workload

    done = client.wait_terminal(wid, timeout=60)
    assert done.state == "succeeded", done.describe()
    got = client.get(wid)
    assert got.succeeded
    assert got.finished_at
    assert wid in [w.id for w in client.list(state="succeeded")]

    text = client.logs(wid)
    assert "42" in text.splitlines() or any(line.endswith("42") for line in text.splitlines())
    assert "before the job exists" in text
    assert "secret" not in text

    entries = [json.loads(line) for line in client.logs(wid, "zenml").splitlines() if line]
    printed = [e for e in entries if e["message"] == "42"]
    assert printed, entries
    assert isinstance(printed[0]["level"], int)
    datetime.fromisoformat(printed[0]["timestamp"].replace("Z", "+00:00"))


def test_follow_ends_when_the_workload_ends(client: Client) -> None:
    wid = _run(
        client,
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.2)",
    )
    lines = list(client.logs(wid, "text", follow=True))
    assert [line for line in lines if "tick" in line][-1].endswith("tick 2")
    assert client.get(wid).terminal


def test_cancel_stops_a_running_workload(client: Client) -> None:
    wid = _run(client, "import time; time.sleep(120)")
    running = client.wait_terminal(
        wid, timeout=30, until=lambda w: w.state == "running", slice_seconds=0.5
    )
    assert running.state == "running", running.describe()
    client.cancel(wid)
    final = client.wait_terminal(wid, timeout=30)
    assert final.state == "cancelled", final.describe()


def test_a_failing_runner_reports_a_reason(client: Client) -> None:
    wid = _run(client, "import sys; print('boom'); sys.exit(3)")
    final = client.wait_terminal(wid, timeout=60)
    assert final.state == "failed"
    assert final.reason
    assert "boom" in client.logs(wid)


# -- the adapter, as a plain class ------------------------------------------------------


@pytest.fixture
def adapter(client: Client) -> WorkloadManager:
    return WorkloadManager(client)


def test_adapter_drops_a_refused_message_with_a_warning(
    adapter: WorkloadManager, caplog: pytest.LogCaptureFixture
) -> None:
    wid = uuid.uuid4()
    adapter.log(workload_id=wid, message="x" * 70_000)  # over ZWMD_LOG_MESSAGE_MAX_BYTES
    assert "dropped" in caplog.text
    assert "413" in caplog.text
    adapter.log(workload_id=wid, message="kept")
    assert "kept" in adapter.get_logs(workload_id=wid)
    assert "x" * 1000 not in adapter.get_logs(workload_id=wid)


def test_adapter_run_sync_returns_on_success(adapter: WorkloadManager) -> None:
    wid = uuid.uuid4()
    adapter.log(workload_id=wid, message="Starting pipeline run.")
    adapter.run(
        workload_id=wid,
        image="python:3.11-slim",
        command=[PY, "-c"],
        arguments=["print('runner says hi')"],
        environment={},
        sync=True,
        timeout_in_seconds=60,
    )
    lines = [json.loads(line) for line in adapter.get_logs(workload_id=wid).splitlines() if line]
    messages = [e["message"] for e in lines]
    assert "Starting pipeline run." in messages
    assert "runner says hi" in messages
    assert all(e["timestamp"] for e in lines)


def test_adapter_run_sync_raises_with_the_reason(adapter: WorkloadManager) -> None:
    wid = uuid.uuid4()
    with pytest.raises(WorkloadFailed) as err:
        adapter.run(
            workload_id=wid,
            image="python:3.11-slim",
            command=[PY, "-c", "raise SystemExit(2)"],
            arguments=[],
            sync=True,
            timeout_in_seconds=60,
        )
    workload: Workload = err.value.workload
    assert workload.state == "failed"
    assert workload.reason
    assert workload.reason in str(err.value)


def test_adapter_builds_or_returns_the_image(adapter: WorkloadManager) -> None:
    image = adapter.build_and_push_image(
        workload_id=uuid.uuid4(),
        workload_type="snapshot",
        dockerfile="FROM python:3.11-slim\n",
        image_name="zenml-runner:0123456789abcdef",
        sync=True,
    )
    assert image.endswith("zenml-runner:0123456789abcdef")


def test_adapter_tolerates_unknown_ids(adapter: WorkloadManager) -> None:
    wid = uuid.uuid4()
    assert adapter.get_logs(workload_id=wid) == ""
    adapter.delete_workload(workload_id=wid)


def test_adapter_without_daemon_says_so_everywhere() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    adapter = WorkloadManager(Client(ClientConfig(url=url, timeout=3)))
    with pytest.raises(DaemonUnreachable, match="cannot reach zwmd at"):
        adapter.log(workload_id=uuid.uuid4(), message="hello")
    line = json.loads(adapter.get_logs(workload_id=uuid.uuid4()))
    assert line["level"] == 40
    assert f"cannot reach zwmd at {url}" in line["message"]


# -- what the ZenML server relies on ------------------------------------------------------


def test_one_client_serves_many_threads(adapter: WorkloadManager) -> None:
    """The ZenML server calls one adapter instance from its worker threads."""
    wid = uuid.uuid4()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: adapter.log(workload_id=wid, message=f"m{i}"), range(64)))
        texts = list(pool.map(lambda _: adapter.get_logs(workload_id=wid), range(16)))
    final = {json.loads(line)["message"] for line in adapter.get_logs(workload_id=wid).splitlines()}
    assert final == {f"m{i}" for i in range(64)}
    assert all(text for text in texts)


def test_a_rotated_token_file_is_picked_up(daemon: DaemonProcess, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("an-old-token\n")
    with Client(ClientConfig(url=daemon.url, token_file=str(token_file))) as c:
        with pytest.raises(ApiError) as err:
            c.list()
        assert err.value.status == 401
        token_file.write_text(daemon.token + "\n")  # the operator rotates the secret
        assert isinstance(c.list(), list)


def test_a_restarting_daemon_is_waited_for(tmp_path: Path) -> None:
    first = start_daemon(tmp_path / "first")
    port = int(first.url.rsplit(":", 1)[1])
    env = {"ZWMD_API_TOKEN": first.token}
    with Client(ClientConfig(url=first.url, token=first.token, retry_seconds=60)) as c:
        assert c.list() == []  # the daemon has answered this client
        first.stop()
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(start_daemon, tmp_path / "second", env=env, port=port)
            try:
                wid = _run(c, "print('after the restart')")  # refused until the second is up
                assert c.wait_terminal(wid, timeout=60).succeeded
            finally:
                second.result().stop()


def test_over_a_unix_socket_no_token_is_needed(tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    daemon = start_daemon(tmp_path / "zwmd", env={"ZWMD_API_SOCKET": str(sock)})
    try:
        with Client(ClientConfig.from_env({"ZWMD_API_SOCKET": str(sock)})) as c:
            wid = _run(c, "print('over the socket')")
            assert c.wait_terminal(wid, timeout=60).succeeded
            assert "over the socket" in c.logs(wid)
    finally:
        daemon.stop()


def test_a_build_that_needs_nothing_returns_the_requested_image(adapter: WorkloadManager) -> None:
    """ZenML calls build_and_push_image on every run; without a registry nothing is built.

    How fast that answer is over TCP is measured in bench/, not asserted here.
    """
    for n in range(3):
        image = adapter.build_and_push_image(
            workload_id=uuid.uuid4(),
            workload_type="snapshot",
            dockerfile="FROM python:3.11-slim\n",
            image_name=f"zenml-runner:cafe{n}",
        )
        assert image == f"zenml-runner:cafe{n}"


# -- the adapter waiting for a real build (local mode never builds: a scripted daemon) ----


def _scripted(answers: list[dict[str, object]]) -> tuple[WorkloadManager, list[str]]:
    """An adapter whose daemon answers POST /build, then each /wait, from ``answers``."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(202 if request.method == "POST" else 200, json=answers.pop(0))

    transport = httpx.MockTransport(handler)
    return WorkloadManager(Client(ClientConfig(url="http://zwmd.test"), transport=transport)), seen


def test_adapter_waits_for_a_build_and_returns_its_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zwmd.zenml.BUILD_POLL_SECONDS", 0.01)
    wid = str(uuid.uuid4())
    full = "registry.test/team/zenml-runner:abc"
    adapter, seen = _scripted(
        [
            {"id": wid, "state": "building", "kind": "builder"},
            {"id": wid, "state": "failed", "kind": "runner", "image": "old"},  # a resumed id
            {"id": wid, "state": "building", "kind": "builder"},
            {"id": wid, "state": "succeeded", "kind": "builder", "image": full},
        ]
    )
    image = adapter.build_and_push_image(
        workload_id=wid, workload_type="run", dockerfile="FROM x\n", image_name="zenml-runner:abc"
    )
    assert image == full
    assert seen == [f"POST /v1/workloads/{wid}/build"] + [f"GET /v1/workloads/{wid}/wait"] * 3


def test_adapter_reports_a_failed_build_with_its_reason() -> None:
    wid = str(uuid.uuid4())
    adapter, _ = _scripted(
        [
            {"id": wid, "state": "building", "kind": "builder"},
            {
                "id": wid,
                "state": "failed",
                "kind": "builder",
                "reason": "BuildFailed",
                "message": "kaniko: error pushing image: UNAUTHORIZED",
            },
        ]
    )
    with pytest.raises(WorkloadFailed) as err:
        adapter.build_and_push_image(
            workload_id=wid, workload_type="snapshot", dockerfile="FROM x\n", image_name="r:1"
        )
    assert "BuildFailed" in str(err.value)
    assert "UNAUTHORIZED" in str(err.value)
