"""DELETE with each propagation policy and garbage collection through ownerReferences."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, job
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio
Kube = tuple[LocalKube, ApiClient]


async def _job_with_dependents(api: ApiClient, *, finalizer: str | None = None) -> Any:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    owner = await batch.create_namespaced_job("default", job("owner", suspend=True))
    reference = client.V1OwnerReference(
        api_version="batch/v1",
        kind="Job",
        name="owner",
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )
    for name in ("owned-1", "owned-2"):
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name,
                owner_references=[reference],
                finalizers=[finalizer] if finalizer and name == "owned-1" else None,
            ),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]),
        )
        await core.create_namespaced_pod("default", pod)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="owned-env", owner_references=[reference]),
        string_data={"TOKEN": "x"},
    )
    await core.create_namespaced_secret("default", secret)
    return owner


async def _names(api: ApiClient) -> set[str]:
    core = client.CoreV1Api(api)
    pods = await core.list_namespaced_pod("default")
    secrets = await core.list_namespaced_secret("default")
    return {p.metadata.name for p in pods.items} | {s.metadata.name for s in secrets.items}


async def test_background_deletes_owner_then_dependents(private_kube: Kube) -> None:
    _, api = private_kube
    await _job_with_dependents(api)
    status = await client.BatchV1Api(api).delete_namespaced_job(
        "owner", "default", propagation_policy="Background"
    )
    assert status.status == "Success"
    assert await _names(api) == set()


async def test_foreground_waits_for_dependents(private_kube: Kube) -> None:
    _, api = private_kube
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await _job_with_dependents(api, finalizer="example.com/hold")
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Foreground")
    owner = await batch.read_namespaced_job("owner", "default")
    assert owner.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in owner.metadata.finalizers
    held = await core.read_namespaced_pod("owned-1", "default")
    assert held.metadata.deletion_timestamp is not None
    assert await _names(api) == {"owned-1"}
    await core.patch_namespaced_pod("owned-1", "default", {"metadata": {"finalizers": None}})
    assert await _names(api) == set()
    assert (await api_error(batch.read_namespaced_job("owner", "default"))).status == 404


async def test_orphan_keeps_dependents_without_owner_references(private_kube: Kube) -> None:
    _, api = private_kube
    await _job_with_dependents(api)
    await client.BatchV1Api(api).delete_namespaced_job(
        "owner", "default", propagation_policy="Orphan"
    )
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}
    pod = await client.CoreV1Api(api).read_namespaced_pod("owned-1", "default")
    assert not pod.metadata.owner_references


async def test_jobs_orphan_by_default_as_batch_v1_does(private_kube: Kube) -> None:
    _, api = private_kube
    await _job_with_dependents(api)
    await client.BatchV1Api(api).delete_namespaced_job("owner", "default")
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}


async def test_delete_options_body_sets_the_policy(private_kube: Kube) -> None:
    _, api = private_kube
    await _job_with_dependents(api)
    options = client.V1DeleteOptions(propagation_policy="Background")
    await client.BatchV1Api(api).delete_namespaced_job("owner", "default", body=options)
    assert await _names(api) == set()


async def test_dependent_with_a_living_second_owner_survives(private_kube: Kube) -> None:
    kube, api = private_kube
    owner = await _job_with_dependents(api)
    other = kube.store.create("configmaps", "default", {"metadata": {"name": "other-owner"}})
    pod = kube.store.get("pods", "default", "owned-2")
    pod["metadata"]["ownerReferences"].append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "other-owner",
            "uid": other["metadata"]["uid"],
        }
    )
    kube.store.replace("pods", "default", "owned-2", pod)
    await client.BatchV1Api(api).delete_namespaced_job(
        "owner", "default", propagation_policy="Background"
    )
    assert await _names(api) == {"owned-2"}
    references = kube.store.get("pods", "default", "owned-2")["metadata"]["ownerReferences"]
    assert [ref["uid"] for ref in references] == [other["metadata"]["uid"]]
    assert owner.metadata.uid != other["metadata"]["uid"]


async def test_deleting_a_pod_returns_the_pod(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="gone"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]),
    )
    await core.create_namespaced_pod("default", pod)
    deleted = await core.delete_namespaced_pod("gone", "default")
    assert deleted.metadata.name == "gone"
    assert (await api_error(core.delete_namespaced_pod("gone", "default"))).status == 404


async def test_deleting_a_namespace_deletes_its_contents(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    await core.create_namespaced_config_map(
        "doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
    )
    await core.delete_namespace("doomed")
    assert list(kube.store.objects("configmaps")) == []
    assert (await api_error(core.read_namespace("doomed"))).status == 404
