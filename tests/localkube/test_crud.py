"""CRUD through kubernetes-asyncio's typed methods: metadata, errors, patches, /status."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, configmap, job, raw_error, status_of
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


async def test_create_job_sets_server_metadata(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    batch = client.BatchV1Api(kube_api_client)
    created = await batch.create_namespaced_job(kube_namespace, job("hello"))
    assert created.metadata.namespace == kube_namespace
    assert len(created.metadata.uid) == 36
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.generation == 1
    age = datetime.datetime.now(datetime.UTC) - created.metadata.creation_timestamp
    assert age < datetime.timedelta(seconds=5)
    assert created.spec.backoff_limit == 6
    assert created.spec.template.metadata.labels["job-name"] == "hello"
    read = await batch.read_namespaced_job("hello", kube_namespace)
    assert read.metadata.uid == created.metadata.uid


async def test_resource_versions_come_from_one_global_counter(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    first = await core.create_namespaced_config_map(kube_namespace, configmap("a"))
    secret = await core.create_namespaced_secret(
        kube_namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={})
    )
    second = await core.create_namespaced_config_map(kube_namespace, configmap("b"))
    versions = [int(o.metadata.resource_version) for o in (first, secret, second)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


async def test_generate_name_gives_a_unique_suffix(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="gen-"), data={})
    names = {
        (await core.create_namespaced_config_map(kube_namespace, body)).metadata.name
        for _ in range(3)
    }
    assert len(names) == 3
    assert all(name.startswith("gen-") and len(name) == 9 for name in names)


async def test_missing_object_is_404_not_found(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    error = await api_error(
        client.BatchV1Api(kube_api_client).read_namespaced_job("nope", kube_namespace)
    )
    assert error.status == 404
    body = status_of(error)
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "nope", "group": "batch", "kind": "jobs"}
    assert body["message"] == 'jobs.batch "nope" not found'


async def test_duplicate_create_is_409_already_exists(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    await core.create_namespaced_config_map(kube_namespace, configmap("dup"))
    error = await api_error(core.create_namespaced_config_map(kube_namespace, configmap("dup")))
    assert error.status == 409
    assert status_of(error)["reason"] == "AlreadyExists"


async def test_create_in_a_missing_namespace_is_404(kube_api_client: ApiClient) -> None:
    core = client.CoreV1Api(kube_api_client)
    error = await api_error(core.create_namespaced_config_map("no-such-namespace", configmap("x")))
    assert error.status == 404
    assert status_of(error)["details"]["kind"] == "namespaces"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadata": {"name": "no-template"}, "spec": {}}, "spec.template"),
        (
            {
                "metadata": {"name": "always"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Always",
                            "containers": [{"name": "c", "image": "i"}],
                        }
                    }
                },
            },
            "spec.template.spec.restartPolicy",
        ),
        (
            {
                "metadata": {"name": "no-containers"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}},
            },
            "spec.template.spec.containers",
        ),
        (
            {
                "metadata": {"name": "Not_DNS"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "c", "image": "i"}],
                        }
                    }
                },
            },
            "metadata.name",
        ),
    ],
)
async def test_invalid_job_is_422(
    kube_api_client: ApiClient, kube_namespace: str, body: Any, field: str
) -> None:
    batch = client.BatchV1Api(kube_api_client)
    code, status = await raw_error(
        batch.create_namespaced_job(kube_namespace, body, _preload_content=False)
    )
    assert code == 422
    assert status["reason"] == "Invalid"
    assert field in [cause["field"] for cause in status["details"]["causes"]]


async def test_pod_without_containers_is_422(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    body: Any = {"metadata": {"name": "empty"}, "spec": {"containers": []}}
    code, status = await raw_error(
        core.create_namespaced_pod(kube_namespace, body, _preload_content=False)
    )
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "spec.containers"


async def test_secret_and_configmap_data_over_1_mib_or_with_bad_keys_are_422(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    mib = 1024 * 1024
    full = base64.b64encode(b"x" * mib).decode()
    await core.create_namespaced_secret(  # exactly 1 MiB: taken
        kube_namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="full"), data={"a": full})
    )
    over = base64.b64encode(b"x" * (mib - 1)).decode()
    cases: list[tuple[Any, Any, str]] = [
        (
            core.create_namespaced_secret,
            {"metadata": {"name": "over"}, "data": {"a": over}, "stringData": {"b": "yy"}},
            "data",
        ),
        (core.create_namespaced_config_map, configmap("over", {}, a="x" * (mib + 1)), ""),
        (
            core.create_namespaced_secret,
            {"metadata": {"name": "k"}, "data": {"a b": ""}},
            "data[a b]",
        ),
        (core.create_namespaced_config_map, configmap("k", {}, **{"..a": "1"}), "data[..a]"),
    ]
    for create, body, field in cases:
        code, status = await raw_error(create(kube_namespace, body, _preload_content=False))
        assert code == 422, status
        assert [cause["field"] for cause in status["details"]["causes"]] == [field]
    names = {s.metadata.name for s in (await core.list_namespaced_secret(kube_namespace)).items}
    assert names == {"full"}


async def test_put_with_stale_resource_version_on_a_lease_is_409_conflict(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    leases = client.CoordinationV1Api(kube_api_client)
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    created = await leases.create_namespaced_lease(kube_namespace, lease)
    created.spec.holder_identity = "b"
    renewed = await leases.replace_namespaced_lease("leader", kube_namespace, created)
    assert renewed.spec.holder_identity == "b"
    assert int(renewed.metadata.resource_version) > int(created.metadata.resource_version)
    created.spec.holder_identity = "c"  # still carries the first resourceVersion
    error = await api_error(leases.replace_namespaced_lease("leader", kube_namespace, created))
    assert error.status == 409
    assert status_of(error)["reason"] == "Conflict"
    current = await leases.read_namespaced_lease("leader", kube_namespace)
    assert current.spec.holder_identity == "b"


async def test_patches_merge_strategic_and_json(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    await core.create_namespaced_config_map(kube_namespace, configmap("p", {"a": "1"}, x="1"))
    strategic = await core.patch_namespaced_config_map(
        "p", kube_namespace, {"metadata": {"labels": {"b": "2"}}, "data": {"x": None, "y": "2"}}
    )
    assert strategic.metadata.labels == {"a": "1", "b": "2"}
    assert strategic.data == {"y": "2"}
    json_patched = await core.patch_namespaced_config_map(
        "p",
        kube_namespace,
        [
            {"op": "test", "path": "/data/y", "value": "2"},
            {"op": "add", "path": "/data/z", "value": "3"},
            {"op": "move", "from": "/data/y", "path": "/data/w"},
            {"op": "remove", "path": "/metadata/labels/a"},
        ],
    )
    assert json_patched.data == {"w": "2", "z": "3"}
    assert json_patched.metadata.labels == {"b": "2"}
    failed = await api_error(
        core.patch_namespaced_config_map(
            "p", kube_namespace, [{"op": "test", "path": "/data/z", "value": "0"}]
        )
    )
    assert failed.status == 422


async def test_strategic_patch_merges_conditions_by_type(
    private_kube: tuple[LocalKube, ApiClient],
) -> None:
    kube_api_client = private_kube[1]
    kube_namespace = "default"
    batch = client.BatchV1Api(kube_api_client)
    await batch.create_namespaced_job(kube_namespace, job("conds", suspend=True))
    first = {"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}
    second = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}}
    await batch.patch_namespaced_job_status("conds", kube_namespace, first)
    patched = await batch.patch_namespaced_job_status("conds", kube_namespace, second)
    assert {c.type for c in patched.status.conditions} >= {"Suspended", "Failed"}


async def test_status_subresource_changes_only_status(
    private_kube: tuple[LocalKube, ApiClient],
) -> None:
    kube_api_client = private_kube[1]
    kube_namespace = "default"
    batch = client.BatchV1Api(kube_api_client)
    created = await batch.create_namespaced_job(kube_namespace, job("st", suspend=True))
    body = {"metadata": {"labels": {"ignored": "yes"}}, "status": {"active": 7}}
    patched = await batch.patch_namespaced_job_status("st", kube_namespace, body)
    assert patched.status.active == 7
    assert "ignored" not in (patched.metadata.labels or {})
    assert patched.metadata.generation == created.metadata.generation
    # and the main resource ignores status
    spec_only = await batch.patch_namespaced_job(
        "st", kube_namespace, {"status": {"active": 1}, "spec": {"suspend": False}}
    )
    assert spec_only.status.active == 7
    assert spec_only.metadata.generation == created.metadata.generation + 1


async def test_replace_bumps_generation_only_on_spec_change(
    private_kube: tuple[LocalKube, ApiClient],
) -> None:
    kube_api_client = private_kube[1]
    kube_namespace = "default"
    batch = client.BatchV1Api(kube_api_client)
    created = await batch.create_namespaced_job(kube_namespace, job("gen", suspend=True))
    created.metadata.labels = {"k": "v"}
    relabelled = await batch.replace_namespaced_job("gen", kube_namespace, created)
    assert relabelled.metadata.generation == 1
    relabelled.spec.suspend = False
    resumed = await batch.replace_namespaced_job("gen", kube_namespace, relabelled)
    assert resumed.metadata.generation == 2


async def test_core_kinds_round_trip(kube_api_client: ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(kube_api_client)
    secret = await core.create_namespaced_secret(
        kube_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="sec"), data={"a": "Yg=="}),
    )
    assert secret.type == "Opaque"
    account = await core.create_namespaced_service_account(
        kube_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )
    assert account.metadata.name == "runner"
    accounts = await core.list_namespaced_service_account(kube_namespace)
    assert {a.metadata.name for a in accounts.items} == {"default", "runner"}
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="ev1"),
        involved_object=client.V1ObjectReference(kind="Job", name="j", namespace=kube_namespace),
        reason="FailedCreate",
        message="boom",
        type="Warning",
    )
    await core.create_namespaced_event(kube_namespace, event)
    events = await core.list_namespaced_event(
        kube_namespace, field_selector="reason=FailedCreate,involvedObject.name=j"
    )
    assert [e.message for e in events.items] == ["boom"]
    namespaces = await core.list_namespace()
    assert {"default", kube_namespace} <= {n.metadata.name for n in namespaces.items}
    deleted = await core.delete_namespaced_secret("sec", kube_namespace)
    assert deleted.status == "Success"
    assert (await api_error(core.read_namespaced_secret("sec", kube_namespace))).status == 404


async def test_immutable_fields_are_refused_as_on_a_real_cluster(
    private_kube: tuple[LocalKube, ApiClient],
) -> None:
    batch, core = client.BatchV1Api(private_kube[1]), client.CoreV1Api(private_kube[1])
    await batch.create_namespaced_job("default", job("imm", suspend=True))
    relabel = {"spec": {"template": {"metadata": {"labels": {"extra": "ok"}}}}}
    relabelled = await batch.patch_namespaced_job("imm", "default", relabel)
    assert relabelled.spec.template.metadata.labels["extra"] == "ok"
    command = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/command", "value": ["false"]}
    ]
    error = await api_error(batch.patch_namespaced_job("imm", "default", command))
    assert error.status == 422
    assert status_of(error)["details"]["causes"][0]["field"] == "spec.template"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="imm-pod"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="one")]),
    )
    await core.create_namespaced_pod("default", pod)
    new_image = [{"op": "replace", "path": "/spec/containers/0/image", "value": "two"}]
    assert (await core.patch_namespaced_pod("imm-pod", "default", new_image)).spec.containers[
        0
    ].image == "two"
    new_command = [{"op": "add", "path": "/spec/containers/0/command", "value": ["x"]}]
    assert (
        await api_error(core.patch_namespaced_pod("imm-pod", "default", new_command))
    ).status == 422


async def test_log_of_a_missing_pod_is_404(kube_api_client: ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(kube_api_client)
    error = await api_error(core.read_namespaced_pod_log("ghost", kube_namespace))
    assert error.status == 404
    assert status_of(error)["details"] == {"name": "ghost", "kind": "pods"}


async def test_discovery_lists_the_served_resources(kube_api_client: ApiClient) -> None:
    groups = await client.ApisApi(kube_api_client).get_api_versions()
    assert {g.name for g in groups.groups} >= {
        "batch",
        "coordination.k8s.io",
        "authorization.k8s.io",
    }
    batch = await client.BatchV1Api(kube_api_client).get_api_resources()
    assert {r.name for r in batch.resources} == {"jobs", "jobs/status"}
    core = await client.CoreV1Api(kube_api_client).get_api_resources()
    assert {
        "pods",
        "pods/log",
        "pods/status",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "events",
        "namespaces",
    } <= {r.name for r in core.resources}
