"""A daemon served in the test's event loop, against a localkube the test can stop.

The daemon is the real one: settings are loaded from a plain mapping of variables with
:func:`zwmd.settings.load_settings`, turned into a :class:`DaemonConfig` by
:func:`zwmd.daemon.starting.daemon_config` and served with :func:`zwmd.daemon.serving.serve`.
Tests reach it over HTTP on 127.0.0.1: the API with its token, and the metrics listener
(``ZWMD_METRICS_PORT``) without one, as a kubelet or Prometheus would.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pluggy
from anyio.abc import TaskStatus

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon_process import free_port
from tests.inprocess import Daemon as InProcessDaemon
from tests.inprocess import create_namespace
from tests.inprocess import until as shared_until
from zwmd.daemon.serving import DaemonConfig
from zwmd.localkube import LocalKube
from zwmd.localkube.podbackoff import TEST_SCALE


@dataclass
class Cluster:
    """A localkube on a fixed loopback port that a test may stop and start again.

    Started again, it serves the objects it had (an apiserver restarts on the same etcd),
    so the daemon's service-account token is still good.
    """

    port: int = field(default_factory=free_port)
    kube: LocalKube | None = None
    _stopped: LocalKube | None = None
    _scope: anyio.CancelScope | None = None

    async def start(self, tg: anyio.abc.TaskGroup, namespace: str) -> LocalKube:
        kube = self._stopped or LocalKube(
            kubernetes_version=KUBERNETES_VERSION,
            host="127.0.0.1",
            port=self.port,
            kubelet="process",
            unauthenticated="anonymous",
            pod_backoff_scale=TEST_SCALE,
            owner_references_enforcement=True,
        )
        self._scope = await tg.start(self._serve, kube)
        create_namespace(kube, namespace)
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
        self._stopped, self.kube = self.kube, None

    def write_kubeconfig(self, path: Path) -> Path:
        assert self.kube is not None
        return self.kube.write_kubeconfig(path)


class Daemon(InProcessDaemon):
    """A daemon with back-offs and liveness bounds short enough for a test."""

    @classmethod
    def tune(cls, config: DaemonConfig) -> DaemonConfig:
        timing = dataclasses.replace(
            config.watch_timing,
            backoff_initial=0.05,
            backoff_max=0.5,
            inactivity_timeout=2.0,
            liveness_grace=1.0,
        )
        return dataclasses.replace(config, watch_timing=timing)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    await shared_until(check, timeout, interval=0.05)


@asynccontextmanager
async def daemon_on_cluster(
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
        assert cluster.kube is not None
        async with Daemon.running(
            cluster.kube,
            cluster.write_kubeconfig(tmp_path / "kubeconfig"),
            tmp_path / f"state-{uuid.uuid4().hex[:6]}",
            env,
            namespace=namespace,
            metrics_listener=True,
            plugins=plugins,
            wait_ready=wait_ready,
        ) as daemon:
            yield daemon
        tg.cancel_scope.cancel()
