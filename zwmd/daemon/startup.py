"""What a start that fails, or is slow, tells the operator.

Design notes:

- A start-up failure is one line that names what to change, and exit code 2 (as for
  invalid settings): :class:`StartupFailed` carries that line from wherever the failure
  is found up to ``zwmd serve``'s ``main``, which prints it without a traceback.
- The failures found before the cluster is watched: no cluster configuration at all (no
  kubeconfig and not in a pod), a kubeconfig that cannot be read, a listener address in
  use or not bindable.
- An apiserver that does not answer is not a failure at once: it may be starting too
  (a sidecar and a new cluster), and the watches retry. Until the first list of Jobs
  and Pods arrives, :func:`report_slow_start` logs every ``every`` seconds what the
  daemon waits for, with the watches' reason; after ``ZWMD_STARTUP_TIMEOUT_SECONDS``
  (0: never) it gives up with :class:`StartupFailed`, so a daemon pointed at a dead
  server ends with a line that names the server, instead of waiting for ever unready.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

import anyio

__all__ = ["StartupFailed", "bind_failed", "no_cluster", "report_slow_start"]

log = logging.getLogger("zwmd")


class StartupFailed(Exception):
    """zwmd cannot start; the message is the one line that says what to change."""


def no_cluster(exc: Exception, kubeconfig: str | None) -> StartupFailed:
    """The cluster configuration could not be loaded (``kubeconfig``: the file tried)."""
    if kubeconfig:
        return StartupFailed(
            f"the kubeconfig {kubeconfig} cannot be used ({exc}): point KUBECONFIG at a valid one"
        )
    return StartupFailed(
        f"no Kubernetes cluster is configured (in-cluster: {exc}): set KUBECONFIG to a "
        "kubeconfig file, run zwmd in a pod with a service account, or run "
        "`zwmd serve --local` for an embedded cluster"
    )


def bind_failed(exc: OSError, address: str, variable: str) -> StartupFailed:
    """Listening on ``address`` (set by ``variable``) failed."""
    if exc.errno == errno.EADDRINUSE:
        fault = "is in use (another zwmd, or another program, listens there)"
    elif exc.errno == errno.EACCES:
        fault = "may not be bound by this user"
    else:
        fault = f"cannot be listened on ({exc.strerror or exc})"
    return StartupFailed(f"{address} {fault}: choose another with {variable}")


async def report_slow_start(
    server: str,
    reason: Callable[[], str],
    *,
    timeout: float,
    every: float = 10.0,
) -> None:
    """Log what the start waits for every ``every`` s; raise after ``timeout`` s (0: never).

    Runs until cancelled (once the first list has arrived). ``reason``: why the daemon is
    not ready now, in the readiness probe's words.
    """
    started = time.monotonic()
    while True:
        wait = every
        if timeout:
            wait = min(every, max(0.0, timeout - (time.monotonic() - started)))
        await anyio.sleep(wait)
        waited = time.monotonic() - started
        if timeout and waited >= timeout:
            raise StartupFailed(
                f"the Kubernetes API at {server} gave no list of Jobs and Pods in "
                f"{timeout:g}s ({reason()}): check that it is reachable from here and that "
                "the kubeconfig names the right server, or raise ZWMD_STARTUP_TIMEOUT_SECONDS"
            )
        log.info(
            "zwmd: waiting for the first list of Jobs and Pods from %s (%.0fs): %s",
            server,
            waited,
            reason(),
        )
