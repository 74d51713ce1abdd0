"""localkube as a given Kubernetes release: ``/version``, the fields it serves, the labels
of a Job's pods, the Job controller's conditions and status fields.

Each test reads what a client of that release reads over HTTP: the answer's body, its
``Warning`` headers, the stored Job and its pods.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest

from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

NS = "default"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
FAIL_JOB_POLICY = {
    "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
}


@asynccontextmanager
async def cluster(version: str) -> AsyncIterator[tuple[LocalKube, aiohttp.ClientSession]]:
    async with (
        LocalKube(kubelet="scripted", kubernetes_version=version) as kube,
        aiohttp.ClientSession(kube.url) as http,
    ):
        yield kube, http


def job_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
            **spec,
        },
    }


async def create_job(
    http: aiohttp.ClientSession, body: dict[str, Any], query: str = ""
) -> tuple[int, dict[str, Any], list[str]]:
    async with http.post(JOBS + query, json=body) as response:
        return response.status, await response.json(), response.headers.getall("Warning", [])


async def until(kube: LocalKube, name: str, check: Callable[[Any], bool]) -> dict[str, Any]:
    with anyio.fail_after(5):
        while True:
            job = kube.store.get("jobs", NS, name)
            if check(job):
                return job
            await anyio.sleep(0.02)


def condition_types(job: dict[str, Any]) -> list[str]:
    return [c["type"] for c in job["status"].get("conditions", []) if c["status"] == "True"]


@pytest.mark.parametrize("version", ["1.24", "1.31", "1.34"])
async def test_version_answers_the_release(version: str) -> None:
    async with cluster(version) as (_, http), http.get("/version") as response:
        answer = await response.json()
    assert f"{answer['major']}.{answer['minor']}" == version
    assert answer["gitVersion"].startswith(f"v{version}.")


async def test_an_unknown_field_is_dropped_with_a_warning_from_1_25() -> None:
    async with cluster("1.25") as (_, http):
        body = job_body("warned", podReplacementPolicy="Failed")
        code, created, warnings = await create_job(http, body)
        strict = await create_job(
            http, job_body("strict", podReplacementPolicy="Failed"), "?fieldValidation=Strict"
        )
        ignored = await create_job(
            http, job_body("quiet", podReplacementPolicy="Failed"), "?fieldValidation=Ignore"
        )
    assert code == 201
    assert "podReplacementPolicy" not in created["spec"]
    assert warnings == ['299 - "unknown field \\"spec.podReplacementPolicy\\""']
    assert strict[0] == 400
    assert strict[1]["message"] == (
        'Job in version "v1" cannot be handled as a Job: '
        'strict decoding error: unknown field "spec.podReplacementPolicy"'
    )
    assert ignored[0] == 201
    assert ignored[2] == []
    assert "podReplacementPolicy" not in ignored[1]["spec"]


async def test_1_24_drops_unknown_fields_without_a_word() -> None:
    async with cluster("1.24") as (kube, http):
        body = job_body("policy", podFailurePolicy=FAIL_JOB_POLICY)
        code, created, warnings = await create_job(http, body, "?fieldValidation=Strict")
        stored = kube.store.get("jobs", NS, "policy")
    assert (code, warnings) == (201, [])  # 1.24 has no field validation: Strict is ignored
    assert "podFailurePolicy" not in created["spec"]
    assert "podFailurePolicy" not in stored["spec"]


async def test_a_pod_failure_policy_is_dropped_silently_on_1_25_and_kept_from_1_26() -> None:
    async with cluster("1.25") as (_, http):  # known to 1.25's types, its gate off
        old = await create_job(http, job_body("p", podFailurePolicy=FAIL_JOB_POLICY))
    async with cluster("1.26") as (_, http):
        new = await create_job(http, job_body("p", podFailurePolicy=FAIL_JOB_POLICY))
    assert (old[0], old[2]) == (201, [])
    assert "podFailurePolicy" not in old[1]["spec"]
    assert (new[0], new[2]) == (201, [])
    assert new[1]["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    assert "podReplacementPolicy" not in new[1]["spec"]  # not served before 1.28/1.29


async def test_pod_replacement_policy_is_defaulted_from_1_29() -> None:
    async with cluster("1.28") as (_, http):
        before = await create_job(http, job_body("r"))
    async with cluster("1.29") as (_, http):
        after = await create_job(http, job_body("r"))
    assert "podReplacementPolicy" not in before[1]["spec"]
    assert after[1]["spec"]["podReplacementPolicy"] == "TerminatingOrFailed"


@pytest.mark.parametrize(
    ("version", "selector", "prefixed"),
    [("1.26", "controller-uid", False), ("1.27", "batch.kubernetes.io/controller-uid", True)],
)
async def test_job_labels_and_selector_are_the_release_s(
    version: str, selector: str, prefixed: bool
) -> None:
    async with cluster(version) as (kube, http):
        _, created, _ = await create_job(http, job_body("labels"))
        pod = await kube.kubelet.wait_for_pod(NS, "labels")
        async with http.get(
            f"/api/v1/namespaces/{NS}/pods",
            params={"labelSelector": "batch.kubernetes.io/job-name=labels"},
        ) as response:
            by_new_label = (await response.json())["items"]
        labels = kube.store.get("pods", NS, pod)["metadata"]["labels"]
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"] == {"matchLabels": {selector: uid}}
    assert (labels["job-name"], labels["controller-uid"]) == ("labels", uid)
    assert ("batch.kubernetes.io/job-name" in labels) is prefixed
    assert len(by_new_label) == (1 if prefixed else 0)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.30", ["Failed"]), ("1.34", ["FailureTarget", "Failed"])],
)
async def test_a_failed_job_s_conditions_follow_the_release(
    version: str, expected: list[str]
) -> None:
    async with cluster(version) as (kube, http):
        await create_job(http, job_body("fails"))
        pod = await kube.kubelet.wait_for_pod(NS, "fails")
        kube.kubelet.fail(NS, pod)
        job = await until(kube, "fails", lambda j: "Failed" in condition_types(j))
    assert condition_types(job) == expected
    assert job["status"]["failed"] == 1


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.30", ["Complete"]), ("1.34", ["SuccessCriteriaMet", "Complete"])],
)
async def test_a_complete_job_s_conditions_follow_the_release(
    version: str, expected: list[str]
) -> None:
    async with cluster(version) as (kube, http):
        await create_job(http, job_body("works"))
        pod = await kube.kubelet.wait_for_pod(NS, "works")
        kube.kubelet.succeed(NS, pod)
        job = await until(kube, "works", lambda j: "Complete" in condition_types(j))
    assert condition_types(job) == expected


async def test_a_fail_job_rule_writes_failure_target_with_failed_before_1_31() -> None:
    async with cluster("1.26") as (kube, http):
        await create_job(http, job_body("rule", podFailurePolicy=FAIL_JOB_POLICY))
        pod = await kube.kubelet.wait_for_pod(NS, "rule")
        kube.kubelet.fail(NS, pod, exit_code=42)
        job = await until(kube, "rule", lambda j: "Failed" in condition_types(j))
    assert condition_types(job) == ["FailureTarget", "Failed"]
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"


@pytest.mark.parametrize(("version", "written"), [("1.28", False), ("1.29", True)])
async def test_status_terminating_is_written_from_1_29(version: str, written: bool) -> None:
    async with cluster(version) as (kube, http):
        await create_job(http, job_body("t"))
        await kube.kubelet.wait_for_pod(NS, "t")
        job = await until(kube, "t", lambda j: j["status"].get("active") == 1)
    assert ("terminating" in job["status"]) is written


@pytest.mark.parametrize("bad", ["1.23", "1.35", "latest"])
def test_the_cli_refuses_a_release_it_does_not_model(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zwmd.localkube", "--kubernetes-version", bad],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--kubernetes-version" in done.stderr
    assert ("1.24 to 1.34" in done.stderr) or ("not a Kubernetes version" in done.stderr)
