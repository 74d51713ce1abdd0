"""A daemon served in the test's event loop, against a localkube the test can stop.

The daemon is the real one: settings are loaded from a plain mapping of variables with
:func:`zwmd.settings.load_settings`, turned into a :class:`DaemonConfig` by
:func:`zwmd.daemon.starting.daemon_config` and served with :func:`zwmd.daemon.serving.serve`.
Tests reach it over HTTP on 127.0.0.1: the API with its token, and the metrics listener
(``ZWMD_METRICS_PORT``) without one, as a kubelet or Prometheus would.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pluggy
from anyio.abc import TaskStatus

from tests.daemon_process import free_port
from zwmd.daemon.operations import DaemonOperations
from zwmd.daemon.serving import DaemonConfig, serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import ApiError, LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.metrics import Metrics
from zwmd.settings import load_settings

SERVICE_ACCOUNT = "zenml-runner"
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
JsonDict = dict[str, Any]


@dataclass
class Cluster:
    """A localkube on a fixed loopback port that a test may stop and start again."""

    port: int = field(default_factory=free_port)
    kube: LocalKube | None = None
    _scope: anyio.CancelScope | None = None

    async def start(self, tg: anyio.abc.TaskGroup, namespace: str) -> LocalKube:
        kube = LocalKube(host="127.0.0.1", port=self.port, kubelet="process")
        self._scope = await tg.start(self._serve, kube)
        for resource, ns, obj in (
            ("namespaces", None, {"metadata": {"name": namespace}}),
            ("serviceaccounts", namespace, {"metadata": {"name": SERVICE_ACCOUNT}}),
        ):
            try:
                kube.store.create(resource, ns, obj)
            except ApiError as exc:
                if exc.code != 409:
                    raise
        self.kube = kube
        return kube

    @staticmethod
    async def _serve(
        kube: LocalKube, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as inner:
                await inner.start(kube.serve)
                task_status.started(scope)

    def stop(self) -> None:
        """Stop serving: from now on the apiserver is unreachable."""
        assert self._scope is not None
        self._scope.cancel()
        self.kube = None

    def write_kubeconfig(self, path: Path) -> Path:
        assert self.kube is not None
        return self.kube.write_kubeconfig(path)


@dataclass
class Daemon:
    """A running daemon, and what a test needs to reach it."""

    cluster: Cluster
    namespace: str
    ops: DaemonOperations
    metrics: Metrics
    config: DaemonConfig
    api: httpx.AsyncClient
    probes: httpx.AsyncClient  # the metrics listener: no token

    @property
    def kube(self) -> LocalKube:
        assert self.cluster.kube is not None
        return self.cluster.kube

    async def run(self, command: str, workload_id: str | None = None) -> JsonDict:
        """Submit ``sh -c command`` and return the workload once it is terminal."""
        workload_id = workload_id or str(uuid.uuid4())
        body = {"image": "runner:1", "command": ["sh", "-c", command]}
        response = await self.api.post(f"/v1/workloads/{workload_id}/run", json=body)
        assert response.status_code == 202, response.text
        response = await self.api.get(f"/v1/workloads/{workload_id}/wait", params={"timeout": 60})
        assert response.status_code == 200, response.text
        workload: JsonDict = response.json()
        assert workload["state"] in ("succeeded", "failed", "cancelled"), workload
        return workload

    async def scrape(self) -> str:
        response = await self.probes.get("/metrics")
        assert response.status_code == 200
        return response.text


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.05)


def fast(config: DaemonConfig) -> DaemonConfig:
    """Back-offs and liveness bounds short enough for a test."""
    timing = dataclasses.replace(
        config.watch_timing,
        backoff_initial=0.05,
        backoff_max=0.5,
        inactivity_timeout=2.0,
        liveness_grace=1.0,
    )
    return dataclasses.replace(config, watch_timing=timing)


@asynccontextmanager
async def running_daemon(
    tmp_path: Path,
    *,
    cluster: Cluster | None = None,
    namespace: str | None = None,
    env: Mapping[str, str] | None = None,
    plugins: pluggy.PluginManager | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[Daemon]:
    """A localkube (unless given) and a daemon on it, with a metrics listener on 127.0.0.1.

    With ``wait_ready=False`` the daemon is yielded as soon as its listeners answer,
    before its watches have listed.
    """
    namespace = namespace or f"zwmd-{uuid.uuid4().hex[:10]}"
    async with anyio.create_task_group() as tg:
        if cluster is None:
            cluster = Cluster()
            await cluster.start(tg, namespace)
        state_dir = tmp_path / f"state-{uuid.uuid4().hex[:6]}"
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        token = secrets.token_hex(16)
        variables = {
            f"{K}NAMESPACE": namespace,
            f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "ZWMD_API_HOST": "127.0.0.1",
            "ZWMD_API_PORT": str(free_port()),
            "ZWMD_API_TOKEN": token,
            "ZWMD_METRICS_HOST": "127.0.0.1",
            "ZWMD_METRICS_PORT": str(free_port()),
            "ZWMD_STATE_DIR": str(state_dir),
            "KUBECONFIG": str(kubeconfig),
            **(env or {}),
        }
        config = fast(daemon_config(load_settings(variables), kubeconfig=str(kubeconfig)))
        metrics = Metrics()
        store = FileLogStore(state_dir, fsync=False)
        started: list[DaemonOperations] = []

        async def run_daemon() -> None:
            started.append(await tg.start(_serve, config, store, metrics, plugins))

        api = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{config.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        probes = httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.metrics_port}", timeout=10)
        async with api, probes:
            if wait_ready:
                await run_daemon()
                ops = started[0]
            else:
                tg.start_soon(run_daemon)
                await until(lambda: _answers(probes))
                ops = _Pending(started)  # type: ignore[assignment]
            yield Daemon(cluster, namespace, ops, metrics, config, api, probes)
        tg.cancel_scope.cancel()


async def _serve(
    config: DaemonConfig,
    store: FileLogStore,
    metrics: Metrics,
    plugins: pluggy.PluginManager | None,
    *,
    task_status: TaskStatus[DaemonOperations] = anyio.TASK_STATUS_IGNORED,
) -> None:
    await serve(config, store, metrics=metrics, plugins=plugins, task_status=task_status)


class _Pending:
    """Stands for the operations of a daemon that has not reported ready yet."""

    def __init__(self, started: list[DaemonOperations]):
        self._started = started

    def __getattr__(self, name: str) -> Any:
        if not self._started:
            raise AttributeError(f"the daemon is not ready yet: no {name}")
        return getattr(self._started[0], name)


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        await client.get("/healthz")
    except httpx.TransportError:
        return False
    return True
