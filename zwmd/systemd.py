"""Talk to systemd's service manager: readiness, status, watchdog, stopping.

Responsibility: the ``sd_notify`` protocol without libsystemd. ``ready()``, ``status()``,
``stopping()`` and ``watchdog_ping()`` send one datagram each to ``$NOTIFY_SOCKET``;
``watchdog_interval()`` says how often to ping; ``run_watchdog(is_healthy)`` is a task for
the daemon's anyio task group that pings while the daemon is healthy.

Design notes:

- The protocol is one ``AF_UNIX`` datagram of newline-separated ``KEY=value`` lines sent
  to the socket named by ``$NOTIFY_SOCKET``: a filesystem path, or an abstract socket
  written with a leading ``@`` (sent as a leading NUL byte). Without the variable every
  call is a no-op that returns False, so the daemon calls these unconditionally.
- Sends never block the event loop: the socket is non-blocking and a full receive
  buffer drops the message with a warning (systemd reads promptly; a lost WATCHDOG=1
  is followed by another at the next interval).
- The watchdog interval is half of ``$WATCHDOG_USEC``, as systemd recommends, and only
  when ``$WATCHDOG_PID`` is unset or names this process: children started by the daemon
  inherit the environment and must not think the watchdog is theirs.
- ``run_watchdog`` pings only while ``is_healthy()`` is true. A daemon whose event loop
  is stuck cannot ping at all; one whose watches are stuck reports itself unhealthy, and
  systemd restarts it after ``WatchdogSec``. That is the point of the watchdog: it is
  not a heartbeat of the process but of the work.
- Values are sanitised: a newline inside ``STATUS=`` would start a new assignment.
- This module imports nothing of zwmd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping

import anyio

__all__ = [
    "notify",
    "notify_socket_address",
    "ready",
    "run_watchdog",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

log = logging.getLogger(__name__)


def notify_socket_address(env: Mapping[str, str] | None = None) -> str | bytes | None:
    """The address in ``$NOTIFY_SOCKET``: a path, abstract-socket bytes, or None."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract socket", value)
    return None


def _clean(value: str) -> str:
    return " ".join(value.split("\n"))


def notify(*assignments: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``KEY=value`` assignments in one datagram. True when it was sent.

    :param assignments: e.g. ``"READY=1"``, ``"STATUS=watching 3 workloads"``.
    :param env: the environment to read ``NOTIFY_SOCKET`` from (default: ``os.environ``).
    """
    address = notify_socket_address(env)
    if address is None or not assignments:
        return False
    message = "\n".join(_clean(a) for a in assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as exc:
        log.warning("sd_notify to %r failed: %s", os.fsdecode(address), exc)
        return False
    return True


def ready(status_text: str | None = None, *, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the daemon is ready (``Type=notify`` start-up ends here)."""
    extra = [f"STATUS={status_text}"] if status_text else []
    return notify("READY=1", *extra, env=env)


def status(text: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Set the one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}", env=env)


def stopping(status_text: str | None = None, *, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the daemon is shutting down."""
    extra = [f"STATUS={status_text}"] if status_text else []
    return notify("STOPPING=1", *extra, env=env)


def watchdog_ping(*, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd's watchdog the daemon is alive and well."""
    return notify("WATCHDOG=1", env=env)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None if disabled.

    None also when ``$WATCHDOG_PID`` names another process, or a value is malformed.
    """
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_PID=%r", pid)
            return None
    try:
        microseconds = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    if microseconds <= 0:
        return None
    return microseconds / 2_000_000


async def run_watchdog(
    is_healthy: Callable[[], bool],
    *,
    interval: float | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Ping the watchdog every ``interval`` seconds while ``is_healthy()`` is true.

    Returns at once when the watchdog is not enabled (no ``NOTIFY_SOCKET`` or no
    ``WATCHDOG_USEC`` for this process); otherwise runs until cancelled.

    :param is_healthy: cheap, non-blocking check of the daemon's health.
    :param interval: override of ``watchdog_interval(env)``.
    :param env: the environment to read (default: ``os.environ``).
    """
    if notify_socket_address(env) is None:
        return
    period = watchdog_interval(env) if interval is None else interval
    if period is None:
        return
    healthy_before = True
    while True:
        try:
            healthy = is_healthy()
        except Exception:
            log.exception("health check raised; withholding the watchdog ping")
            healthy = False
        if healthy:
            watchdog_ping(env=env)
        if healthy != healthy_before:
            if healthy:
                log.info("daemon healthy again: resuming systemd watchdog pings")
            else:
                log.warning("daemon unhealthy: withholding systemd watchdog pings")
        healthy_before = healthy
        await anyio.sleep(period)
