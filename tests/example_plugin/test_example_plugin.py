"""An example third-party plugin, tested with zwmd's public API and its pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pluggy
import pytest
from kubernetes_asyncio.client import ApiClient, BatchV1Api

from tests.example_plugin import zwmd_example
from zwmd.images.builder import BuildPlan, builder_job, builder_pod_pieces
from zwmd.kube.jobs import PodPolicy
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey, LogStore
from zwmd.plugins import describe, plugin_manager, require_implementation, resolve
from zwmd.settings import load_settings

pytestmark = pytest.mark.anyio


def manager_with_example() -> pluggy.PluginManager:
    manager = plugin_manager(entry_points=False)
    manager.register(zwmd_example, name="example")
    return manager


async def test_the_example_plugin_provides_its_implementation_and_log_store(
    tmp_path: Path,
) -> None:
    manager = manager_with_example()
    assert manager.hook.zwmd_implementations() == [["example"]]
    require_implementation(manager, "example")  # would raise "install its plugin" otherwise
    info = {i.name: i for i in describe(manager)}["example"]
    assert "zwmd_log_store" in info.hooks
    settings = load_settings(
        {
            "HOME": str(tmp_path),
            "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": "example",
            "ZWMD_LOG_STORE": "memory",
            "ZWMD_STATE_DIR": str(tmp_path / "state"),
        },
        local=True,
    )
    store = await resolve(manager.hook.zwmd_log_store(settings=settings, name=settings.log_store))
    assert isinstance(store, LogStore)
    record = LogRecord(1_795_000_000_000_000_000, "runner", 20, "hello", 1)
    await store.append(LogKey("wl", 1), [record])
    assert [r async for r in store.read("wl")] == [record]


async def test_the_example_builder_job_is_accepted_by_kubernetes(
    kube_api_client: ApiClient, kube_namespace: str, tmp_path: Path
) -> None:
    manager = manager_with_example()
    plan = BuildPlan(
        image="registry.example/zenml/runner:abc",
        dockerfile="FROM python:3.11\n",
        job_name="build-abc",
        registry="registry.example",
    )
    answer = await resolve(manager.hook.zwmd_builder_job(settings=None, plan=plan))
    job = builder_job(
        plan,
        builder_pod_pieces(answer),
        workload_id="wl-build",
        attempt=1,
        policy=PodPolicy(service_account="default"),
    )
    created = await BatchV1Api(kube_api_client).create_namespaced_job(kube_namespace, job)  # type: ignore[arg-type]
    containers = created.spec.template.spec.containers
    assert [c.name for c in containers] == ["buildah"]
    assert containers[0].args[-1] == "registry.example/zenml/runner:abc"


def test_the_example_listener_records_state_changes() -> None:
    manager = manager_with_example()
    manager.hook.zwmd_workload_state_changed(workload={"id": "wl-1"}, old="pending", new="running")
    assert ("wl-1", "pending", "running") in zwmd_example.changes
