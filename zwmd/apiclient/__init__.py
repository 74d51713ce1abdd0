"""The HTTP client of the zwmd daemon: used by the CLI's client verbs and the ZenML adapter.

Responsibility: turn each endpoint of the daemon's API (``/v1/workloads/...``) into one
method, with a timeout on every request, and turn every failure into one of two
exceptions a caller can act on: :class:`DaemonUnreachable` (nothing answered, or the
connection broke) and :class:`ApiError` (the daemon answered with an HTTP error and a
``detail``).

Design notes:

- This module runs inside the ZenML server process, so it imports nothing of the daemon
  (import-linter forbids it) and not even :mod:`zwmd.settings`: it reads its own
  environment variables (:meth:`ClientConfig.from_env`).
- Synchronous on purpose: its main caller, the ZenML server, calls the workload manager
  from worker threads. ``httpx.Client`` keeps a thread-safe connection pool, so one
  :class:`Client` is shared by all of them. Async code (tests) wraps calls in
  ``anyio.to_thread.run_sync``. Each endpoint is described once (:class:`_Call`), so an
  async twin would only need its own ``_do``.
- Waiting is long-polling: ``GET /wait?timeout=S`` holds the request until the workload
  is terminal or ``S`` passes. :meth:`Client.wait_terminal` chains such calls in short
  slices (:data:`WAIT_SLICE_SECONDS`) so that no single request outlives a proxy's idle
  timeout and every request keeps a bounded HTTP timeout.
- A token file is read at start and read again once when the daemon answers 401, so a
  rotated token is picked up without restarting the ZenML server.
- Passing trouble is retried for up to ``ZWMD_CLIENT_RETRY_SECONDS`` (30 s), with
  backoff and jitter, honouring ``Retry-After``: a 503 (the daemon could not reach the
  Kubernetes API, or is starting), a refused connection (a restarting daemon), and a
  connection that broke before the answer (uvicorn closes a connection after a 500), and
  an idempotent request that timed out while budget is left. Every
  request is idempotent by workload id except posting a message, which is retried only
  when it was surely not received (the connection was refused). A run request carries an
  ``Idempotency-Key`` (one per call, the same on each of its retries): reusing a workload
  id starts the next attempt, but a retry whose first try had already started a run,
  which may have finished meanwhile, gets that run back. A daemon that never answered
  this client is not waited for: "is it running?" is said at once.

Modules: :mod:`~zwmd.apiclient.config` (where the daemon is, timeouts, retry budget),
:mod:`~zwmd.apiclient.answers` (:class:`Workload` and the errors) and
:mod:`~zwmd.apiclient.client` (the endpoints and the retrying sender).
"""

from zwmd.apiclient.answers import (
    TERMINAL_STATES,
    ApiError,
    DaemonTimeout,
    DaemonUnreachable,
    Workload,
    ZwmdError,
)
from zwmd.apiclient.client import WAIT_MARGIN_SECONDS, WAIT_SLICE_SECONDS, Client, LogFormat
from zwmd.apiclient.config import DEFAULT_URL, ClientConfig

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATES",
    "WAIT_MARGIN_SECONDS",
    "WAIT_SLICE_SECONDS",
    "ApiError",
    "Client",
    "ClientConfig",
    "DaemonTimeout",
    "DaemonUnreachable",
    "LogFormat",
    "Workload",
    "ZwmdError",
]
