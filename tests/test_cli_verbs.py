"""The client verbs as a person runs them, against a real ``zwmd serve --local``.

Each test runs ``python -m zwmd`` as a subprocess with only the variables that reach the
daemon, and checks what it prints and its exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.daemon_process import DaemonProcess, start_daemon

PY = sys.executable
SLEEPER = "print('sleeping', flush=True); import time; time.sleep(300)"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = start_daemon(tmp_path_factory.mktemp("zwmd"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon that runs one workload at a time: the second one queues."""
    env = {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "1"}
    process = start_daemon(tmp_path_factory.mktemp("zwmd-one-slot"), env=env)
    yield process
    process.stop()


def _env(daemon: DaemonProcess, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env.update(daemon.client_env(), **extra)
    return env


def zwmd(
    daemon: DaemonProcess, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "zwmd", *argv],
        env=env or _env(daemon),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _submit(
    daemon: DaemonProcess, code: str, *, wait: bool = True
) -> tuple[str, subprocess.CompletedProcess[str]]:
    wid = str(uuid.uuid4())
    argv = ["submit", "--id", wid, "--image", "python:3.11-slim"]
    done = zwmd(daemon, *argv, *(["--wait"] if wait else []), "--", PY, "-c", code)
    return wid, done


def _shown(daemon: DaemonProcess, wid: str) -> dict[str, object]:
    done = zwmd(daemon, "show", wid)
    assert done.returncode == 0, done.stderr
    shown: dict[str, object] = json.loads(done.stdout)
    return shown


def _until_running(daemon: DaemonProcess, wid: str) -> None:
    """Return once ``wid`` runs (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + 60
    while _shown(daemon, wid)["state"] != "running":
        assert time.monotonic() < deadline, f"{wid} never ran"
        time.sleep(0.2)


def _occupy(daemon: DaemonProcess) -> str:
    """A workload that runs (for five minutes, unless cancelled) and holds a slot."""
    wid, done = _submit(daemon, SLEEPER, wait=False)
    assert done.returncode == 0, done.stderr
    _until_running(daemon, wid)
    return wid


def _stderr_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    """The stderr lines of ``proc`` up to the first one that holds ``text``."""
    assert proc.stderr is not None
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = proc.stderr.readline()
        assert line, f"stderr ended before {text!r}: {lines}"
        lines.append(line.rstrip("\n"))
    return lines


def test_help_describes_zwmd_and_every_option() -> None:
    done = subprocess.run([PY, "-m", "zwmd", "--help"], capture_output=True, text=True)
    assert "runs ZenML workloads as Kubernetes Jobs" in done.stdout
    assert "exit codes: 0" in done.stdout
    for verb, option in (("ls", "--state"), ("logs", "--follow"), ("ls", "--output")):
        text = subprocess.run(
            [PY, "-m", "zwmd", verb, "--help"], capture_output=True, text=True
        ).stdout
        line = next(line for line in text.splitlines() if option in line)
        assert len(line.split(option, 1)[1].strip()) > 5, text


def test_submit_wait_shows_progress_and_exit_codes(daemon: DaemonProcess) -> None:
    wid, done = _submit(daemon, "print('hello')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"workload {wid} succeeded")
    assert done.stderr.splitlines()[0] == f"submitted {wid}"
    assert "queued" in done.stderr or "starting" in done.stderr or "running" in done.stderr
    failed, done = _submit(daemon, "raise SystemExit(3)")
    assert done.returncode == 1
    assert done.stdout.startswith(f"workload {failed} failed")


def test_ls_is_a_table_with_short_ids_and_outputs(daemon: DaemonProcess) -> None:
    wid, _ = _submit(daemon, "print('listed')")
    done = zwmd(daemon, "ls")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "REASON", "IMAGE", "AGE", "DURATION"]
    row = next(line for line in lines if line.startswith(wid[:8]))
    assert row.split()[:3] == [wid[:8], "succeeded", "python:3.11-slim"]
    listed = json.loads(zwmd(daemon, "ls", "-o", "json").stdout)
    assert wid in [w["id"] for w in listed]
    assert wid in zwmd(daemon, "ls", "-o", "name").stdout.splitlines()
    assert wid in zwmd(daemon, "ls", "-o", "wide", "--state", "succeeded").stdout
    assert json.loads(zwmd(daemon, "show", wid[:8]).stdout)["id"] == wid
    assert wid in [w["id"] for w in yaml.safe_load(zwmd(daemon, "ls", "-o", "yaml").stdout)]
    shown = yaml.safe_load(zwmd(daemon, "show", wid[:8], "-o", "yaml").stdout)
    assert (shown["id"], shown["state"]) == (wid, "succeeded")


def test_ls_with_an_unknown_state_is_a_usage_error(daemon: DaemonProcess) -> None:
    done = zwmd(daemon, "ls", "--state", "bogus")
    assert done.returncode == 2
    assert "invalid choice: 'bogus'" in done.stderr
    assert "succeeded" in done.stderr


def test_id_prefixes_resolve_or_say_why_not(daemon: DaemonProcess) -> None:
    wid, _ = _submit(daemon, "print('by prefix')")
    done = zwmd(daemon, "logs", wid[:8])
    assert done.returncode == 0, done.stderr
    assert "by prefix" in done.stdout
    missing = zwmd(daemon, "logs", "zzzzzzzz")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "zwmd: no workload 'zzzzzzzz'"
    ids = [w["id"] for w in json.loads(zwmd(daemon, "ls", "-o", "json").stdout)]
    shared = next((a[:n] for a in ids for b in ids if a != b for n in (1,) if a[:n] == b[:n]), None)
    if shared is None:  # two ids always share a first hex digit after 17 of them
        for _ in range(17):
            _submit(daemon, "pass", wait=False)
        ids = [w["id"] for w in json.loads(zwmd(daemon, "ls", "-o", "json").stdout)]
        shared = next(a[:1] for a in ids for b in ids if a != b and a[0] == b[0])
    ambiguous = zwmd(daemon, "show", shared)
    assert ambiguous.returncode == 2
    assert f"id prefix {shared!r} is ambiguous" in ambiguous.stderr


def test_logs_follow_exits_with_the_outcome(daemon: DaemonProcess) -> None:
    failed, _ = _submit(daemon, "print('about to fail'); raise SystemExit(4)", wait=False)
    done = zwmd(daemon, "logs", "-f", failed)
    assert done.returncode == 1
    assert "about to fail" in done.stdout
    ok, _ = _submit(daemon, "print('fine')")
    assert zwmd(daemon, "logs", "-f", ok).returncode == 0


def test_cancel_says_what_it_did(daemon: DaemonProcess) -> None:
    wid, _ = _submit(daemon, "import time; time.sleep(300)", wait=False)
    done = zwmd(daemon, "cancel", wid)
    assert (done.returncode, done.stdout.strip()) == (0, f"cancelled {wid}")
    finished, _ = _submit(daemon, "pass")
    again = zwmd(daemon, "cancel", finished)
    assert again.stdout.strip() == f"{finished} already succeeded"


def test_ctrl_c_on_submit_wait_is_one_line(daemon: DaemonProcess) -> None:
    wid = str(uuid.uuid4())
    argv = [PY, "-m", "zwmd", "submit", "--id", wid, "--image", "x", "--wait"]
    proc = subprocess.Popen(
        [*argv, "--", PY, "-c", "import time; time.sleep(300)"],
        env=_env(daemon),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == f"submitted {wid}"  # it is waiting now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().endswith("zwmd: interrupted")
    zwmd(daemon, "cancel", wid)


def test_ctrl_c_on_logs_follow_is_one_line(daemon: DaemonProcess) -> None:
    wid, _ = _submit(daemon, SLEEPER, wait=False)
    _until_running(daemon, wid)
    proc = subprocess.Popen(
        [PY, "-m", "zwmd", "logs", "-f", wid],
        env=_env(daemon),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "sleeping" in proc.stdout.readline()  # it is following now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.splitlines() == ["zwmd: interrupted"]
    zwmd(daemon, "cancel", wid)


def test_submit_wait_says_where_a_queued_run_stands(one_slot: DaemonProcess) -> None:
    running = _occupy(one_slot)
    ahead, _ = _submit(one_slot, "print('ahead')", wait=False)
    wid = str(uuid.uuid4())
    argv = [PY, "-m", "zwmd", "submit", "--id", wid, "--image", "x", "--wait"]
    proc = subprocess.Popen(
        [*argv, "--", PY, "-c", "print('my turn')"],
        env=_env(one_slot),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        progress = _stderr_until(proc, "queued")
        assert progress == [f"submitted {wid}", "queued: 1 ahead of it, 1 of 1 running"]
        shown = _shown(one_slot, wid)
        assert (shown["queue_position"], shown["active_runs"]) == (2, 1)
        assert shown["max_concurrent_runs"] == 1
        zwmd(one_slot, "cancel", ahead)
        assert _stderr_until(proc, "queued") == ["queued: next to start, 1 of 1 running"]
        zwmd(one_slot, "cancel", running)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.startswith(f"workload {wid} succeeded")
    assert "queue_position" not in _shown(one_slot, wid)
    assert "my turn" in zwmd(one_slot, "logs", wid).stdout


def test_logs_of_a_queued_run_say_so(one_slot: DaemonProcess) -> None:
    running = _occupy(one_slot)
    queued, _ = _submit(one_slot, "print('later')", wait=False)
    done = zwmd(one_slot, "logs", queued)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"zwmd: workload {queued} is queued: next to start, 1 of 1 running"
    ]
    assert "later" not in done.stdout
    zwmd(one_slot, "cancel", queued)
    zwmd(one_slot, "cancel", running)


def test_submit_needs_no_image_in_local_mode(daemon: DaemonProcess) -> None:
    wid = str(uuid.uuid4())
    done = zwmd(daemon, "submit", "--id", wid, "--wait", "--", PY, "-c", "print('no image')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"workload {wid} succeeded")
    assert _shown(daemon, wid)["image"] == "local"
    assert "no image" in zwmd(daemon, "logs", wid).stdout


def test_the_client_reaches_the_daemon_by_zwmd_api_port(daemon: DaemonProcess) -> None:
    port = str(urlsplit(daemon.url).port)
    env = _env(daemon, ZWMD_API_PORT=port)
    del env["ZWMD_URL"]
    done = zwmd(daemon, "ls", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ID")


def test_completion_scripts_name_the_verbs_and_options(tmp_path: Path) -> None:
    for shell in ("bash", "zsh"):
        done = subprocess.run(
            [PY, "-m", "zwmd", "completion", shell], capture_output=True, text=True
        )
        assert done.returncode == 0
        assert "complete -F _zwmd_complete zwmd" in done.stdout
    script = tmp_path / "zwmd.bash"
    script.write_text(
        subprocess.run(
            [PY, "-m", "zwmd", "completion", "bash"], capture_output=True, text=True
        ).stdout
    )
    probe = (
        f"source {script}; COMP_WORDS=(zwmd ls --o); COMP_CWORD=2; _zwmd_complete;"
        ' echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == ["--output"]


def test_doctor_local_checks_the_local_daemons_cluster(daemon: DaemonProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env["ZWMD_STATE_DIR"] = str(daemon.state_dir)
    done = subprocess.run(
        [PY, "-m", "zwmd", "doctor", "--local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "local cluster" not in done.stdout, done.stdout
    assert "Kubernetes API" in done.stdout or "kubernetes" in done.stdout.lower()
