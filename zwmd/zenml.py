"""The ZenML adapter: ``zwmd.zenml.WorkloadManager``, loaded by a ZenML workspace server.

Responsibility: implement ZenML's ``WorkloadManagerInterface`` (five methods, called
with keyword arguments from the server's worker threads, on one instance created with no
arguments at server start) by calling the zwmd daemon through :mod:`zwmd.apiclient`.
Set ``ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE=zwmd.zenml.WorkloadManager``
and ``ZWMD_URL`` (or ``ZWMD_API_SOCKET``) plus ``ZWMD_API_TOKEN``/``ZWMD_API_TOKEN_FILE``.

Design notes:

- zenml is optional (the ``zwmd[zenml]`` extra): the class subclasses ZenML's interface
  when zenml is importable (the server checks the class) and is a plain class otherwise,
  so the daemon and its tests never need zenml.
- Construction never fails: a ZenML server treats an exception there as a crash at
  start. The HTTP client is created on first use, under a lock, and then shared by all
  threads (``httpx.Client`` is thread-safe).
- Every failure says what happened. An unreachable daemon raises "cannot reach zwmd at
  ..."; a runner or build that did not succeed raises :class:`WorkloadFailed` with the
  daemon's reason and message. ZenML logs that exception and marks the run "Failed to
  start run.", so the reason lands in the server log.
- The daemon owns deadlines: ``timeout_in_seconds`` becomes the Job's deadline and the
  adapter waits until the workload is terminal, in bounded long-poll slices. A queued
  workload is therefore not failed by the adapter for waiting its turn.
- Mode 3 of the runner images ("reuse the snapshot's image"): the adapter runs inside
  the server, so it reads the snapshot (or run) named by ``workload_id`` from the
  server's own store and sends the images of its build as ``reuse_images``
  (``{image key: image}``, e.g. ``{"orchestrator": "registry/app:tag"}``); the daemon
  picks one. Outside a server, or when the store cannot tell, it sends none.
- ``log`` drops (with a warning) a message the daemon refuses for its size or its
  budget: a status line is not worth failing a run for.
- ``get_logs`` is called on every dashboard request: one plain GET in ZenML's
  ``LogEntry`` line format. When the daemon cannot be asked, the dashboard gets one
  error line saying why rather than an HTTP 500.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from zwmd.apiclient import ApiError, Client, ClientConfig, Workload, ZwmdError

if TYPE_CHECKING:
    _Interface = object
else:
    try:
        from zenml.zen_server.pipeline_execution.workload_manager_interface import (
            WorkloadManagerInterface as _Interface,
        )
    except ImportError:  # zenml is an optional extra
        _Interface = object

logger = logging.getLogger(__name__)

BUILD_POLL_SECONDS = 2.0
BUILD_WAIT_MARGIN_SECONDS = 120
BUILD_WAIT_MAX_SECONDS = 4 * 3600
LEVEL_ERROR = 40


class WorkloadFailed(RuntimeError):
    """A runner or builder workload ended without success; the message says why."""

    def __init__(self, what: str, workload: Workload) -> None:
        self.workload = workload
        super().__init__(f"zwmd: {what} {workload.describe()}")


class WorkloadManager(_Interface):
    """ZenML's workload manager, backed by the zwmd daemon."""

    def __init__(self, client: Client | None = None) -> None:
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The shared HTTP client, created from the environment on first use."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(ClientConfig.from_env())
                client = self._client
        return client

    # -- ZenML's interface -------------------------------------------------------------

    def build_and_push_image(
        self,
        workload_id: object,
        workload_type: object = None,
        dockerfile: str = "",
        image_name: str = "",
        sync: bool = True,
        timeout_in_seconds: int = 0,
    ) -> str:
        """Ask zwmd for the runner image; return its full name.

        Returns at once when the daemon needs no build (a pre-built image, an existing
        tag, the snapshot's own image); otherwise, with ``sync``, waits for the build.
        """
        kind = _workload_type(workload_type)
        reuse = self.candidate_images(workload_id, kind)
        workload = self.client.build(
            workload_id,
            dockerfile=dockerfile,
            image_name=image_name,
            workload_type=kind,
            timeout_seconds=int(timeout_in_seconds or 0),
            reuse_images=reuse,
        )
        if workload.image and workload.state not in ("failed", "cancelled"):
            return workload.image
        if workload.terminal and not workload.image:
            raise WorkloadFailed("image build for", workload)
        if not sync:
            return workload.image or image_name
        workload = self._wait_for_build(workload_id, int(timeout_in_seconds or 0))
        if workload.image and workload.state not in ("failed", "cancelled"):
            return workload.image
        raise WorkloadFailed("image build for", workload)

    def _wait_for_build(self, workload_id: object, timeout_seconds: int) -> Workload:
        """Poll until the build has an image or ended.

        An id ZenML reuses (a resumed run) may still name the previous attempt's runner,
        which the daemon may answer for: such answers are not the build's, so they are
        skipped until the build answers or the wait runs out.
        """
        limit = timeout_seconds + BUILD_WAIT_MARGIN_SECONDS if timeout_seconds else 0
        limit = limit or BUILD_WAIT_MAX_SECONDS
        deadline = time.monotonic() + limit
        while True:
            workload = self.client.wait(workload_id, BUILD_POLL_SECONDS)
            is_runner = workload.kind == "runner"
            if not is_runner and (workload.image or workload.terminal):
                return workload
            if time.monotonic() > deadline:
                raise WorkloadFailed(f"no image after {limit} s from the build of", workload)
            if is_runner and workload.terminal:
                time.sleep(BUILD_POLL_SECONDS)

    def log(self, workload_id: object, message: str) -> None:
        """Add a message to the workload's log stream (it may have no Job yet).

        A message the daemon refuses for its size or for the budget of ids with no run
        (413, 429) is dropped with a warning: a status line must not fail the run.
        """
        try:
            self.client.log(workload_id, message, "INFO")
        except ApiError as exc:
            if exc.status not in (413, 429):
                raise
            logger.warning("zwmd: message for workload %s dropped: %s", workload_id, exc)

    def run(
        self,
        workload_id: object,
        image: str,
        command: Sequence[str],
        arguments: Sequence[str],
        environment: Mapping[str, str] | None = None,
        sync: bool = True,
        timeout_in_seconds: int = 0,
    ) -> None:
        """Start the runner; with ``sync`` wait until it ends and raise unless it succeeded."""
        workload = self.client.run(
            workload_id,
            image=image,
            command=command,
            arguments=arguments,
            environment=environment or {},
            timeout_seconds=int(timeout_in_seconds or 0),
        )
        if sync and not workload.terminal:
            workload = self.client.wait_terminal(workload_id)
        if workload.terminal and not workload.succeeded:
            raise WorkloadFailed("runner", workload)

    def get_logs(self, workload_id: object) -> str:
        """All log lines of the workload (or of the run/snapshot aliased to it), as
        ZenML ``LogEntry`` JSON, one per line."""
        try:
            return self.client.logs(workload_id, "zenml")
        except ApiError as exc:
            if exc.status == 404:
                return ""
            return _error_line(str(exc))
        except ZwmdError as exc:
            return _error_line(str(exc))

    def delete_workload(self, workload_id: object) -> None:
        """Cancel the workload and let the daemon clean up; unknown ids are no error."""
        try:
            self.client.cancel(workload_id)
        except ApiError as exc:
            if exc.status != 404:
                raise

    # -- mode 3: the snapshot's own images ---------------------------------------------

    def candidate_images(self, workload_id: object, workload_type: str | None) -> dict[str, str]:
        """The images of the build behind this snapshot or run, by image key.

        Read from the ZenML server's store; empty when not inside a server or when the
        store has no build for the id. Never raises: the daemon decides whether it
        needs these images and says so when they are missing.
        """
        try:
            build = _build_of(workload_id, workload_type)
        except Exception as exc:
            logger.warning("zwmd: cannot read the build of %s: %s", workload_id, exc)
            return {}
        if build is None:
            return {}
        images: Mapping[str, Any] = getattr(build, "images", None) or {}
        found: dict[str, str] = {}
        for key, item in images.items():
            image = getattr(item, "image", None)
            if isinstance(image, str) and image:
                found[str(key)] = image
        return found


