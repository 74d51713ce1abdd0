"""Watch on the wire: initial ADDED events, live events, resume, 410, bookmarks, timeouts."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import anyio
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import configmap
from zwmd.localkube import ADMIN_HEADERS, LocalKube

pytestmark = pytest.mark.anyio
Kube = tuple[LocalKube, ApiClient]


async def test_watch_from_zero_sends_existing_objects_as_added(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    for name in ("a", "b", "c"):
        await core.create_namespaced_config_map("default", configmap(name))
    seen = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            core.list_namespaced_config_map, "default", resource_version="0", timeout_seconds=1
        ):
            seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


async def test_watch_delivers_live_changes_in_order(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map("default")
    seen: list[tuple[str, str]] = []

    async def follow() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=2,
            ):
                seen.append((event["type"], event["object"].data.get("k", "")))
                if event["type"] == "DELETED":
                    return

    async with anyio.create_task_group() as group:
        group.start_soon(follow)
        await anyio.sleep(0.1)
        await core.create_namespaced_config_map("default", configmap("live", k="1"))
        await core.patch_namespaced_config_map("live", "default", {"data": {"k": "2"}})
        await core.delete_namespaced_config_map("live", "default")
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")]


async def test_watch_resumes_from_a_resource_version(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map("default", configmap("r", k="1"))
    await core.patch_namespaced_config_map("r", "default", {"data": {"k": "2"}})
    await core.delete_namespaced_config_map("r", "default")
    response: Any = await core.list_namespaced_config_map(
        "default",
        watch=True,
        resource_version=created.metadata.resource_version,
        timeout_seconds=1,
        _preload_content=False,
    )
    lines = (await response.read()).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions[0] > int(created.metadata.resource_version)
    assert versions == sorted(versions)


async def test_resume_after_compaction_is_410_expired(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map("default", configmap("old"))
    await core.patch_namespaced_config_map("old", "default", {"data": {"k": "new"}})
    kube.faults.compact_history()
    response: Any = await core.list_namespaced_config_map(
        "default",
        watch=True,
        resource_version=created.metadata.resource_version,
        _preload_content=False,
    )
    assert response.status == 200
    events = [json.loads(line) for line in (await response.read()).splitlines()]
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"

    async def resume() -> None:
        async with watch.Watch() as stream:
            async for _ in stream.stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=created.metadata.resource_version,
                timeout_seconds=5,
            ):
                pass

    with pytest.raises(client.ApiException) as caught:
        await resume()
    assert caught.value.status == 410


async def test_history_is_bounded(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    first = await core.create_namespaced_config_map("default", configmap("churn"))
    for index in range(kube.store.history.size + 5):
        await core.patch_namespaced_config_map("churn", "default", {"data": {"k": str(index)}})
    response: Any = await core.list_namespaced_config_map(
        "default",
        watch=True,
        resource_version=first.metadata.resource_version,
        _preload_content=False,
    )
    event = json.loads(await response.content.readline())
    response.release()
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


async def test_bookmarks_carry_the_current_resource_version(private_kube: Kube) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", configmap("bm"))
    bookmarks: list[Any] = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version="0",
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        ):
            if event["type"] == "BOOKMARK":
                bookmarks.append(event["raw_object"])
    assert len(bookmarks) >= 2  # one every 0.2 s for a second
    assert bookmarks[-1]["metadata"]["resourceVersion"] == kube.store.resource_version
    assert bookmarks[-1]["kind"] == "ConfigMap"


async def test_no_bookmarks_unless_asked(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    response: Any = await core.list_namespaced_config_map(
        "default", watch=True, resource_version="0", timeout_seconds=1, _preload_content=False
    )
    assert b"BOOKMARK" not in await response.read()


async def test_timeout_seconds_ends_the_stream(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    started = time.monotonic()
    response: Any = await core.list_namespaced_config_map(
        "default", watch=True, timeout_seconds=1, _preload_content=False
    )
    assert await response.read() == b""
    assert 0.9 <= time.monotonic() - started < 3


@pytest.mark.parametrize("flag", ["True", "true", "1"])
async def test_watch_flag_accepted_in_any_case(private_kube: Kube, flag: str) -> None:
    kube, _ = private_kube
    kube.store.create("configmaps", "default", {"metadata": {"name": "flag"}})
    url = f"{kube.url}/api/v1/namespaces/default/configmaps"
    params = {"watch": flag, "resourceVersion": "0", "timeoutSeconds": "1"}
    async with (
        aiohttp.ClientSession(headers=ADMIN_HEADERS) as session,
        session.get(url, params=params) as response,
    ):
        assert response.headers["Transfer-Encoding"] == "chunked"
        event = json.loads(await response.content.readline())
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == "flag"


async def test_label_selector_watch_sees_objects_leave_the_selection(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", configmap("sel", {"team": "a"}))
    response: Any = await core.list_namespaced_config_map(
        "default",
        watch=True,
        resource_version="0",
        label_selector="team=a",
        timeout_seconds=1,
        _preload_content=False,
    )
    await core.patch_namespaced_config_map(
        "sel", "default", {"metadata": {"labels": {"team": "b"}}}
    )
    await core.create_namespaced_config_map("default", configmap("other", {"team": "b"}))
    events = [json.loads(line) for line in (await response.read()).splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "sel"),
        ("DELETED", "sel"),
    ]


async def test_dropped_watch_closes_and_the_client_resumes_without_loss(
    private_kube: Kube,
) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    response: Any = await core.list_namespaced_config_map(
        "default", watch=True, _preload_content=False
    )
    await anyio.sleep(0.05)
    assert kube.faults.drop_watches() == 1
    with anyio.fail_after(2):
        assert await response.content.readline() == b""
    response.release()

    names: list[str] = []

    async def follow() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespaced_config_map, "default", resource_version="0"
            ):
                names.append(event["object"].metadata.name)
                if len(names) == 2:
                    return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(follow)
            await core.create_namespaced_config_map("default", configmap("before"))
            await anyio.sleep(0.1)
            kube.faults.drop_watches()
            await core.create_namespaced_config_map("default", configmap("after"))
    assert names == ["before", "after"]
