"""A start that cannot work ends with one line naming what to change, and exit code 2.

``zwmd serve`` runs as a subprocess with an environment of its own, as an operator runs
it: no cluster configured, a listener address in use (also in local mode, where the
running instance's kubeconfig must survive the second one), an apiserver that never
answers (the start says what it waits for, then gives up after
``ZWMD_STARTUP_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_process import free_port, start_daemon

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(
        {
            f"{K}NAMESPACE": "runners",
            f"{K}SERVICE_ACCOUNT": "runner",
            "ZWMD_STATE_DIR": str(tmp_path / "state"),
            "ZWMD_API_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def serve(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zwmd", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def dead_kubeconfig(path: Path) -> Path:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


def test_no_cluster_configured_is_one_line_that_says_what_to_set(
    environment: dict[str, str],
) -> None:
    done = serve(environment)
    assert done.returncode == 2
    line = last_line(done)
    assert line.startswith("zwmd cannot start: no Kubernetes cluster is configured")
    assert "KUBECONFIG" in line
    assert "zwmd serve --local" in line


def test_an_api_port_in_use_is_one_line_naming_the_variable(
    environment: dict[str, str], tmp_path: Path
) -> None:
    environment["KUBECONFIG"] = str(dead_kubeconfig(tmp_path / "kubeconfig"))
    port = int(environment["ZWMD_API_PORT"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = serve(environment)
    assert done.returncode == 2
    assert last_line(done) == (
        f"zwmd cannot start: 127.0.0.1:{port} is in use (another zwmd, or another program, "
        "listens there): choose another with ZWMD_API_PORT"
    )


def test_a_second_local_daemon_on_the_same_port_leaves_the_first_one_alone(
    environment: dict[str, str], tmp_path: Path
) -> None:
    first = start_daemon(tmp_path / "first")
    try:
        kubeconfig = first.state_dir / "localkube.kubeconfig"
        before = kubeconfig.read_text()
        environment["ZWMD_API_PORT"] = first.url.rsplit(":", 1)[1]
        environment["ZWMD_STATE_DIR"] = str(first.state_dir)
        done = serve(environment, "--local")
        assert done.returncode == 2
        assert "is in use" in last_line(done)
        assert "ZWMD_API_PORT" in last_line(done)
        assert kubeconfig.read_text() == before
        assert first.process.poll() is None
    finally:
        first.stop()


def test_an_apiserver_that_never_answers_is_waited_for_aloud_then_given_up(
    environment: dict[str, str], tmp_path: Path
) -> None:
    environment["KUBECONFIG"] = str(dead_kubeconfig(tmp_path / "kubeconfig"))
    environment["ZWMD_STARTUP_TIMEOUT_SECONDS"] = "12"
    done = serve(environment)
    assert done.returncode == 2
    server = "http://127.0.0.1:"
    waiting = [line for line in done.stderr.splitlines() if "waiting for the first list" in line]
    assert waiting, done.stderr
    assert server in waiting[0]
    assert "unreachable" in waiting[0]
    line = last_line(done)
    assert line.startswith(f"zwmd cannot start: the Kubernetes API at {server}")
    assert "in 12s" in line
    assert "ZWMD_STARTUP_TIMEOUT_SECONDS" in line
