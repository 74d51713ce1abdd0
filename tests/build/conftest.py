"""Fixtures for the runner-image tests: real registries, a localkube, a daemon in the loop.

The daemon is the real one (settings → :func:`zwmd.daemon.starting.daemon_config` →
:func:`zwmd.daemon.serving.serve`), in the test's event loop, against a localkube whose
scripted kubelet lets the test finish or fail each builder pod. Each daemon gets its own
namespace; the registries are Debian's ``docker-registry`` on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.build.registries import Registry, start_registry
from tests.daemon_process import free_port
from zwmd.daemon.operations import DaemonOperations
from zwmd.daemon.serving import serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import LocalKube
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.logs.filestore import FileLogStore
from zwmd.settings import load_settings

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
SERVICE_ACCOUNT = "zenml-runner"
JsonDict = dict[str, Any]


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry-basic"), "basic") as registry:
        yield registry


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry-token"), "token") as registry:
        yield registry


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(kubelet="scripted", bookmark_interval=0.5) as localkube:
        yield localkube


@pytest.fixture(scope="module")
def kubeconfig(kube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@dataclass
class Daemon:
    """A daemon in the test's event loop, its namespace, and an HTTP client for it."""

    kube: LocalKube
    namespace: str
    url: str
    token: str
    http: httpx.AsyncClient
    ops: DaemonOperations

    @property
    def kubelet(self) -> ScriptedKubelet:
        kubelet: ScriptedKubelet = self.kube.kubelet
        return kubelet

    async def build(self, workload_id: str | None = None, **body: Any) -> JsonDict:
        workload_id = workload_id or str(uuid.uuid4())
        response = await self.http.post(f"/v1/workloads/{workload_id}/build", json=body)
        assert response.status_code == 202, response.text
        result: JsonDict = response.json()
        return result

    async def wait(self, workload_id: str, timeout: float = 20.0) -> JsonDict:
        response = await self.http.get(
            f"/v1/workloads/{workload_id}/wait", params={"timeout": timeout}
        )
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        assert result["state"] in ("succeeded", "failed", "cancelled"), result
        return result

    def objects(self, resource: str) -> list[JsonDict]:
        return self.kube.store.list(resource, self.namespace)[0]

    def builder_jobs(self) -> list[JsonDict]:
        return [
            job
            for job in self.objects("jobs")
            if job["metadata"]["labels"].get("zwmd.io/kind") == "builder"
        ]

    def get(self, resource: str, name: str) -> JsonDict:
        return self.kube.store.get(resource, self.namespace, name)

    async def builder_pod(self, job_name: str) -> str:
        return await self.kubelet.wait_for_pod(self.namespace, job_name, timeout=20)


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


@asynccontextmanager
async def running_daemon(
    kube: LocalKube, kubeconfig: Path, state_dir: Path, env: Mapping[str, str]
) -> AsyncIterator[Daemon]:
    """A daemon with the variables ``env`` over a namespace of its own."""
    namespace = f"zwmd-{uuid.uuid4().hex[:10]}"
    kube.store.create("namespaces", None, {"metadata": {"name": namespace}})
    kube.store.create("serviceaccounts", namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    token = secrets.token_hex(16)
    variables = {
        f"{K}NAMESPACE": namespace,
        f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "ZWMD_API_HOST": "127.0.0.1",
        "ZWMD_API_PORT": str(free_port()),
        "ZWMD_API_TOKEN": token,
        "ZWMD_STATE_DIR": str(state_dir),
        "KUBECONFIG": str(kubeconfig),
        **env,
    }
    settings = load_settings(variables)
    config = daemon_config(settings, kubeconfig=str(kubeconfig))
    store = FileLogStore(state_dir, fsync=False)
    url = f"http://127.0.0.1:{config.api_port}"
    async with anyio.create_task_group() as tg:
        ops: DaemonOperations = await tg.start(serve, config, store)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            yield Daemon(kube, namespace, url, token, http, ops)
        tg.cancel_scope.cancel()


def build_env(registry: Registry, config_json: Path | None, **extra: str) -> dict[str, str]:
    """Build on demand into ``registry`` (path ``team``), over plain HTTP."""
    env = {
        f"{K}BUILD_RUNNER_IMAGE": "true",
        f"{K}DOCKER_REGISTRY": f"{registry.host}/team",
        "ZWMD_INSECURE_REGISTRIES": registry.host,
        **extra,
    }
    if config_json is not None:
        env["ZWMD_REGISTRY_CONFIG"] = str(config_json)
    return env
