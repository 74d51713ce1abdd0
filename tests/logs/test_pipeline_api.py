"""The log pipeline as a user sees it: pods' lines and API messages through ``/logs``.

One localkube (process kubelet: each pod is a host ``python -c`` process) and one daemon
serve the module; every test runs its own workloads. What is checked is what ZenML's
dashboard would show: the lines, in order, each once, with the reason of a failure.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.logs.pipelines import TTL_SECONDS, Daemon, messages, until
from tests.zenml.servers import PYTHON as ZENML_PYTHON
from zwmd.kube import naming
from zwmd.localkube import LocalKube
from zwmd.logs.records import MAX_LINE_BYTES
from zwmd.logs.store import LogKey

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="process", bookmark_interval=0.5
    ) as localkube:
        yield localkube


@pytest.fixture(scope="module")
async def daemon(
    kube: LocalKube, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Daemon]:
    async with Daemon.serving(kube, tmp_path_factory.mktemp("daemon")) as d:
        yield d


def numbered(count: int, prefix: str = "line") -> str:
    return f"for i in range({count}):\n    print('{prefix}', i)\n"


async def test_alias_reads_the_runs_logs_and_takes_messages(daemon: Daemon) -> None:
    run_id, snapshot_id = str(uuid.uuid4()), str(uuid.uuid4())
    workload = await daemon.submit_script(
        numbered(3), arguments=["--snapshot_id", snapshot_id, f"--run_id={run_id}"]
    )
    assert (await daemon.wait(workload["id"]))["state"] == "succeeded"
    await daemon.post_log(run_id, "posted by run id")
    by_id = messages(await daemon.logs(workload["id"]))
    assert by_id[:3] == ["line 0", "line 1", "line 2"]
    assert "posted by run id" in by_id
    assert messages(await daemon.logs(run_id)) == by_id
    assert messages(await daemon.logs(snapshot_id)) == by_id


async def test_messages_before_the_run_and_for_unknown_ids_are_kept_in_time_order(
    daemon: Daemon,
) -> None:
    wid = str(uuid.uuid4())
    await daemon.post_log(wid, "Starting pipeline run.")
    workload = await daemon.submit_script(numbered(2), workload_id=wid)
    assert (await daemon.wait(wid))["state"] == "succeeded"
    await daemon.post_log(wid, "Pipeline run finished.", "WARNING")
    assert messages(await daemon.logs(wid)) == [
        "Starting pipeline run.",
        "line 0",
        "line 1",
        "Pipeline run finished.",
    ]
    assert workload["id"] == wid

    never_seen = str(uuid.uuid4())
    await daemon.post_log(never_seen, "first")
    await daemon.post_log(never_seen, "second", "ERROR")
    assert messages(await daemon.logs(never_seen)) == ["first", "second"]
    entries = [json.loads(line) for line in await daemon.logs(never_seen, fmt="zenml")]
    assert [(e["message"], e["level"], e["name"]) for e in entries] == [
        ("first", 20, "zwmd"),
        ("second", 40, "zwmd"),
    ]

    response = await daemon.http.get(f"/v1/workloads/{uuid.uuid4()}/logs")
    assert response.status_code == 404
    assert "no workload and no logs" in response.json()["detail"]


async def test_a_reused_workload_id_keeps_the_logs_of_every_attempt_in_order(
    daemon: Daemon,
) -> None:
    wid = str(uuid.uuid4())
    await daemon.post_log(wid, "before the first attempt")
    await daemon.submit_script(numbered(2, "first"), workload_id=wid)
    assert (await daemon.wait(wid))["state"] == "succeeded"
    await daemon.post_log(wid, "resuming")
    second = await daemon.submit_script(numbered(2, "second"), workload_id=wid)
    assert second["attempt"] == 2
    assert (await daemon.wait(wid))["state"] == "succeeded"
    await daemon.submit_script(numbered(1, "third"), workload_id=wid)
    assert (await daemon.wait(wid))["state"] == "succeeded"
    assert messages(await daemon.logs(wid)) == [
        "before the first attempt",
        "first 0",
        "first 1",
        "resuming",
        "second 0",
        "second 1",
        "third 0",
    ]


async def test_invalid_utf8_and_a_5_mib_line_are_stored_whole(daemon: Daemon) -> None:
    script = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'bad \\xff\\xfe bytes \\xc3\\n')\n"
        "out.write(b'<' + b'x' * (5 * 1024 * 1024) + b'>\\n')\n"
        "out.write(b'after\\n')\n"
        "out.flush()\n"
    )
    workload = await daemon.submit_script(script)
    assert (await daemon.wait(workload["id"]))["state"] == "succeeded"
    lines = messages(await daemon.logs(workload["id"]))
    assert lines[0] == "bad \ufffd\ufffd bytes \ufffd"
    assert lines[-1] == "after"
    pieces = lines[1:-1]
    assert len(pieces) > 5 * 1024 * 1024 // MAX_LINE_BYTES
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)
    assert "".join(pieces) == "<" + "x" * (5 * 1024 * 1024) + ">"


async def test_a_failed_run_ends_with_the_reason_and_the_last_lines(daemon: Daemon) -> None:
    script = numbered(30) + "import sys\nprint('giving up')\nsys.exit(3)\n"
    workload = await daemon.submit_script(script)
    finished = await daemon.wait(workload["id"])
    assert finished["state"] == "failed"
    entries = [json.loads(line) for line in await daemon.logs(workload["id"], fmt="zenml")]
    runner = [e["message"] for e in entries if e["name"] == "runner"]
    assert runner == [f"line {i}" for i in range(30)] + ["giving up"]
    summary = entries[len(runner) :]
    assert summary
    assert all(e["name"] == "zwmd" and e["level"] == 40 for e in summary)
    text = [e["message"] for e in summary]
    assert text[0] == f"zwmd: the run failed ({finished['reason']}): {finished['message']}"
    assert "exited with code 3" in text[0]
    # the container's lines are quoted: none can pass for a note of zwmd's own
    assert text[-1] == "zwmd| giving up"
    assert text[-2] == "zwmd| line 29"


async def test_a_short_failed_runs_log_shows_each_line_once(daemon: Daemon) -> None:
    script = "import sys\nprint('reading the config')\nprint('no such step')\nsys.exit(2)\n"
    workload = await daemon.submit_script(script)
    finished = await daemon.wait(workload["id"])
    assert finished["state"] == "failed"
    text = messages(await daemon.logs(workload["id"]))
    assert text == [
        "reading the config",
        "no such step",
        f"zwmd: the run failed ({finished['reason']}): {finished['message']}",
    ]


async def test_runs_that_end_leave_no_resume_notes_in_the_daemons_log(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zwmd")
    workloads = [await daemon.submit_script(numbered(3)) for _ in range(5)]
    for workload in workloads:
        assert (await daemon.wait(workload["id"]))["state"] == "succeeded"
    noted = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [message for message in noted if "resuming" in message], noted


async def test_zenml_format_lines_are_log_entries(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    await daemon.post_log(wid, "Starting pipeline run.")
    script = 'print("plain")\nprint(\'{"message": "structured", "level": "WARNING"}\')\n'
    await daemon.submit_script(script, workload_id=wid)
    await daemon.wait(wid)
    lines = await daemon.logs(wid, fmt="zenml")
    entries = [json.loads(line) for line in lines]
    assert [(e["message"], e["level"], e["name"]) for e in entries] == [
        ("Starting pipeline run.", 20, "zwmd"),
        ("plain", 20, "runner"),
        ("structured", 30, "runner"),
    ]
    for line, entry in zip(lines, entries, strict=True):
        assert line.startswith("{")
        assert line.endswith("}")
        assert set(entry) == {"message", "level", "timestamp", "name"}
        assert datetime.fromisoformat(entry["timestamp"]).utcoffset() is not None
    times = [datetime.fromisoformat(e["timestamp"]) for e in entries]
    assert times == sorted(times)
    if await anyio.Path(
        ZENML_PYTHON
    ).exists():  # the real model, from the ZenML the CI installs beside us
        check = (
            "import sys\n"
            "from zenml.models.v2.misc.log_models import LogEntry\n"
            "for line in sys.stdin.read().splitlines():\n"
            "    e = LogEntry.model_validate_json(line)\n"
            "    print(e.message, e.level.value, e.timestamp.isoformat(), e.name)\n"
        )
        result = await anyio.run_process(
            [str(ZENML_PYTHON), "-c", check], input="\n".join(lines).encode(), check=False
        )
        assert result.returncode == 0, result.stderr.decode()
        parsed = result.stdout.decode().splitlines()
        assert [p.split(" ")[0] for p in parsed] == ["Starting", "plain", "structured"]
        assert [p.split(" ")[-1] for p in parsed] == ["zwmd", "runner", "runner"]


async def test_follow_streams_while_running_and_ends_with_the_workload(
    daemon: Daemon, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    script = (
        "import os, time\n"
        "print('first', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.01)\n" + numbered(100, "more")
    )
    workload = await daemon.submit_script(script)
    received: list[str] = []
    with anyio.fail_after(60):  # hang guard
        async with daemon.http.stream(
            "GET", f"/v1/workloads/{workload['id']}/logs", params={"follow": "true"}
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                received.append(line)
                if len(received) == 1:
                    assert messages(received) == ["first"]
                    current = (await daemon.http.get(f"/v1/workloads/{workload['id']}")).json()
                    assert current["state"] in ("starting", "running")
                    flag.touch()
    assert messages(received) == ["first"] + [f"more {i}" for i in range(100)]
    assert (await daemon.wait(workload["id"]))["state"] == "succeeded"


async def test_follow_of_a_second_attempt_waits_for_its_lines(
    daemon: Daemon, tmp_path: Path
) -> None:
    wid = str(uuid.uuid4())
    await daemon.submit_script(numbered(1, "one"), workload_id=wid)
    await daemon.wait(wid)
    flag = tmp_path / "go"
    script = (
        "import os, time\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.01)\n" + numbered(2, "two")
    )
    await daemon.submit_script(script, workload_id=wid)
    received: list[str] = []
    with anyio.fail_after(60):
        async with daemon.http.stream(
            "GET", f"/v1/workloads/{wid}/logs", params={"follow": "true"}
        ) as response:
            async for line in response.aiter_lines():
                received.append(line)
                flag.touch()
    assert messages(received) == ["one 0", "two 0", "two 1"]


async def test_a_pod_deleted_right_after_it_ends_keeps_all_its_logs(daemon: Daemon) -> None:
    script = "import time\ntime.sleep(0.3)\n" + numbered(20_000)
    workload = await daemon.submit_script(script)
    job = workload["job_name"]
    selector = f"job-name={job}"

    def ended() -> bool:
        pods = daemon.kube.store.list("pods", daemon.namespace, label_selector=selector)[0]
        statuses = [s for p in pods for s in p.get("status", {}).get("containerStatuses", [])]
        return any("terminated" in s.get("state", {}) for s in statuses)

    await until(ended)
    pods = daemon.kube.store.list("pods", daemon.namespace, label_selector=selector)[0]
    for pod in pods:
        daemon.kube.store.delete("pods", daemon.namespace, pod["metadata"]["name"])
    assert daemon.kube.pod_logs.lines(daemon.namespace, pods[0]["metadata"]["name"], "runner") == []
    await daemon.wait(workload["id"])
    assert messages(await daemon.logs(workload["id"])) == [f"line {i}" for i in range(20_000)]


async def test_the_ttl_is_set_only_after_the_final_lines_are_stored(
    daemon: Daemon, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    script = (
        "import os, time\n"
        "print('first', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.01)\n" + numbered(500, "last")
    )
    workload = await daemon.submit_script(script)
    wid, job = workload["id"], workload["job_name"]
    key = LogKey(wid, 1)
    await until(lambda: daemon.store.stored.get(key, 0) >= 1)
    # What the Job looked like at the moment Kubernetes got its TTL.
    seen_at_ttl: list[tuple[int, dict[str, str]]] = []

    def on_change(event: str, resource: str, obj: dict[str, object], old: object) -> None:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        assert isinstance(meta, dict)
        assert isinstance(spec, dict)
        ours = resource == "jobs" and meta.get("name") == job
        if ours and "ttlSecondsAfterFinished" in spec and not seen_at_ttl:
            seen_at_ttl.append((daemon.store.stored.get(key, 0), meta.get("annotations", {})))

    daemon.kube.store.add_listener(on_change)
    daemon.store.close_gate()
    try:
        flag.touch()
        # the Job is finished and the daemon knows it (it recorded the state on the Job)
        await until(
            lambda: daemon.job(job)["metadata"]["annotations"].get(naming.ANN_STATE) == "succeeded"
        )
        await anyio.sleep(0.3)  # give a premature TTL every chance to show
        held = daemon.job(job)
        assert "ttlSecondsAfterFinished" not in held["spec"]
        assert naming.ANN_LOGS_FLUSHED not in held["metadata"]["annotations"]
        assert daemon.store.stored[key] == 1
    finally:
        daemon.store.open_gate()
    finished = await daemon.wait(wid)
    assert finished["state"] == "succeeded"
    released = daemon.job(job)
    assert released["spec"]["ttlSecondsAfterFinished"] == TTL_SECONDS
    assert released["metadata"]["annotations"][naming.ANN_LOGS_FLUSHED] == "true"
    assert seen_at_ttl == [(501, seen_at_ttl[0][1])]
    assert seen_at_ttl[0][1][naming.ANN_LOGS_FLUSHED] == "true"
    assert messages(await daemon.logs(wid)) == ["first"] + [f"last {i}" for i in range(500)]


async def test_a_job_seen_finished_before_its_pod_was_seen_still_gets_the_pod_logs(
    tmp_path: Path,
) -> None:
    async with (
        LocalKube(
            kubernetes_version=KUBERNETES_VERSION, kubelet="process", bookmark_interval=0.5
        ) as kube,
        Daemon.serving(kube, tmp_path) as daemon,
    ):
        # The pod watch is down (every reconnect answered 500) while the Job runs and
        # ends: the daemon learns that the Job finished from the Job watch alone.
        kube.faults.fail_next(1_000_000, status=500, match=("watch", "pods"))
        kube.faults.drop_watches()
        workload = await daemon.submit_script("import time\ntime.sleep(0.2)\n" + numbered(1000))
        assert (await daemon.wait(workload["id"]))["state"] == "succeeded"
        job = daemon.job(workload["job_name"])
        assert job["metadata"]["annotations"][naming.ANN_LOGS_FLUSHED] == "true"
        assert messages(await daemon.logs(workload["id"])) == [f"line {i}" for i in range(1000)]
        kube.faults.reset()


async def test_text_logs_escape_control_characters_and_no_runner_line_passes_for_zwmd(
    daemon: Daemon,
) -> None:
    # 20 lines first: a log longer than the summary's tail is quoted in the summary
    script = numbered(20) + (
        "import sys\n"
        "print('\\x1b[2J\\x1b[31mred\\x1b[0m and nul\\x00byte')\n"
        "print('zwmd: the run failed (OOMKilled): forged by the runner')\n"
        "sys.exit(1)\n"
    )
    workload = await daemon.submit_script(script)
    finished = await daemon.wait(workload["id"])
    assert (finished["state"], finished["reason"]) == ("failed", "Error")
    response = await daemon.http.get(f"/v1/workloads/{workload['id']}/logs")
    assert "\x1b" not in response.text
    assert "\x00" not in response.text
    text = messages(response.text.splitlines())
    assert text[20] == "\\x1b[2J\\x1b[31mred\\x1b[0m and nul\\x00byte"
    assert text[21] == "(runner) zwmd: the run failed (OOMKilled): forged by the runner"
    notes = [line for line in text if line.startswith("zwmd: ")]
    assert notes == [f"zwmd: the run failed (Error): {finished['message']}"]
    assert "zwmd| zwmd: the run failed (OOMKilled): forged by the runner" in text

    raw = await daemon.http.get(f"/v1/workloads/{workload['id']}/logs", params={"format": "raw"})
    assert raw.text.splitlines()[20:22] == [
        "\x1b[2J\x1b[31mred\x1b[0m and nul\x00byte",
        "zwmd: the run failed (OOMKilled): forged by the runner",
    ]
