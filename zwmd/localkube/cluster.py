"""``LocalKube``: the store, the HTTP server, the Job controller and a kubelet, together.

Design notes:

* :meth:`LocalKube.serve` follows anyio's readiness handshake: ``await tg.start(kube.serve)``
  returns once the port is listening (``kube.url`` is then set); cancelling the task
  group stops everything. ``async with LocalKube() as kube:`` does the same for tests.
* The Job controller and the kubelets live in sibling modules; ``kubelet=None`` gives
  an API server whose pods never run, which suits tests that drive pod status
  themselves, and ``job_controller=False`` one whose Jobs make no pods.
* Requests are authenticated and authorized as a cluster with RBAC does it
  (:mod:`zwmd.localkube.authn`, :mod:`zwmd.localkube.rbac`): the default roles are
  written at construction, :meth:`write_kubeconfig` acts as the administrator and
  :meth:`service_account_kubeconfig` as a service account, under whatever Roles the
  test or the operator binds to it.
* The garbage collector (:mod:`zwmd.localkube.garbagecollector`) deletes a deleted
  owner's dependents ``gc_delay`` seconds later, as a real cluster's does: never at once.
  ``kube.garbage_collector.delay`` may be changed while it runs (a test that needs a
  lagging collector).
* ``kubernetes_version`` picks the release modelled (``"1.24"`` to ``"1.34"``, the newest
  by default; :mod:`zwmd.localkube.versions`): ``/version``, the fields served, the
  labels of a Job's pods and the Job controller's conditions follow it.
* The Job controller waits before replacing a failed pod as upstream's does (10 s,
  doubling per consecutive failure up to 6 min, reset by a success; see
  :mod:`zwmd.localkube.podbackoff`), every delay multiplied by ``pod_backoff_scale``.
  ``LocalKube()`` defaults to :data:`~zwmd.localkube.podbackoff.TEST_SCALE` (0.01: 0.1 s,
  0.2 s, ... at most 3.6 s), because nearly every ``LocalKube`` is a test's and a test
  that retries a pod should not wait minutes; the shared fixtures pass it explicitly.
  ``zwmd localkube`` and ``zwmd serve --local`` run what people use, and default to 1.0,
  upstream's timing. ``kube.job_controller.pod_backoff`` holds each Job's record.
* Admission: PodSecurity (namespace labels, :mod:`zwmd.localkube.podsecurity`) always;
  OwnerReferencesPermissionEnforcement (:mod:`zwmd.localkube.ownerrefs`) only with
  ``owner_references_enforcement=True``, as upstream's default plugin list leaves it off.
* Shutdown closes every watch first, so the HTTP server can stop without waiting on
  long-lived responses.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc
from aiohttp import web

from zwmd.localkube.audit import AuditLog
from zwmd.localkube.authn import Authenticator
from zwmd.localkube.controllers import JobController
from zwmd.localkube.faults import Faults
from zwmd.localkube.garbagecollector import DEFAULT_DELAY, GarbageCollector
from zwmd.localkube.kubeconfig import write_kubeconfig
from zwmd.localkube.kubelets.process import ProcessKubelet
from zwmd.localkube.kubelets.scripted import ScriptedKubelet
from zwmd.localkube.podbackoff import TEST_SCALE
from zwmd.localkube.podlogs import PodLogs
from zwmd.localkube.rbac import BOOTSTRAP_POLICY
from zwmd.localkube.server import create_app
from zwmd.localkube.store import Store
from zwmd.localkube.versions import NEWEST, KubernetesVersion

KubeletKind = Literal["process", "scripted"]
_KUBELETS: dict[str, type[ProcessKubelet] | type[ScriptedKubelet]] = {
    "process": ProcessKubelet,
    "scripted": ScriptedKubelet,
}


class LocalKube:
    """An in-process Kubernetes API server on 127.0.0.1.

    ``pod_backoff_scale`` multiplies the Job controller's pod failure backoff (upstream's
    10 s doubling to 6 min): :data:`~zwmd.localkube.podbackoff.TEST_SCALE` (0.01) by
    default, for tests; 1.0 for upstream's timing; 0 to replace failed pods at once.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        kubelet: KubeletKind | None = "process",
        *,
        history_size: int = 10_000,
        bookmark_interval: float = 5.0,
        job_controller: bool = True,
        gc_delay: float = DEFAULT_DELAY,
        pod_backoff_scale: float = TEST_SCALE,
        unauthenticated: str = "admin",
        kubernetes_version: str | KubernetesVersion = NEWEST,
        owner_references_enforcement: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        if isinstance(kubernetes_version, str):
            kubernetes_version = KubernetesVersion.parse(kubernetes_version)
        self.kubernetes_version = kubernetes_version
        self.store = Store(history_size=history_size, version=kubernetes_version)
        for resource, obj in BOOTSTRAP_POLICY:
            self.store.create(resource, None, obj)
        self.authenticator = Authenticator(self.store, unauthenticated=unauthenticated)
        self.faults = Faults(self.store)
        self.pod_logs = PodLogs(self.store)
        self.faults.pod_logs = self.pod_logs
        self.audit = AuditLog()  # every API request served (see zwmd.localkube.audit)
        # Any: tests drive it as the kind they asked for (``kubelet.succeed(...)``)
        self.kubelet: Any = None
        if kubelet is not None:
            if kubelet not in _KUBELETS:
                raise ValueError(f"unknown kubelet {kubelet!r}: choose process or scripted")
            self.kubelet = _KUBELETS[kubelet](self.store, self.pod_logs)
        self.job_controller = (
            JobController(self.store, backoff_scale=pod_backoff_scale) if job_controller else None
        )
        self.garbage_collector = GarbageCollector(self.store, delay=gc_delay)
        self._bookmark_interval = bookmark_interval
        self.owner_references_enforcement = owner_references_enforcement
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("LocalKube is not serving yet")
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig for this server (kubectl and kubernetes-asyncio accept it)."""
        return write_kubeconfig(path, self.url)

    def service_account_kubeconfig(
        self, path: str | os.PathLike[str], namespace: str, name: str
    ) -> Path:
        """Write a kubeconfig that acts as service account ``namespace/name`` (which must
        exist), with a token the TokenRequest API would mint, default namespace
        ``namespace``."""
        token = self.authenticator.mint(namespace, name)["token"]
        return write_kubeconfig(path, self.url, namespace=namespace, token=token)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; signals readiness once the port is listening."""
        app = create_app(
            self.store,
            self.faults,
            pod_logs=self.pod_logs,
            bookmark_interval=self._bookmark_interval,
            audit=self.audit,
            authenticator=self.authenticator,
            owner_references_enforcement=self.owner_references_enforcement,
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = await self._listen(runner)
            async with anyio.create_task_group() as group:
                for component in (self.job_controller, self.garbage_collector, self.kubelet):
                    if component is not None:
                        group.start_soon(component.run)

                async def outage(seconds: float) -> None:
                    nonlocal site
                    await anyio.sleep(0.05)  # let the request that asked for it be answered
                    await site.stop()  # new connections are refused
                    assert runner.server is not None
                    for connection in list(runner.server.connections):
                        connection.force_close()  # and open ones are closed
                    self.store.close_watches()
                    await anyio.sleep(seconds)
                    site = await self._listen(runner)

                def start_outage(seconds: float) -> None:
                    group.start_soon(outage, seconds)

                self.faults.outage_handler = start_outage
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.store.close_watches()
            with anyio.CancelScope(shield=True):
                await runner.cleanup()

    async def _listen(self, runner: web.AppRunner) -> web.TCPSite:
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return site

    async def __aenter__(self) -> LocalKube:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        try:
            await self._task_group.start(self.serve)
        except BaseException:
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, traceback)
