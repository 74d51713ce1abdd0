"""Jobs on localkube with the process kubelet, driven with kubernetes-asyncio over HTTP."""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


def job_manifest(name: str, code: str, **spec: Any) -> Any:
    """A Job body (a dict, which kubernetes-asyncio sends as it is)."""
    pod_spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {"name": "main", "image": "ignored", "command": [sys.executable, "-c", code]}
        ],
    }
    pod_spec.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }


async def wait_for_condition(
    batch: client.BatchV1Api, namespace: str, name: str, kind: str, timeout: float = 10
) -> Any:
    with anyio.fail_after(timeout):
        while True:
            job = await batch.read_namespaced_job(name, namespace)
            for condition in job.status.conditions or []:
                if condition.type == kind and condition.status == "True":
                    return job
            await anyio.sleep(0.05)


async def job_pods(core: client.CoreV1Api, namespace: str, job: str) -> list[Any]:
    pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
    return list(pods.items)


async def test_job_printing_hi_completes_and_its_log_reads_hi(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    await batch.create_namespaced_job(kube_namespace, job_manifest("hi", "print('hi')"))

    job = await wait_for_condition(batch, kube_namespace, "hi", "Complete")

    assert job.status.succeeded == 1
    assert not job.status.failed
    assert job.status.completion_time is not None
    kinds = [c.type for c in job.status.conditions]
    assert kinds == ["SuccessCriteriaMet", "Complete"]
    [pod] = await job_pods(core, kube_namespace, "hi")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    log = await core.read_namespaced_pod_log(pod.metadata.name, kube_namespace, follow=True)
    assert log == "hi\n"


async def test_exit_3_with_backoff_limit_1_fails_after_two_pods(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    manifest = job_manifest("three", "import sys; sys.exit(3)", backoffLimit=1)
    await batch.create_namespaced_job(kube_namespace, manifest)

    job = await wait_for_condition(batch, kube_namespace, "three", "Failed")

    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    assert failed.message == "Job has reached the specified backoff limit"
    assert job.status.failed == 2
    pods = await job_pods(core, kube_namespace, "three")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (3, "Error")
        assert pod.metadata.owner_references[0].kind == "Job"
        assert pod.metadata.owner_references[0].controller is True
        assert pod.metadata.labels["batch.kubernetes.io/controller-uid"] == job.metadata.uid


async def test_active_deadline_kills_the_running_process(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    await batch.create_namespaced_job(
        kube_namespace, job_manifest("slow", code, activeDeadlineSeconds=1)
    )
    with anyio.fail_after(5):
        while True:
            pods = await job_pods(core, kube_namespace, "slow")
            if pods and pods[0].status.phase == "Running":
                log = await core.read_namespaced_pod_log(pods[0].metadata.name, kube_namespace)
                if log:
                    break
            await anyio.sleep(0.05)
    pid = int(log.split()[0])

    job = await wait_for_condition(batch, kube_namespace, "slow", "Failed")

    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert (failed.reason, failed.message) == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert not job.status.active
    with anyio.fail_after(5):
        while True:
            if not _alive(pid):
                break
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pod_failure_policy_fails_the_job_on_an_exit_code(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]},
            }
        ]
    }
    manifest = job_manifest(
        "policy", "raise SystemExit(42)", backoffLimit=6, podFailurePolicy=policy
    )
    await batch.create_namespaced_job(kube_namespace, manifest)

    job = await wait_for_condition(batch, kube_namespace, "policy", "Failed")

    failed = next(c for c in job.status.conditions if c.type == "Failed")
    [pod] = await job_pods(core, kube_namespace, "policy")
    assert failed.reason == "PodFailurePolicy"
    assert failed.message == (
        f"Container main for pod {kube_namespace}/{pod.metadata.name} failed with exit code 42 "
        "matching FailJob rule at index 0"
    )
    assert [c.type for c in job.status.conditions] == ["FailureTarget", "Failed"]


async def test_ttl_after_finished_deletes_the_job_and_its_pods_and_is_reread_when_patched(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    manifest = job_manifest("ttl", "print('done')", ttlSecondsAfterFinished=3600)
    await batch.create_namespaced_job(kube_namespace, manifest)
    await wait_for_condition(batch, kube_namespace, "ttl", "Complete")
    await anyio.sleep(0.2)
    assert (await batch.read_namespaced_job("ttl", kube_namespace)).metadata.name == "ttl"

    await batch.patch_namespaced_job(
        "ttl", kube_namespace, {"spec": {"ttlSecondsAfterFinished": 0}}
    )

    with anyio.fail_after(5):
        while True:
            try:
                await batch.read_namespaced_job("ttl", kube_namespace)
            except ApiException as error:
                status = error.status
                break
            await anyio.sleep(0.05)
    assert status == 404
    with anyio.fail_after(5):  # the garbage collector deletes its pods, a little later
        while True:
            if not await job_pods(core, kube_namespace, "ttl"):
                break
            await anyio.sleep(0.05)


async def test_missing_service_account_gives_failed_create_then_the_job_proceeds(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch, core = client.BatchV1Api(kube_api_client), client.CoreV1Api(kube_api_client)
    manifest = job_manifest("sa", "print('ok')", pod={"serviceAccountName": "runner"})
    await batch.create_namespaced_job(kube_namespace, manifest)

    with anyio.fail_after(5):
        while True:
            events = (await core.list_namespaced_event(kube_namespace)).items
            failed = [e for e in events if e.reason == "FailedCreate"]
            if failed:
                break
            await anyio.sleep(0.05)
    [event] = failed
    assert event.type == "Warning"
    assert (event.involved_object.kind, event.involved_object.name) == ("Job", "sa")
    assert event.message.startswith('Error creating: pods "sa-')
    assert event.message.endswith(
        f"is forbidden: error looking up service account {kube_namespace}/runner: "
        'serviceaccount "runner" not found'
    )
    assert await job_pods(core, kube_namespace, "sa") == []

    await core.create_namespaced_service_account(
        kube_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )

    job = await wait_for_condition(batch, kube_namespace, "sa", "Complete")
    assert job.status.succeeded == 1


async def test_a_job_in_a_namespace_gets_its_default_service_account(
    kube_api_client: Any, kube_namespace: str
) -> None:
    batch = client.BatchV1Api(kube_api_client)
    manifest = job_manifest("dflt", "print('ok')", pod={"serviceAccountName": "default"})
    await batch.create_namespaced_job(kube_namespace, manifest)
    await wait_for_condition(batch, kube_namespace, "dflt", "Complete")


async def test_a_standalone_localkube_runs_a_job_end_to_end() -> None:
    async with LocalKube(kubelet="process") as kube:
        job = kube.store.create("jobs", "default", job_manifest("solo", "print('solo')"))
        with anyio.fail_after(10):
            while True:
                status = kube.store.get("jobs", "default", "solo").get("status", {})
                if any(c["type"] == "Complete" for c in status.get("conditions", [])):
                    break
                await anyio.sleep(0.05)
        pods, _ = kube.store.list(
            "pods", "default", label_selector=f"controller-uid={job['metadata']['uid']}"
        )
        assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
