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
from zwmd.localkube import ADMIN_HEADERS, LocalKube

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
    async with aiohttp.ClientSession(base_url=kube.url, headers=ADMIN_HEADERS) as session:
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
    async with aiohttp.ClientSession(base_url=kube.url, headers=ADMIN_HEADERS) as session:
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
    async with aiohttp.ClientSession(base_url=kube.url, headers=ADMIN_HEADERS) as session:
        async with session.post("/localkube/faults/outage", json={"seconds": 1.0}) as response:
            assert response.status == 200
        await anyio.sleep(0.3)
        with pytest.raises(aiohttp.ClientConnectorError):  # refused, as a stopped server
            async with aiohttp.ClientSession(base_url=kube.url, headers=ADMIN_HEADERS) as fresh:
                await fresh.get("/api/v1/namespaces/default/configmaps")
    with pytest.raises(ValueError, match="seconds"):
        kube.faults.outage(0)
    await anyio.sleep(1.0)
    listed = await core.list_namespaced_config_map("default")
    assert [item.metadata.name for item in listed.items] == ["kept"]


# --- silent stalls, from a plain HTTP client's view -------------------------------------

NS = "/api/v1/namespaces/default"


async def _quiet(stream: aiohttp.StreamReader, seconds: float) -> bool:
    """Whether ``stream`` stays silent (no byte, no end) for ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            await stream.readany()
    except TimeoutError:
        return True
    return False


def _pod_with_log(kube: LocalKube, *lines: bytes) -> None:
    kube.store.create(
        "pods",
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "any"}]}},
    )
    kube.pod_logs.start("default", "p", "c")
    for line in lines:
        kube.pod_logs.append("default", "p", "c", line)


async def test_a_stall_holds_open_streams_while_new_connections_work(private_kube: Kube) -> None:
    kube, _ = private_kube
    _pod_with_log(kube, b"one\n")
    async with (
        aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as old,
        aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as new,
    ):
        follow = await old.get(f"{NS}/pods/p/log", params={"follow": "true"})
        assert await follow.content.readline() == b"one\n"
        assert kube.faults.stall() >= 1
        kube.pod_logs.append("default", "p", "c", b"two\n")
        assert await _quiet(follow.content, 0.5)  # no byte, and no close either
        assert not follow.content.at_eof()
        fresh = await new.get(f"{NS}/pods/p/log")  # a new connection is served as usual
        assert await fresh.read() == b"one\ntwo\n"
        assert kube.faults.end_stall() >= 1
        with anyio.fail_after(5):
            assert await follow.content.readline() == b"two\n"  # held bytes move on
        follow.close()


async def test_a_stall_holds_requests_on_kept_alive_connections(private_kube: Kube) -> None:
    kube, _ = private_kube
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(kube.url, timeout=timeout, headers=ADMIN_HEADERS) as old:
        assert (await old.get(f"{NS}/configmaps")).status == 200  # its connection stays open
        kube.faults.stall()
        with pytest.raises(TimeoutError):  # neither answered nor refused: it times out
            await old.get(f"{NS}/configmaps")
        async with aiohttp.ClientSession(kube.url, timeout=timeout, headers=ADMIN_HEADERS) as new:
            assert (await new.get(f"{NS}/configmaps")).status == 200
        kube.faults.end_stall()


async def test_a_stall_of_everything_for_some_seconds_delays_new_connections(
    private_kube: Kube,
) -> None:
    kube, _ = private_kube
    kube.faults.stall(everything=True, seconds=0.5)
    started = time.monotonic()
    async with aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as session:
        response = await session.get(f"{NS}/configmaps")
        assert response.status == 200
    assert time.monotonic() - started >= 0.5
    assert not kube.faults.stalled


async def test_a_stall_matching_watches_spares_other_streams_over_http(
    private_kube: Kube,
) -> None:
    kube, _ = private_kube
    _pod_with_log(kube, b"one\n")
    async with aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as session:
        watch = await session.get(
            f"{NS}/configmaps", params={"watch": "true", "resourceVersion": "0"}
        )
        follow = await session.get(f"{NS}/pods/p/log", params={"follow": "true"})
        assert await follow.content.readline() == b"one\n"
        async with aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as control:
            answer = await control.post(
                "/localkube/faults/stall", json={"verb": "watch", "resource": "configmaps"}
            )
            assert (await answer.json())["stalled"] == 1
            kube.store.create("configmaps", "default", {"metadata": {"name": "c"}, "data": {}})
            kube.pod_logs.append("default", "p", "c", b"two\n")
            with anyio.fail_after(5):
                assert await follow.content.readline() == b"two\n"  # not stalled
            assert await _quiet(watch.content, 0.5)
            answer = await control.post("/localkube/faults/end-stall", json={"drop": True})
            assert (await answer.json())["resumed"] == 1
        with pytest.raises(aiohttp.ClientError), anyio.fail_after(5):
            await watch.content.read()  # reset: the event held back never comes
        follow.close()


async def test_a_stall_request_with_bad_seconds_is_refused(private_kube: Kube) -> None:
    kube, _ = private_kube
    async with aiohttp.ClientSession(kube.url, headers=ADMIN_HEADERS) as control:
        answer = await control.post("/localkube/faults/stall", json={"seconds": "soon"})
        assert answer.status == 400
        assert "seconds" in (await answer.json())["message"]
    assert not kube.faults.stalled
