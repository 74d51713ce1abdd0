"""DELETE with each propagation policy, and the garbage collector that follows it later.

The collector acts ``gc_delay`` after a change (:mod:`zwmd.localkube.garbagecollector`);
these tests set it long, see what the apiserver alone did, then let it catch up
(``hurry``) and see what the collector did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, job
from zwmd.localkube import LocalKube
from zwmd.localkube.errors import ApiError

pytestmark = pytest.mark.anyio
Kube = tuple[LocalKube, ApiClient]
LAGGING = 60.0  # seconds: the collector does nothing unless hurried


@pytest.fixture
def lagging(private_kube: Kube) -> Kube:
    private_kube[0].garbage_collector.delay = LAGGING
    return private_kube


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            if await check():
                return
            await anyio.sleep(0.02)


def reference_to(owner: Any, *, block: bool = True) -> Any:
    return client.V1OwnerReference(
        api_version="batch/v1",
        kind="Job",
        name=owner.metadata.name,
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=block,
    )


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


async def _empty(api: ApiClient) -> bool:
    return await _names(api) == set()


async def _names_are(api: ApiClient, names: set[str]) -> bool:
    return await _names(api) == names


async def _no_configmap(api: ApiClient, name: str) -> bool:
    found = await client.CoreV1Api(api).list_namespaced_config_map("default")
    return name not in {c.metadata.name for c in found.items}


async def _no_job(api: ApiClient, name: str) -> bool:
    found = await client.BatchV1Api(api).list_namespaced_job("default")
    return name not in {j.metadata.name for j in found.items}


async def test_background_removes_the_owner_at_once_and_dependents_later(lagging: Kube) -> None:
    kube, api = lagging
    batch = client.BatchV1Api(api)
    await _job_with_dependents(api)
    status = await batch.delete_namespaced_job("owner", "default", propagation_policy="Background")
    assert status.status == "Success"
    assert (await api_error(batch.read_namespaced_job("owner", "default"))).status == 404
    await anyio.sleep(0.2)
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}  # not collected yet
    kube.garbage_collector.hurry()
    await eventually(lambda: _empty(api))


async def test_the_collector_deletes_after_its_delay_unhurried(private_kube: Kube) -> None:
    kube, api = private_kube
    kube.garbage_collector.delay = 0.05
    await _job_with_dependents(api)
    await client.BatchV1Api(api).delete_namespaced_job(
        "owner", "default", propagation_policy="Background"
    )
    await eventually(lambda: _empty(api))


async def test_a_reference_to_a_recreated_name_is_dangling(lagging: Kube) -> None:
    """An owner is its uid: a new Job of the old name does not save the old one's dependents."""
    kube, api = lagging
    batch = client.BatchV1Api(api)
    await _job_with_dependents(api)
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Background")
    await batch.create_namespaced_job("default", job("owner", suspend=True))
    kube.garbage_collector.hurry()
    await eventually(lambda: _empty(api))
    assert (await batch.read_namespaced_job("owner", "default")).metadata.name == "owner"


async def test_a_dependent_re_owned_before_the_collector_comes_is_kept(lagging: Kube) -> None:
    """What a client does after a 409: it replaces the old dependent, with the new owner."""
    kube, api = lagging
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await _job_with_dependents(api)
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Background")
    new_owner = await batch.create_namespaced_job("default", job("owner", suspend=True))
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="owned-env", owner_references=[reference_to(new_owner)]),
        string_data={"TOKEN": "new"},
    )
    await core.replace_namespaced_secret("owned-env", "default", secret)
    kube.garbage_collector.hurry()
    await eventually(lambda: _names_are(api, {"owned-env"}))
    await anyio.sleep(0.1)
    kept = await core.read_namespaced_secret("owned-env", "default")
    assert [ref.uid for ref in kept.metadata.owner_references] == [new_owner.metadata.uid]


async def test_an_object_created_with_a_dangling_reference_is_collected(lagging: Kube) -> None:
    kube, api = lagging
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    owner = await batch.create_namespaced_job("default", job("owner", suspend=True))
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Background")
    late = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="late", owner_references=[reference_to(owner)])
    )
    await core.create_namespaced_config_map("default", late)
    assert kube.garbage_collector.pending() == 1
    kube.garbage_collector.hurry()
    await eventually(lambda: _no_configmap(api, "late"))


