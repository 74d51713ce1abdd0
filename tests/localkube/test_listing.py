"""List: label and field selectors, malformed selectors, pagination, list resourceVersion."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, configmap, status_of
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio
Kube = tuple[LocalKube, ApiClient]


@pytest.fixture
async def labelled(kube_api_client: ApiClient, kube_namespace: str) -> client.CoreV1Api:
    core = client.CoreV1Api(kube_api_client)
    for name, labels in {
        "web-prod": {"app": "web", "env": "prod"},
        "web-dev": {"app": "web", "env": "dev"},
        "db-prod": {"app": "db", "env": "prod"},
        "bare": {},
    }.items():
        await core.create_namespaced_config_map(kube_namespace, configmap(name, labels))
    return core


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", {"web-prod", "web-dev"}),
        ("app==web,env=prod", {"web-prod"}),
        ("app!=web", {"db-prod", "bare"}),
        ("env in (prod, staging)", {"web-prod", "db-prod"}),
        ("env notin (prod)", {"web-dev", "bare"}),
        ("app", {"web-prod", "web-dev", "db-prod"}),
        ("!app", {"bare"}),
        ("app in (web,db),env!=dev", {"web-prod", "db-prod"}),
    ],
)
async def test_label_selectors(
    labelled: client.CoreV1Api, kube_namespace: str, selector: str, expected: set[str]
) -> None:
    listed = await labelled.list_namespaced_config_map(kube_namespace, label_selector=selector)
    assert {item.metadata.name for item in listed.items} == expected


@pytest.mark.parametrize("selector", ["app in (web", "=web", "app=we b", "app=(x)", "a,,b"])
async def test_malformed_label_selector_is_400(
    labelled: client.CoreV1Api, kube_namespace: str, selector: str
) -> None:
    error = await api_error(
        labelled.list_namespaced_config_map(kube_namespace, label_selector=selector)
    )
    assert error.status == 400
    assert status_of(error)["reason"] == "BadRequest"


async def test_field_selectors(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    for name in ("p1", "p2", "p3"):
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]),
        )
        await core.create_namespaced_pod("default", pod)
    kube.store.update_status("pods", "default", "p2", {"phase": "Running"})
    running = await core.list_namespaced_pod("default", field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["p2"]
    not_running = await core.list_namespaced_pod("default", field_selector="status.phase!=Running")
    assert [p.metadata.name for p in not_running.items] == ["p1", "p3"]
    by_name = await core.list_pod_for_all_namespaces(
        field_selector="metadata.name=p3,metadata.namespace=default"
    )
    assert [p.metadata.name for p in by_name.items] == ["p3"]
    error = await api_error(core.list_namespaced_pod("default", field_selector="spec.image=x"))
    assert error.status == 400


async def test_pagination_with_limit_and_continue(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    for index in range(7):
        await core.create_namespaced_config_map(kube_namespace, configmap(f"cm-{index}"))
    pages, token, remaining = [], "", []
    while True:
        page = await core.list_namespaced_config_map(kube_namespace, limit=3, _continue=token)
        assert int(page.metadata.resource_version) > 0
        pages.append([item.metadata.name for item in page.items])
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue
        if not token:
            break
    assert pages == [["cm-0", "cm-1", "cm-2"], ["cm-3", "cm-4", "cm-5"], ["cm-6"]]
    assert remaining == [4, 1, None]


async def test_invalid_continue_token_is_400(
    kube_api_client: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    error = await api_error(
        core.list_namespaced_config_map(kube_namespace, limit=1, _continue="%%%")
    )
    assert error.status == 400


async def test_list_across_namespaces(kube_api_client: ApiClient, kube_namespace: str) -> None:
    core = client.CoreV1Api(kube_api_client)
    await core.create_namespaced_config_map(
        kube_namespace, configmap("everywhere", {"mark": kube_namespace})
    )
    listed = await core.list_config_map_for_all_namespaces(label_selector=f"mark={kube_namespace}")
    assert [(i.metadata.namespace, i.metadata.name) for i in listed.items] == [
        (kube_namespace, "everywhere")
    ]
