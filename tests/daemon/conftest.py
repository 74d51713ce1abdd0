"""Fixtures for the daemon's tests: a localkube, and ``serve()`` running in the test's loop.

The daemon under test is the real one: settings are loaded with
:func:`zwmd.settings.load_settings` from a plain mapping of variables, turned into a
:class:`~zwmd.daemon.serving.DaemonConfig` by :func:`zwmd.daemon.starting.daemon_config`
and served with :func:`zwmd.daemon.serving.serve`; tests talk to it over HTTP on
127.0.0.1 with its bearer token, and read Kubernetes objects from localkube's store.

One localkube (scripted kubelet: the test decides every pod's fate) serves a whole test
module; each daemon gets a namespace of its own, so daemons never see each other's Jobs.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.daemon_process import free_port
from zwmd.daemon.operations import DaemonOperations
from zwmd.daemon.serving import DaemonConfig, serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import ApiError, LocalKube
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.logs.filestore import FileLogStore
from zwmd.settings import load_settings

SERVICE_ACCOUNT = "zenml-runner"
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"

JsonDict = dict[str, Any]


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    """A localkube whose pods do only what the test tells the scripted kubelet."""
    async with LocalKube(kubelet="scripted", bookmark_interval=0.5) as localkube:
        yield localkube


@pytest.fixture(scope="module")
def kubeconfig(kube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@dataclass
class Daemon:
    """A daemon served in the test's event loop, and what a test needs to reach it."""

    kube: LocalKube
    namespace: str
    url: str
    token: str
    http: httpx.AsyncClient
    ops: DaemonOperations
    config: DaemonConfig

    @property
    def kubelet(self) -> ScriptedKubelet:
        kubelet: ScriptedKubelet = self.kube.kubelet
        return kubelet

    # -- the API, as a client sees it -----------------------------------------------------

    async def submit(self, workload_id: str | None = None, **body: Any) -> JsonDict:
        workload_id = workload_id or str(uuid.uuid4())
        body.setdefault("image", "runner:1")
        response = await self.http.post(f"/v1/workloads/{workload_id}/run", json=body)
        assert response.status_code in (200, 202), response.text
        result: JsonDict = response.json()
        return result

    async def get(self, id_or_alias: str) -> JsonDict:
        response = await self.http.get(f"/v1/workloads/{id_or_alias}")
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        return result

    async def wait(self, id_or_alias: str, timeout: float = 20.0) -> JsonDict:
        """The workload once it is terminal (fails the test if it never gets there)."""
        response = await self.http.get(
            f"/v1/workloads/{id_or_alias}/wait", params={"timeout": timeout}
        )
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        assert result["state"] in ("succeeded", "failed", "cancelled"), result
        return result

    async def until_state(self, id_or_alias: str, *states: str, timeout: float = 20.0) -> JsonDict:
        """The workload once its state is one of ``states``."""
        with anyio.fail_after(timeout):
            while True:
                workload = await self.get(id_or_alias)
                if workload["state"] in states:
                    return workload
                await anyio.sleep(0.05)

    # -- Kubernetes, as kubectl would show it --------------------------------------------

    def job(self, name: str) -> JsonDict:
        return self.kube.store.get("jobs", self.namespace, name)

    def jobs(self) -> list[JsonDict]:
        return self.kube.store.list("jobs", self.namespace)[0]

    def pods(self, job_name: str | None = None) -> list[JsonDict]:
        selector = None if job_name is None else f"batch.kubernetes.io/job-name={job_name}"
        return self.kube.store.list("pods", self.namespace, label_selector=selector)[0]

    async def pod_of(self, job_name: str, timeout: float = 10.0) -> str:
        """The next pod of ``job_name`` that the test has not been handed yet."""
        return await self.kubelet.wait_for_pod(self.namespace, job_name, timeout=timeout)


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)


def settings_env(namespace: str, kubeconfig: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """The variables of a daemon in ``namespace``, listening on a free loopback port."""
    return {
        f"{K}NAMESPACE": namespace,
        f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "ZWMD_API_HOST": "127.0.0.1",
        "ZWMD_API_PORT": str(free_port()),
        "ZWMD_API_TOKEN": secrets.token_hex(16),
        "ZWMD_STATE_DIR": str(state_dir),
        "KUBECONFIG": str(kubeconfig),
        **extra,
    }


@asynccontextmanager
async def running_daemon(
    kube: LocalKube,
    kubeconfig: Path,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    namespace: str | None = None,
    create_service_account: bool = True,
    adjust: Callable[[DaemonConfig], DaemonConfig] | None = None,
) -> AsyncIterator[Daemon]:
    """``serve()`` with settings from ``env`` over the defaults of :func:`settings_env`."""
    namespace = namespace or f"zwmd-{uuid.uuid4().hex[:10]}"
    try:
        kube.store.create("namespaces", None, {"metadata": {"name": namespace}})
    except ApiError as exc:  # the namespace exists: a daemon started again
        if exc.code != 409:
            raise
    else:
        if create_service_account:
            kube.store.create("serviceaccounts", namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    variables = settings_env(namespace, kubeconfig, state_dir)
    variables.update(env or {})
    settings = load_settings(variables)
    config = daemon_config(settings, kubeconfig=str(kubeconfig))
    config = dataclasses.replace(
        config,
        watch_timing=dataclasses.replace(
            config.watch_timing, backoff_initial=0.05, backoff_max=1.0
        ),
    )
    if adjust is not None:
        config = adjust(config)
    token = settings.api_token_value()
    assert token is not None
    store = FileLogStore(state_dir, fsync=False)
    url = f"http://127.0.0.1:{config.api_port}"
    async with anyio.create_task_group() as tg:
        ops: DaemonOperations = await tg.start(serve, config, store)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            try:
                yield Daemon(kube, namespace, url, token, http, ops, config)
            finally:
                kube.faults.reset()
        tg.cancel_scope.cancel()


@pytest.fixture
async def daemon(kube: LocalKube, kubeconfig: Path, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with the defaults (concurrency 2) in a fresh namespace."""
    async with running_daemon(kube, kubeconfig, tmp_path) as d:
        yield d
