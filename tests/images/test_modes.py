"""The three runner-image modes, as ZenML sees them through ``zwmd.zenml.WorkloadManager``.

The adapter is synchronous (ZenML calls it from worker threads), so each call runs in a
thread while the daemon serves in the test's event loop on localkube.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.images.conftest import Daemon, build_env
from tests.images.registries import Registry, push_image
from tests.inprocess import K, until
from zwmd.apiclient import Client, ClientConfig
from zwmd.localkube import LocalKube
from zwmd.zenml import WorkloadFailed, WorkloadManager

pytestmark = pytest.mark.anyio

DOCKERFILE = "FROM python:3.11-slim\n"


async def build_and_push(daemon: Daemon, **kwargs: Any) -> str:
    """``build_and_push_image`` as the ZenML server calls it, in a worker thread."""
    client = Client(ClientConfig(url=daemon.url, token=daemon.token))
    adapter = WorkloadManager(client)
    call = functools.partial(
        adapter.build_and_push_image,
        workload_id=kwargs.pop("workload_id", uuid.uuid4()),
        workload_type="snapshot",
        dockerfile=DOCKERFILE,
        sync=True,
        **kwargs,
    )
    try:
        image: str = await anyio.to_thread.run_sync(call)
        return image
    finally:
        client.close()


async def test_prebuilt_mode_returns_the_configured_image(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    env = {f"{K}RUNNER_IMAGE": "registry.example/zenml/runner:0.98.0"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env) as daemon:
        image = await build_and_push(daemon, image_name="zenml-runner:abc")
        assert image == "registry.example/zenml/runner:0.98.0"
        assert daemon.builder_jobs() == []


async def test_build_mode_returns_an_existing_image_and_builds_a_missing_one(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    push_image(basic_registry, "team/zenml-runner", "present")
    env = build_env(basic_registry, basic_registry.docker_config(tmp_path / "config.json"))
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        found = await build_and_push(daemon, image_name="zenml-runner:present")
        assert found == f"{basic_registry.host}/team/zenml-runner:present"
        assert daemon.builder_jobs() == []

        tag = uuid.uuid4().hex
        async with anyio.create_task_group() as tg:
            result: list[str] = []

            async def build() -> None:
                result.append(await build_and_push(daemon, image_name=f"zenml-runner:{tag}"))

            tg.start_soon(build)
            await until(lambda: len(daemon.builder_jobs()) == 1)
            [job] = daemon.builder_jobs()
            pod = await daemon.builder_pod(job["metadata"]["name"])
            daemon.kubelet.succeed(daemon.namespace, pod)
        assert result == [f"{basic_registry.host}/team/zenml-runner:{tag}"]


async def test_build_mode_failure_raises_with_the_reason(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    env = build_env(basic_registry, basic_registry.docker_config(tmp_path / "config.json"))
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def build() -> None:
                try:
                    await build_and_push(daemon, image_name=f"zenml-runner:{uuid.uuid4().hex}")
                except WorkloadFailed as exc:
                    errors.append(exc)

            tg.start_soon(build)
            await until(lambda: len(daemon.builder_jobs()) == 1)
            [job] = daemon.builder_jobs()
            pod = await daemon.builder_pod(job["metadata"]["name"])
            daemon.kubelet.set_running(daemon.namespace, pod)
            daemon.kubelet.log(daemon.namespace, pod, "error: UNAUTHORIZED: push denied")
            daemon.kubelet.fail(daemon.namespace, pod)
        [error] = errors
        assert "BuildFailed" in str(error)
        assert "UNAUTHORIZED: push denied" in str(error)


async def test_reuse_mode_takes_the_orchestrators_image(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(kube, kubeconfig, tmp_path, {}) as daemon:
        images = {
            "orchestrator": "registry.example/app:orchestrator-1",
            "trainer.step": "registry.example/app:trainer-1",
        }
        response = await daemon.http.post(
            f"/v1/workloads/{uuid.uuid4()}/build",
            json={"image_name": "zenml-runner:abc", "reuse_images": images},
        )
        assert response.status_code == 202
        assert response.json()["image"] == "registry.example/app:orchestrator-1"


async def test_reuse_mode_without_images_fails_clearly(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(kube, kubeconfig, tmp_path, {}) as daemon:
        with pytest.raises(WorkloadFailed) as err:
            await build_and_push(daemon, image_name="zenml-runner:abc")
        text = str(err.value)
        assert "BuildFailed" in text
        assert "no orchestrator image to reuse" in text
        assert f"{K}RUNNER_IMAGE" in text
