"""Start ``zwmd serve --local`` as a subprocess for a test, the way a user would.

Used by ``tests/test_client.py`` and the real-ZenML-server tests in ``tests/zenml/``.
The daemon listens on a free loopback port, with a token and its own state directory,
and is ready once ``/readyz`` answers 200. Its output goes to a file that a failing
test shows.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DaemonProcess:
    """A running daemon: where it listens, its token, its output file."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    state_dir: Path
    log_path: Path
    socket: str | None = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client_env(self) -> dict[str, str]:
        """The variables a client (the CLI, the ZenML adapter) needs to reach it."""
        if self.socket:
            return {"ZWMD_API_SOCKET": self.socket}
        return {"ZWMD_URL": self.url, "ZWMD_API_TOKEN": self.token}

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (the daemon drains), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_daemon(
    workdir: Path,
    *,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
    port: int | None = None,
) -> DaemonProcess:
    """Start ``zwmd serve --local`` in ``workdir``; return once it is ready.

    ``command`` defaults to this interpreter's ``-m zwmd``; ``env`` is laid over a copy
    of the environment without any ``ZWMD_*`` or ``ZENML_*`` variable of the caller.
    With ``ZWMD_API_SOCKET`` in ``env`` the daemon listens on that socket instead;
    ``port`` (a free one by default) lets a restarted daemon take its predecessor's.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token = secrets.token_urlsafe(16)
    state_dir = workdir / "state"
    log_path = workdir / "zwmd.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    child_env.update(
        ZWMD_API_PORT=str(port),
        ZWMD_API_TOKEN=token,
        ZWMD_STATE_DIR=str(state_dir),
        PYTHONUNBUFFERED="1",
    )
    child_env.update(env or {})
    argv = [*list(command or [sys.executable, "-m", "zwmd"]), "serve", "--local"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=workdir, env=child_env, stdout=log, stderr=subprocess.STDOUT
        )
    sock = child_env.get("ZWMD_API_SOCKET")
    url = "http://zwmd" if sock else f"http://127.0.0.1:{port}"
    daemon = DaemonProcess(process, url, token, state_dir, log_path, sock)
    transport = httpx.HTTPTransport(uds=sock) if sock else None
    deadline = time.monotonic() + ready_timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"zwmd serve --local exited with {process.returncode}:\n{daemon.output()}"
            )
        try:
            with httpx.Client(transport=transport, timeout=2) as probe:
                if probe.get(f"{url}/readyz").status_code == 200:
                    return daemon
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError(
                f"zwmd serve --local not ready after {ready_timeout:g} s:\n{daemon.output()}"
            )
        time.sleep(0.1)
