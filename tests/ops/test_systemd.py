"""sd_notify over a real AF_UNIX datagram socket, and the watchdog interval rules."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from zwmd import systemd

pytestmark = pytest.mark.anyio


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in a short path (sun_path is limited to 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="zwmd-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)
        os.rmdir(directory)


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return messages


def test_ready_status_watchdog_stopping(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    assert systemd.ready("watching 0 workloads")
    assert sock.recv(4096) == b"READY=1\nSTATUS=watching 0 workloads"
    assert systemd.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"
    assert systemd.watchdog_ping()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert systemd.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"zwmd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
        assert systemd.ready()
        assert sock.recv(4096) == b"READY=1"


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.ready()
    assert not systemd.watchdog_ping()
    assert systemd.notify_socket_address() is None
    assert systemd.notify_socket_address({"NOTIFY_SOCKET": "relative/path"}) is None


def test_unreachable_socket_does_not_raise(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    assert not systemd.notify("READY=1", env=env)


def test_watchdog_interval() -> None:
    me = str(os.getpid())
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


async def test_run_watchdog_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    # WATCHDOG_USEC=100 ms: a ping every 50 ms.
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    healthy = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: systemd.run_watchdog(lambda: healthy, env=env))
        await anyio.sleep(0.3)
        healthy_pings = receive_all(sock)
        healthy = False
        await anyio.sleep(0.06)  # let a ping already scheduled go out
        receive_all(sock)
        await anyio.sleep(0.3)
        unhealthy_pings = receive_all(sock)
        healthy = True
        await anyio.sleep(0.2)
        recovered_pings = receive_all(sock)
        tg.cancel_scope.cancel()

    assert set(healthy_pings) == {"WATCHDOG=1"}
    assert 3 <= len(healthy_pings) <= 8
    assert unhealthy_pings == []
    assert len(recovered_pings) >= 2


async def test_run_watchdog_returns_when_disabled(
    notify_socket: tuple[socket.socket, str],
) -> None:
    _, path = notify_socket
    with anyio.fail_after(1):
        await systemd.run_watchdog(lambda: True, env={"NOTIFY_SOCKET": path})
        await systemd.run_watchdog(lambda: True, env={"WATCHDOG_USEC": "100000"})
        await systemd.run_watchdog(
            lambda: True,
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"},
        )


async def test_run_watchdog_survives_a_raising_health_check(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket

    def broken() -> bool:
        raise RuntimeError("boom")

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: systemd.run_watchdog(broken, interval=0.02, env={"NOTIFY_SOCKET": path})
        )
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert receive_all(sock) == []
