"""Pod logs: what ``pods/{name}/log`` returns, through kubernetes-asyncio and raw HTTP.

Pods are driven by the scripted kubelet so every line and every instance is the test's.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from kubernetes_asyncio import client, config

from zwmd.localkube import ADMIN_HEADERS, LocalKube
from zwmd.localkube.errors import ApiError
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.localkube.podlogs import PodLogs, format_timestamp, parse_timestamp
from zwmd.localkube.store import Store

pytestmark = pytest.mark.anyio

NS = "default"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[LocalKube, ScriptedKubelet, Any]]:
    async with LocalKube(kubelet="scripted") as localkube:
        api = await config.new_client_from_config(
            config_file=str(localkube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield localkube, localkube.kubelet, api
        finally:
            await api.close()


def make_pod(store: Store, name: str, *containers: str) -> None:
    store.create(
        "pods",
        NS,
        {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": c, "image": "x"} for c in containers or ("main",)]},
        },
    )


def message(error: Any) -> str:
    """The message of the Status body of an ApiException."""
    text: str = json.loads(error.body)["message"]
    return text


async def read(api: Any, pod: str, **options: Any) -> str:
    text: str = await client.CoreV1Api(api).read_namespaced_pod_log(pod, NS, **options)
    return text


async def test_timestamps_are_rfc3339_with_nanoseconds_like_the_kubelet(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "ts")
    kubelet.set_running(NS, "ts")
    before = time.time_ns()
    kubelet.log(NS, "ts", "hello world", "second")

    text = await read(api, "ts", timestamps=True)

    lines = text.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["hello world", "second"]
    stamp = lines[0].split(" ", 1)[0]
    assert STAMP.match(stamp)
    assert before - 1_000_000_000 <= parse_timestamp(stamp) <= time.time_ns()
    assert await read(api, "ts") == "hello world\nsecond\n"


def test_timestamp_formatting_round_trips() -> None:
    moment = datetime.datetime(2026, 11, 22, 3, 4, 5, tzinfo=datetime.UTC)
    nanos = int(moment.timestamp()) * 1_000_000_000 + 123_456_789
    assert format_timestamp(nanos) == "2026-11-22T03:04:05.123456789Z"
    assert format_timestamp(nanos - 123_456_789) == "2026-11-22T03:04:05.000000000Z"
    assert parse_timestamp("2026-11-22T03:04:05.123456789Z") == nanos
    assert parse_timestamp("2026-11-22T04:04:05+01:00") == nanos - 123_456_789
    with pytest.raises(ApiError) as caught:
        parse_timestamp("yesterday")
    assert caught.value.code == 400


async def test_tail_lines_and_since_seconds(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "tail")
    kubelet.set_running(NS, "tail")
    kubelet.log(NS, "tail", *[f"line {i}" for i in range(5)])

    assert await read(api, "tail", tail_lines=2) == "line 3\nline 4\n"
    assert await read(api, "tail", tail_lines=0) == ""
    assert await read(api, "tail", tail_lines=50) == "".join(f"line {i}\n" for i in range(5))

    await anyio.sleep(1.2)
    kubelet.log(NS, "tail", "fresh")
    assert await read(api, "tail", since_seconds=1) == "fresh\n"


async def test_since_time_filters_by_the_line_timestamps(kube: Any) -> None:
    localkube, kubelet, _api = kube
    make_pod(localkube.store, "since")
    kubelet.set_running(NS, "since")
    kubelet.log(NS, "since", "old")
    await anyio.sleep(1.0 - time.time() % 1.0 + 0.01)  # into the next second
    kubelet.log(NS, "since", "new")
    second = datetime.datetime.fromtimestamp(int(time.time()), tz=datetime.UTC)
    since = second.strftime("%Y-%m-%dT%H:%M:%SZ")

    async with (
        aiohttp.ClientSession(headers=ADMIN_HEADERS) as session,
        session.get(
            f"{localkube.url}/api/v1/namespaces/{NS}/pods/since/log", params={"sinceTime": since}
        ) as response,
    ):
        assert response.status == 200
        assert await response.text() == "new\n"


async def test_follow_streams_new_lines_until_the_container_ends(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "follow")
    kubelet.set_running(NS, "follow")
    kubelet.log(NS, "follow", "one")
    response: Any = await client.CoreV1Api(api).read_namespaced_pod_log(
        "follow", NS, follow=True, _preload_content=False
    )
    try:
        with anyio.fail_after(5):
            assert await response.content.readline() == b"one\n"
            kubelet.log(NS, "follow", "two", "three")
            assert await response.content.readline() == b"two\n"
            assert await response.content.readline() == b"three\n"
            kubelet.succeed(NS, "follow")
            assert await response.content.read() == b""  # the stream ends with the container
    finally:
        response.release()


async def test_follow_ends_when_the_pod_is_deleted(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "doomed")
    kubelet.set_running(NS, "doomed")
    kubelet.log(NS, "doomed", "last words")
    response: Any = await client.CoreV1Api(api).read_namespaced_pod_log(
        "doomed", NS, follow=True, _preload_content=False
    )
    try:
        with anyio.fail_after(5):
            assert await response.content.readline() == b"last words\n"
            localkube.store.delete("pods", NS, "doomed")
            assert await response.content.read() == b""
    finally:
        response.release()


async def test_previous_reads_the_last_terminated_instance(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "prev")
    kubelet.set_running(NS, "prev")
    with pytest.raises(client.ApiException) as caught:
        await read(api, "prev", previous=True)
    assert caught.value.status == 400
    assert message(caught.value) == 'previous terminated container "main" in pod "prev" not found'

    kubelet.log(NS, "prev", "first life")
    kubelet.set_running(NS, "prev")  # the container restarts
    kubelet.log(NS, "prev", "second life")

    assert await read(api, "prev", previous=True) == "first life\n"
    assert await read(api, "prev") == "second life\n"


async def test_container_errors_are_400_and_a_missing_pod_404(kube: Any) -> None:
    localkube, kubelet, api = kube
    make_pod(localkube.store, "two", "main", "sidecar")
    make_pod(localkube.store, "fresh")
    kubelet.set_running(NS, "two", container="main")
    kubelet.log(NS, "two", "from main", container="main")

    with pytest.raises(client.ApiException) as caught:
        await read(api, "two")
    assert caught.value.status == 400
    assert (
        message(caught.value)
        == "a container name must be specified for pod two, choose one of: [main sidecar]"
    )
    with pytest.raises(client.ApiException) as caught:
        await read(api, "two", container="nope")
    assert caught.value.status == 400
    assert message(caught.value) == "container nope is not valid for pod two"
    with pytest.raises(client.ApiException) as caught:
        await read(api, "fresh")
    assert caught.value.status == 400
    assert (
        message(caught.value)
        == 'container "main" in pod "fresh" is waiting to start: ContainerCreating'
    )
    with pytest.raises(client.ApiException) as caught:
        await read(api, "ghost")
    assert caught.value.status == 404
    assert await read(api, "two", container="main") == "from main\n"


async def test_partial_lines_are_held_until_newline_or_end() -> None:
    store = Store()
    logs = PodLogs(store)
    make_pod(store, "p")
    logs.append(NS, "p", "main", b"hel")
    logs.append(NS, "p", "main", b"lo\nwor")
    assert logs.lines(NS, "p", "main") == [b"hello\n"]
    logs.close(NS, "p", "main")
    assert logs.lines(NS, "p", "main") == [b"hello\n", b"wor\n"]
    chunks = logs.stream(
        NS,
        "p",
        container=None,
        follow=True,
        timestamps=False,
        tail_lines=None,
        since_time=None,
        previous=False,
    )
    assert b"".join([chunk async for chunk in chunks]) == b"hello\nwor\n"


async def test_a_hundred_thousand_lines_followed_while_written() -> None:
    store = Store()
    logs = PodLogs(store)
    make_pod(store, "big")
    logs.start(NS, "big", "main")
    received: list[bytes] = []

    async def follow() -> None:
        chunks = logs.stream(
            NS,
            "big",
            container="main",
            follow=True,
            timestamps=True,
            tail_lines=None,
            since_time=None,
            previous=False,
        )
        async for chunk in chunks:
            received.append(chunk)

    started = time.perf_counter()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            for block in range(1000):
                data = b"".join(b"line %d\n" % (block * 100 + i) for i in range(100))
                logs.append(NS, "big", "main", data)
                await anyio.lowlevel.checkpoint()
            logs.close(NS, "big", "main")
    elapsed = time.perf_counter() - started

    lines = b"".join(received).splitlines()
    assert len(lines) == 100_000
    assert lines[-1].endswith(b" line 99999")
    assert len(received) <= 2000  # chunks, not one write per line
    assert elapsed < 5

    started = time.perf_counter()
    tail = logs.stream(
        NS,
        "big",
        container="main",
        follow=False,
        timestamps=False,
        tail_lines=3,
        since_time=None,
        previous=False,
    )
    assert b"".join([c async for c in tail]) == b"line 99997\nline 99998\nline 99999\n"
    assert time.perf_counter() - started < 0.05


async def test_a_followed_log_answers_before_the_first_line(
    kube: tuple[LocalKube, ScriptedKubelet, Any],
) -> None:
    """As a kubelet does: the status and headers come at once, the lines when written."""
    localkube, kubelet, _ = kube
    make_pod(localkube.store, "quiet")
    kubelet.set_running(NS, "quiet")
    url = f"{localkube.url}/api/v1/namespaces/{NS}/pods/quiet/log?follow=true"
    async with aiohttp.ClientSession(headers=ADMIN_HEADERS) as session:
        with anyio.fail_after(5):  # a hang guard: the headers used to wait for a line
            response = await session.get(url)
        async with response:
            assert response.status == 200
            kubelet.log(NS, "quiet", "first words")
            with anyio.fail_after(5):
                line = await response.content.readline()
            assert line == b"first words\n"
