"""Kubernetes API request metrics through a real kubernetes-asyncio ApiClient.

An aiohttp server on 127.0.0.1 answers like an apiserver would for the paths used.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_process import free_port
from zwmd.kube.instrumentation import classify, instrument_api_client, resource_of
from zwmd.metrics import Metrics

pytestmark = pytest.mark.anyio


async def list_jobs(request: web.Request) -> web.StreamResponse:
    if request.query.get("watch") in ("True", "true", "1"):
        response = web.StreamResponse()
        await response.prepare(request)
        event = {"type": "ADDED", "object": {"kind": "Job", "metadata": {"name": "a"}}}
        await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response
    return web.json_response(
        {
            "kind": "JobList",
            "apiVersion": "batch/v1",
            "metadata": {"resourceVersion": "7"},
            "items": [],
        }
    )


async def read_job(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "code": 404,
        },
        status=404,
    )


async def pod_log(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


@pytest.fixture
async def apiserver() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/apis/batch/v1/namespaces/{ns}/jobs", list_jobs)
    app.router.add_get("/apis/batch/v1/namespaces/{ns}/jobs/{name}", read_job)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", pod_log)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def requests_total(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    body, _ = metrics.exposition()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "zwmd_kube_requests":
            for s in family.samples:
                if s.name == "zwmd_kube_requests_total":
                    out[(s.labels["verb"], s.labels["resource"], s.labels["code"])] = s.value
    return out


def latency_count(metrics: Metrics, verb: str, resource: str) -> float:
    body, _ = metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "zwmd_kube_request_duration_seconds_count" and s.labels == {
                "verb": verb,
                "resource": resource,
            }:
                return s.value
    return 0.0


async def test_requests_are_counted_by_verb_resource_and_code(apiserver: str) -> None:
    metrics = Metrics()
    async with client.ApiClient(client.Configuration(host=apiserver)) as api:
        instrument_api_client(api, metrics)
        instrument_api_client(api, metrics)  # idempotent
        batch = client.BatchV1Api(api)
        core = client.CoreV1Api(api)

        jobs = await batch.list_namespaced_job("x", label_selector="zwmd.io/kind=runner")
        assert jobs.metadata.resource_version == "7"
        with pytest.raises(ApiException) as raised:
            await batch.read_namespaced_job("wl-0f4d", "x")
        assert raised.value.status == 404
        assert await core.read_namespaced_pod_log("wl-0f4d-abc", "x") == "hello\n"
        stream: Any = await batch.list_namespaced_job("x", watch=True, _preload_content=False)
        line = await stream.content.readline()
        assert json.loads(line)["type"] == "ADDED"
        stream.release()

    counts = requests_total(metrics)
    assert counts[("list", "jobs", "200")] == 1
    assert counts[("get", "jobs", "404")] == 1
    assert counts[("get", "pods/log", "200")] == 1
    assert counts[("watch", "jobs", "200")] == 1
    assert len(counts) == 4
    assert latency_count(metrics, "list", "jobs") == 1
    body, _ = metrics.exposition()
    assert b"wl-0f4d" not in body


async def test_unreachable_apiserver_counts_as_error() -> None:
    port = free_port()  # nobody listens on it
    metrics = Metrics()
    async with client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")) as api:
        instrument_api_client(api, metrics)
        with pytest.raises(Exception):  # noqa: B017, PT011 - aiohttp's connection error
            await client.CoreV1Api(api).list_namespaced_pod("x")
    assert requests_total(metrics) == {("list", "pods", "error"): 1}


@pytest.mark.parametrize(
    ("method", "url", "query", "expected"),
    [
        ("GET", "/apis/batch/v1/namespaces/x/jobs", None, ("list", "jobs")),
        ("GET", "/apis/batch/v1/namespaces/x/jobs", [("watch", True)], ("watch", "jobs")),
        ("GET", "/api/v1/watch/namespaces/x/pods", None, ("watch", "pods")),
        ("GET", "/api/v1/namespaces/x/pods?watch=true", None, ("watch", "pods")),
        ("GET", "/apis/batch/v1/namespaces/x/jobs/j/status", None, ("get", "jobs/status")),
        ("PATCH", "/apis/batch/v1/namespaces/x/jobs/j", None, ("patch", "jobs")),
        ("PUT", "/apis/batch/v1/namespaces/x/jobs/j/status", None, ("update", "jobs/status")),
        ("POST", "/api/v1/namespaces/x/secrets", None, ("create", "secrets")),
        ("DELETE", "/api/v1/namespaces/x/pods/p", None, ("delete", "pods")),
        ("DELETE", "/api/v1/namespaces/x/pods", None, ("deletecollection", "pods")),
        ("GET", "/api/v1/namespaces/x/events", None, ("list", "events")),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/x/leases/zwmd",
            None,
            ("update", "leases"),
        ),
        ("GET", "/api/v1/namespaces/x", None, ("get", "namespaces")),
        ("GET", "/api/v1/namespaces/x/serviceaccounts/runner", None, ("get", "serviceaccounts")),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            None,
            ("create", "selfsubjectaccessreviews"),
        ),
        ("GET", "/version", None, ("get", "version")),
        ("GET", "/apis", None, ("get", "discovery")),
        ("GET", "/metrics", None, ("get", "other")),
        ("GET", "/api/v1/namespaces/x/pods/p/log/extra/segments", None, ("get", "other")),
    ],
)
def test_classify(
    method: str, url: str, query: list[tuple[str, object]] | None, expected: tuple[str, str]
) -> None:
    assert classify(method, url, query) == expected
    assert classify(method, "https://10.0.0.1:6443" + url, query) == expected


def test_resource_of_hides_names() -> None:
    assert resource_of("/api/v1/namespaces/runners/pods/wl-1234/log") == ("pods/log", True, False)
    assert resource_of("/apis/batch/v1/namespaces/runners/jobs") == ("jobs", False, False)