def _workload_type(value: object) -> str | None:
    """ZenML passes a ``WorkloadType`` StrEnum (or nothing, on older servers)."""
    if value is None:
        return None
    text = str(getattr(value, "value", value))
    return text or None


@functools.cache
def _store_getter() -> Callable[[], Any] | None:
    """ZenML's ``zen_store()`` accessor, or None without zenml (looked up once)."""
    try:
        from zenml.zen_server.utils import zen_store
    except ImportError:
        return None
    return zen_store  # type: ignore[no-any-return]


def _build_of(workload_id: object, workload_type: str | None) -> Any:
    """The ``PipelineBuildResponse`` of the snapshot or run ``workload_id``, or None."""
    getter = _store_getter()
    if getter is None:
        return None
    try:
        store = getter()
    except Exception:  # not inside a running ZenML server
        return None
    wid = workload_id if isinstance(workload_id, UUID) else UUID(str(workload_id))
    kinds = [workload_type] if workload_type else ["snapshot", "run"]
    for kind in kinds:
        try:
            if kind == "run":
                run_snapshot = store.get_run(wid, hydrate=False).snapshot
                snapshot = run_snapshot and _light_snapshot(store, run_snapshot.id)
            else:
                snapshot = _light_snapshot(store, wid)
        except KeyError:
            continue
        build = getattr(snapshot, "build", None) if snapshot is not None else None
        if build is not None:
            return build
    return None


def _light_snapshot(store: Any, snapshot_id: Any) -> Any:
    """The snapshot without its step configurations and schema: ~4 ms instead of ~10+
    on SQLite, on a path that runs for every run. Older stores lack the options."""
    try:
        return store.get_snapshot(
            snapshot_id, hydrate=False, step_configuration_filter=[], include_config_schema=False
        )
    except TypeError:
        return store.get_snapshot(snapshot_id, hydrate=False)


def _error_line(message: str) -> str:
    entry = {
        "message": message,
        "level": LEVEL_ERROR,
        "timestamp": datetime.now(UTC).isoformat(),
        "name": "zwmd",
    }
    return json.dumps(entry)
