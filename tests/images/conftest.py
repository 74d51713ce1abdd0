"""Fixtures for the runner-image tests: real registries, a localkube, a daemon in the loop.

The daemon is the real one (settings → :func:`zwmd.daemon.starting.daemon_config` →
:func:`zwmd.daemon.serving.serve`), in the test's event loop, against a localkube whose
scripted kubelet lets the test finish or fail each builder pod. Each daemon gets its own
namespace; the registries are Debian's ``docker-registry`` on 127.0.0.1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images.registries import Registry, start_registry
from tests.inprocess import Daemon as InProcessDaemon
from tests.inprocess import JsonDict, K
from tests.inprocess import kube as kube
from tests.inprocess import kubeconfig as kubeconfig


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry-basic"), "basic") as registry:
        yield registry


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry-token"), "token") as registry:
        yield registry


class Daemon(InProcessDaemon):
    """A daemon in the test's event loop that builds runner images on demand."""

    async def build(self, workload_id: str | None = None, **body: Any) -> JsonDict:
        workload_id = workload_id or str(uuid.uuid4())
        response = await self.http.post(f"/v1/workloads/{workload_id}/build", json=body)
        assert response.status_code == 202, response.text
        result: JsonDict = response.json()
        return result

    def builder_jobs(self) -> list[JsonDict]:
        return [
            job for job in self.jobs() if job["metadata"]["labels"].get("zwmd.io/kind") == "builder"
        ]

    async def builder_pod(self, job_name: str) -> str:
        return await self.pod_of(job_name, timeout=20)


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