async def test_foreground_deletes_dependents_then_the_owner(lagging: Kube) -> None:
    kube, api = lagging
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await _job_with_dependents(api, finalizer="example.com/hold")
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Foreground")
    owner = await batch.read_namespaced_job("owner", "default")
    assert owner.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in owner.metadata.finalizers
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}  # the collector lags
    kube.garbage_collector.hurry()
    await eventually(lambda: _names_are(api, {"owned-1"}))
    held = await core.read_namespaced_pod("owned-1", "default")
    assert held.metadata.deletion_timestamp is not None
    await anyio.sleep(0.1)
    # the held pod blocks its owner's deletion
    assert (await batch.read_namespaced_job("owner", "default")).metadata.deletion_timestamp
    kube.garbage_collector.delay = 0.05
    await core.patch_namespaced_pod("owned-1", "default", {"metadata": {"finalizers": None}})
    await eventually(lambda: _empty(api))
    await eventually(lambda: _no_job(api, "owner"))


async def test_foreground_is_not_blocked_by_a_non_blocking_dependent(private_kube: Kube) -> None:
    kube, api = private_kube
    kube.garbage_collector.delay = 0.05
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    owner = await batch.create_namespaced_job("default", job("owner", suspend=True))
    held = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name="held",
            owner_references=[reference_to(owner, block=False)],
            finalizers=["example.com/hold"],
        )
    )
    await core.create_namespaced_config_map("default", held)
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Foreground")
    await eventually(lambda: _no_job(api, "owner"))
    marked = await core.read_namespaced_config_map("held", "default")
    assert marked.metadata.deletion_timestamp is not None


async def test_foreground_without_dependents_removes_at_once(private_kube: Kube) -> None:
    _, api = private_kube
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job("default", job("alone", suspend=True))
    await batch.delete_namespaced_job("alone", "default", propagation_policy="Foreground")
    assert (await api_error(batch.read_namespaced_job("alone", "default"))).status == 404


async def test_orphan_keeps_dependents_without_owner_references(lagging: Kube) -> None:
    kube, api = lagging
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    await _job_with_dependents(api)
    await batch.delete_namespaced_job("owner", "default", propagation_policy="Orphan")
    owner = await batch.read_namespaced_job("owner", "default")
    assert owner.metadata.deletion_timestamp is not None
    assert owner.metadata.finalizers == ["orphan"]
    assert (await core.read_namespaced_pod("owned-1", "default")).metadata.owner_references
    kube.garbage_collector.hurry()
    await eventually(lambda: _no_job(api, "owner"))
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}
    for name in ("owned-1", "owned-2"):
        assert not (await core.read_namespaced_pod(name, "default")).metadata.owner_references
    secret = await core.read_namespaced_secret("owned-env", "default")
    assert not secret.metadata.owner_references


async def test_jobs_orphan_by_default_as_batch_v1_does(private_kube: Kube) -> None:
    _, api = private_kube
    await _job_with_dependents(api)
    await client.BatchV1Api(api).delete_namespaced_job("owner", "default")
    await eventually(lambda: _no_job(api, "owner"))
    await anyio.sleep(0.1)
    assert await _names(api) == {"owned-1", "owned-2", "owned-env"}


async def test_delete_options_body_sets_the_policy(private_kube: Kube) -> None:
    _, api = private_kube
    batch = client.BatchV1Api(api)
    await _job_with_dependents(api)
    options = client.V1DeleteOptions(propagation_policy="Background")
    await batch.delete_namespaced_job("owner", "default", body=options)
    assert (await api_error(batch.read_namespaced_job("owner", "default"))).status == 404
    await eventually(lambda: _empty(api))


async def test_dependent_with_a_living_second_owner_survives(lagging: Kube) -> None:
    kube, api = lagging
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
    kube.garbage_collector.hurry()
    await eventually(lambda: _names_are(api, {"owned-2"}))
    await anyio.sleep(0.1)
    references = kube.store.get("pods", "default", "owned-2")["metadata"]["ownerReferences"]
    assert [ref["uid"] for ref in references] == [other["metadata"]["uid"]]
    assert owner.metadata.uid != other["metadata"]["uid"]


async def test_a_uid_precondition_spares_a_replacement(private_kube: Kube) -> None:
    kube, _ = private_kube
    old = kube.store.create("configmaps", "default", {"metadata": {"name": "c"}})
    kube.store.delete("configmaps", "default", "c")
    kube.store.create("configmaps", "default", {"metadata": {"name": "c"}})
    with pytest.raises(ApiError) as refused:
        kube.store.delete("configmaps", "default", "c", uid=old["metadata"]["uid"])
    assert refused.value.code == 409
    assert kube.store.get("configmaps", "default", "c")


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
