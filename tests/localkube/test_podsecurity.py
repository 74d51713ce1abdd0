"""PodSecurity admission: what a client sees from a namespace's pod-security labels.

Each case talks HTTP to a real LocalKube (scripted kubelet, real Job controller) and
checks what a user would: the status code and message of a refused pod, the ``Warning``
headers of an admitted one, and the ``FailedCreate`` Event of a Job whose pods are
refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

NS = "secure"
PODS = f"/api/v1/namespaces/{NS}/pods"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
#: contrib/kubernetes/namespace.yaml's levels
LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
}
RESTRICTED_CONTAINER: dict[str, Any] = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        LocalKube(kubelet="scripted") as kube,
        aiohttp.ClientSession(kube.url) as session,
    ):
        await namespace(session, NS, LABELS)
        yield session


async def namespace(http: aiohttp.ClientSession, name: str, labels: dict[str, str]) -> None:
    body = {"metadata": {"name": name, "labels": labels}}
    async with http.post("/api/v1/namespaces", json=body) as response:
        assert response.status == 201


def pod_spec(**container: Any) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", **container}],
    }


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], list[str]]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json(), response.headers.getall("Warning", [])


async def create_pod(
    http: aiohttp.ClientSession, name: str, spec: dict[str, Any], ns: str = NS
) -> tuple[int, dict[str, Any], list[str]]:
    body = {"metadata": {"name": name}, "spec": spec}
    return await post(http, f"/api/v1/namespaces/{ns}/pods", body)


async def test_a_privileged_pod_is_refused_by_the_baseline_level(
    http: aiohttp.ClientSession,
) -> None:
    status, body, _ = await create_pod(http, "p", pod_spec(securityContext={"privileged": True}))
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'pods "p" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "c" must not set securityContext.privileged=true)'
    )
    async with http.get(f"{PODS}/p") as response:
        assert response.status == 404


async def test_every_failed_baseline_check_is_listed(http: aiohttp.ClientSession) -> None:
    spec = pod_spec(
        ports=[{"containerPort": 80, "hostPort": 8080}],
        securityContext={"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}},
    )
    spec.update(hostNetwork=True, hostPID=True)
    spec["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    status, body, _ = await create_pod(http, "many", spec)
    assert status == 403
    assert body["message"] == (
        'pods "many" is forbidden: violates PodSecurity "baseline:latest": '
        "host namespaces (hostNetwork=true, hostPID=true), "
        'hostPath volumes (volume "root"), '
        'hostPort (container "c" uses hostPorts 8080), '
        'non-default capabilities (container "c" must not include "NET_ADMIN" in '
        "securityContext.capabilities.add)"
    )


async def test_a_baseline_pod_is_admitted_with_the_restricted_warning(
    http: aiohttp.ClientSession,
) -> None:
    status, _, warnings = await create_pod(http, "plain", pod_spec())
    assert status == 201
    assert warnings == [
        '299 - "would violate PodSecurity \\"restricted:latest\\": '
        'allowPrivilegeEscalation != false (container \\"c\\" must set '
        "securityContext.allowPrivilegeEscalation=false), "
        'unrestricted capabilities (container \\"c\\" must set '
        'securityContext.capabilities.drop=[\\"ALL\\"]), '
        'runAsNonRoot != true (pod or container \\"c\\" must set '
        "securityContext.runAsNonRoot=true), "
        'seccompProfile (pod or container \\"c\\" must set '
        'securityContext.seccompProfile.type to \\"RuntimeDefault\\" or \\"Localhost\\")"'
    ]


async def test_a_restricted_pod_is_admitted_without_a_warning(
    http: aiohttp.ClientSession,
) -> None:
    status, _, warnings = await create_pod(http, "tight", pod_spec(**RESTRICTED_CONTAINER))
    assert (status, warnings) == (201, [])


async def test_pod_level_settings_count_for_every_container(http: aiohttp.ClientSession) -> None:
    spec = pod_spec(
        securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    )
    spec["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "Localhost"}}
    status, _, warnings = await create_pod(http, "podlevel", spec)
    assert (status, warnings) == (201, [])


async def test_a_namespace_without_labels_admits_anything(http: aiohttp.ClientSession) -> None:
    await namespace(http, "open", {})
    spec = pod_spec(securityContext={"privileged": True})
    spec["hostNetwork"] = True
    status, _, warnings = await create_pod(http, "root", spec, ns="open")
    assert (status, warnings) == (201, [])


async def test_the_version_label_is_named_in_the_message(http: aiohttp.ClientSession) -> None:
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.30",
    }
    await namespace(http, "pinned", labels)
    status, body, _ = await create_pod(http, "p", pod_spec(), ns="pinned")
    assert status == 403
    assert body["message"].startswith(
        'pods "p" is forbidden: violates PodSecurity "restricted:v1.30": '
        "allowPrivilegeEscalation != false"
    )


def job(name: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec(**container)}},
    }


async def failed_create_events(http: aiohttp.ClientSession, job_name: str) -> list[Any]:
    query = f"?fieldSelector=reason=FailedCreate,involvedObject.name={job_name}"
    async with http.get(f"/api/v1/namespaces/{NS}/events{query}") as response:
        items: list[Any] = (await response.json())["items"]
        return items


async def test_a_job_whose_pods_are_refused_is_warned_and_gets_failed_create(
    http: aiohttp.ClientSession,
) -> None:
    status, _, warnings = await post(http, JOBS, job("priv", securityContext={"privileged": True}))
    assert status == 201  # a workload is never refused, only warned
    assert warnings[0] == (
        '299 - "would violate PodSecurity \\"baseline:latest\\": privileged '
        '(container \\"c\\" must not set securityContext.privileged=true)"'
    )
    assert warnings[1].startswith('299 - "would violate PodSecurity \\"restricted:latest\\": ')
    with anyio.fail_after(5):
        while True:
            events = await failed_create_events(http, "priv")
            if events:
                break
            await anyio.sleep(0.02)
    [event] = events
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Job"
    assert event["message"].startswith('Error creating: pods "priv-')
    assert event["message"].endswith(
        '" is forbidden: violates PodSecurity "baseline:latest": privileged '
        '(container "c" must not set securityContext.privileged=true)'
    )
    selector = "?labelSelector=job-name=priv"
    async with http.get(PODS + selector) as response:
        assert (await response.json())["items"] == []  # the Job makes no progress
    async with http.get(f"{JOBS}/priv") as response:
        assert (await response.json())["status"].get("active", 0) == 0


async def test_a_restricted_job_is_created_silently_and_runs_its_pod(
    http: aiohttp.ClientSession,
) -> None:
    status, _, warnings = await post(http, JOBS, job("fine", **RESTRICTED_CONTAINER))
    assert (status, warnings) == (201, [])
    with anyio.fail_after(5):
        while True:
            async with http.get(PODS + "?labelSelector=job-name=fine") as response:
                if (await response.json())["items"]:
                    break
            await anyio.sleep(0.02)
    assert await failed_create_events(http, "fine") == []
