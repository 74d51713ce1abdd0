"""Fault injection, in-process and over HTTP, seen through kubernetes-asyncio."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import anyio
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, configmap, status_of
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio
Kube = tuple[LocalKube, ApiClient]


async def test_injected_429_carries_retry_after(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    kube.faults.fail_next(2, status=429, retry_after=7, match=("list", "configmaps"))
    for _ in range(2):
        error = await api_error(core.list_namespaced_config_map("default"))
        assert error.status == 429
        assert error.headers["Retry-After"] == "7"
        body = status_of(error)
        assert body["reason"] == "TooManyRequests"
        assert body["details"]["retryAfterSeconds"] == 7
    listed = await core.list_namespaced_config_map("default")
    assert listed.items == []


async def test_injected_500_only_hits_matching_requests(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    kube.faults.fail_next(1, status=500, match=("create", "configmaps"))
    await core.list_namespaced_config_map("default")  # not a match
    error = await api_error(core.create_namespaced_config_map("default", configmap("x")))
    assert error.status == 500
    assert "Retry-After" not in error.headers
    assert status_of(error)["reason"] == "InternalError"
    created = await core.create_namespaced_config_map("default", configmap("x"))
    assert created.metadata.name == "x"


async def test_latency_delays_requests(private_kube: Kube) -> None:
    kube, api = private_kube
    kube.faults.latency = 0.2
    started = time.monotonic()
    await client.CoreV1Api(api).list_namespaced_config_map("default")
    assert time.monotonic() - started >= 0.2


async def test_faults_over_http(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map("default", configmap("h"))
    async with aiohttp.ClientSession(base_url=kube.url) as session:
        response = await session.post(
            "/localkube/faults/fail-next",
            json={"count": 1, "status": 429, "retry_after": 2, "verb": "get"},
        )
        assert response.status == 200
        error = await api_error(core.read_namespaced_config_map("h", "default"))
        assert error.status == 429
        assert error.headers["Retry-After"] == "2"
        await core.patch_namespaced_config_map("h", "default", {"data": {"k": "2"}})
        assert (await session.post("/localkube/faults/compact")).status == 200
        watched: Any = await core.list_namespaced_config_map(
            "default",
            watch=True,
            resource_version=created.metadata.resource_version,
            _preload_content=False,
        )
        assert b'"code":410' in await watched.content.readline()
        watched.release()
        await session.post("/localkube/faults/latency", json={"seconds": 0.3})
        started = time.monotonic()
        await core.list_namespaced_config_map("default")
        assert time.monotonic() - started >= 0.3
        await session.post("/localkube/faults/reset")
        assert kube.faults.latency == 0.0


async def test_self_subject_access_review_allows_unless_denied(private_kube: Kube) -> None:
    kube, api = private_kube
    authz = client.AuthorizationV1Api(api)

    def review(verb: str, resource: str) -> client.V1SelfSubjectAccessReview:
        attributes = client.V1ResourceAttributes(
            verb=verb, resource=resource, group="batch", namespace="default"
        )
        return client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        )

    assert (await authz.create_self_subject_access_review(review("create", "jobs"))).status.allowed
    kube.faults.deny("create", "jobs")
    denied = await authz.create_self_subject_access_review(review("create", "jobs"))
    assert denied.status.allowed is False
    assert denied.status.reason
    other = await authz.create_self_subject_access_review(review("watch", "jobs"))
    assert other.status.allowed is True


async def test_a_fraction_of_writes_fails_for_a_while_and_reads_never(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    kube.faults.fail_fraction(0.3, seconds=30, statuses=(500, 429), seed=3)
    statuses: list[int] = []
    for i in range(200):
        try:
            await core.create_namespaced_config_map("default", configmap(f"f{i}"))
            statuses.append(201)
        except client.ApiException as error:
            statuses.append(error.status)
    failed = [s for s in statuses if s != 201]
    assert 30 <= len(failed) <= 90  # about 30 % of 200
    assert set(failed) == {500, 429}
    assert kube.faults.injected == len(failed)
    for _ in range(20):
        await core.list_namespaced_config_map("default")  # reads are not touched
    listed = await core.list_namespaced_config_map("default")
    assert len(listed.items) == statuses.count(201)  # a refused create wrote nothing


async def test_a_fraction_rule_ends_and_is_driven_over_http(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    async with aiohttp.ClientSession(base_url=kube.url) as session:
        body = {"fraction": 1.0, "seconds": 0.5, "statuses": [503], "verbs": ["create"]}
        async with session.post("/localkube/faults/fail-fraction", json=body) as response:
            assert response.status == 200
        error = await api_error(core.create_namespaced_config_map("default", configmap("a")))
        assert error.status == 503
        async with session.get("/localkube/faults") as response:
            assert (await response.json())["injected"] == 1
        bad = {"fraction": 2}
        async with session.post("/localkube/faults/fail-fraction", json=bad) as response:
            assert response.status == 400
            assert "fraction" in (await response.json())["message"]
    await anyio.sleep(0.6)  # the rule's half second is over
    created = await core.create_namespaced_config_map("default", configmap("a"))
    assert created.metadata.name == "a"


async def test_an_outage_refuses_connections_then_serves_the_same_objects(
    private_kube: Kube,
) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", configmap("kept"))
    async with aiohttp.ClientSession(base_url=kube.url) as session:
        async with session.post("/localkube/faults/outage", json={"seconds": 1.0}) as response:
            assert response.status == 200
        await anyio.sleep(0.3)
        with pytest.raises(aiohttp.ClientConnectorError):  # refused, as a stopped server
            async with aiohttp.ClientSession(base_url=kube.url) as fresh:
                await fresh.get("/api/v1/namespaces/default/configmaps")
    with pytest.raises(ValueError, match="seconds"):
        kube.faults.outage(0)
    await anyio.sleep(1.0)
    listed = await core.list_namespaced_config_map("default")
    assert [item.metadata.name for item in listed.items] == ["kept"]
