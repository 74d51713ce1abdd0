"""Job controller semantics on localkube, with pods driven by the scripted kubelet.

The tests read what a user would read through kubernetes-asyncio over HTTP: the Job's
conditions and counters, its pods and its Events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client, config

from zwmd.localkube import LocalKube
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.localkube.podbackoff import TEST_SCALE

pytestmark = pytest.mark.anyio

NS = "default"


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[LocalKube, ScriptedKubelet, Any]]:
    async with LocalKube(kubelet="scripted", pod_backoff_scale=TEST_SCALE) as localkube:
        api = await config.new_client_from_config(
            config_file=str(localkube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield localkube, localkube.kubelet, api
        finally:
            await api.close()


def manifest(name: str, **spec: Any) -> Any:
    """A Job body (a dict, which kubernetes-asyncio sends as it is)."""
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            },
            **spec,
        },
    }


async def read_job(api: Any, name: str) -> Any:
    return await client.BatchV1Api(api).read_namespaced_job(name, NS)


async def until(api: Any, name: str, check: Any, timeout: float = 5) -> Any:
    """The Job, once ``check(job)`` holds."""
    with anyio.fail_after(timeout):
        while True:
            job = await read_job(api, name)
            if check(job):
                return job
            await anyio.sleep(0.02)


def condition(job: Any, kind: str) -> Any:
    return next((c for c in job.status.conditions or [] if c.type == kind), None)


def is_true(kind: str) -> Any:
    def check(job: Any) -> bool:
        found = condition(job, kind)
        return found is not None and found.status == "True"

    return check


async def pod_names(api: Any, job: str) -> list[str]:
    pods = await client.CoreV1Api(api).list_namespaced_pod(
        NS, label_selector=f"batch.kubernetes.io/job-name={job}"
    )
    return sorted(p.metadata.name for p in pods.items)


async def test_pods_come_from_the_template_with_job_labels_and_owner(kube: Any) -> None:
    _localkube, kubelet, api = kube
    body = manifest("tpl")
    body["spec"]["template"]["metadata"] = {"labels": {"app": "x"}, "annotations": {"a": "b"}}
    job = await client.BatchV1Api(api).create_namespaced_job(NS, body)

    name = await kubelet.wait_for_pod(NS, "tpl")

    pod = await client.CoreV1Api(api).read_namespaced_pod(name, NS)
    assert name.startswith("tpl-")
    assert len(name) == len("tpl-") + 5
    labels = pod.metadata.labels
    assert labels["app"] == "x"
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == "tpl"
    assert (
        labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == job.metadata.uid
    )
    [owner] = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Job", "tpl", job.metadata.uid)
    assert owner.controller is True
    assert owner.block_owner_deletion is True
    assert pod.metadata.annotations["a"] == "b"
    assert pod.spec.containers[0].command == ["true"]


async def test_counters_follow_the_pod_through_running_and_success(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, manifest("count"))
    pod = await kubelet.wait_for_pod(NS, "count")
    job = await until(api, "count", lambda j: j.status.active == 1)
    assert job.status.ready == 0
    assert job.status.start_time is not None

    kubelet.set_running(NS, pod)
    job = await until(api, "count", lambda j: j.status.ready == 1)
    assert job.status.active == 1

    kubelet.succeed(NS, pod)
    job = await until(api, "count", is_true("Complete"))
    assert (job.status.active, job.status.succeeded, job.status.ready) == (None, 1, 0)
    complete = condition(job, "Complete")
    assert complete.reason == "CompletionsReached"
    assert condition(job, "SuccessCriteriaMet").status == "True"
    events = (await client.CoreV1Api(api).list_namespaced_event(NS)).items
    reasons = {(e.reason, e.involved_object.name) for e in events}
    assert {("SuccessfulCreate", "count"), ("Completed", "count")} <= reasons


async def test_parallelism_and_completions(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("par", parallelism=2, completions=3)
    )
    first = await kubelet.wait_for_pod(NS, "par")
    second = await kubelet.wait_for_pod(NS, "par")
    await until(api, "par", lambda j: j.status.active == 2)
    kubelet.succeed(NS, first)
    third = await kubelet.wait_for_pod(NS, "par")
    kubelet.succeed(NS, second)
    await until(api, "par", lambda j: j.status.succeeded == 2 and j.status.active == 1)
    assert not is_true("Complete")(await read_job(api, "par"))
    kubelet.succeed(NS, third)
    job = await until(api, "par", is_true("Complete"))
    assert job.status.succeeded == 3
    assert len(await pod_names(api, "par")) == 3


async def test_each_failure_gets_a_new_pod_until_the_backoff_limit(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, manifest("retry", backoffLimit=2))
    for attempt in range(3):
        pod = await kubelet.wait_for_pod(NS, "retry")
        job = await read_job(api, "retry")
        assert not is_true("Failed")(job)
        kubelet.fail(NS, pod, exit_code=1)
        await until(api, "retry", lambda j, n=attempt + 1: j.status.failed == n)
    job = await until(api, "retry", is_true("Failed"))
    assert condition(job, "Failed").reason == "BackoffLimitExceeded"
    assert condition(job, "FailureTarget").reason == "BackoffLimitExceeded"
    assert len(await pod_names(api, "retry")) == 3
    events = (await client.CoreV1Api(api).list_namespaced_event(NS)).items
    assert any(e.reason == "BackoffLimitExceeded" and e.type == "Warning" for e in events)


async def test_a_failure_after_retries_can_still_succeed(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, manifest("flaky", backoffLimit=1))
    kubelet.oom_kill(NS, await kubelet.wait_for_pod(NS, "flaky"))
    kubelet.succeed(NS, await kubelet.wait_for_pod(NS, "flaky"))
    job = await until(api, "flaky", is_true("Complete"))
    assert (job.status.failed, job.status.succeeded) == (1, 1)


async def test_suspended_job_gets_no_pod_until_resumed(kube: Any) -> None:
    _localkube, kubelet, api = kube
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, manifest("sus", suspend=True))

    job = await until(api, "sus", is_true("Suspended"))
    suspended = condition(job, "Suspended")
    assert (suspended.reason, suspended.message) == ("JobSuspended", "Job suspended")
    assert job.status.start_time is None
    await anyio.sleep(0.2)
    assert await pod_names(api, "sus") == []

    await batch.patch_namespaced_job("sus", NS, {"spec": {"suspend": False}})

    pod = await kubelet.wait_for_pod(NS, "sus")
    job = await until(api, "sus", lambda j: condition(j, "Suspended").status == "False")
    assert condition(job, "Suspended").reason == "JobResumed"
    assert job.status.start_time is not None
    assert job.status.active == 1
    kubelet.succeed(NS, pod)
    await until(api, "sus", is_true("Complete"))


async def test_suspending_a_running_job_deletes_its_pods_without_counting_failures(
    kube: Any,
) -> None:
    _, kubelet, api = kube
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, manifest("pause", backoffLimit=0))
    first = await kubelet.wait_for_pod(NS, "pause")
    kubelet.set_running(NS, first)
    await until(api, "pause", lambda j: j.status.ready == 1)

    await batch.patch_namespaced_job("pause", NS, {"spec": {"suspend": True}})

    job = await until(api, "pause", is_true("Suspended"))
    assert await pod_names(api, "pause") == []
    assert not job.status.active
    assert not job.status.failed
    await batch.patch_namespaced_job("pause", NS, {"spec": {"suspend": False}})
    second = await kubelet.wait_for_pod(NS, "pause")
    assert second != first
    kubelet.succeed(NS, second)
    job = await until(api, "pause", is_true("Complete"))
    assert not job.status.failed


async def test_deleting_a_running_pod_counts_a_failure_and_replaces_it(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, manifest("del", backoffLimit=3))
    first = await kubelet.wait_for_pod(NS, "del")
    kubelet.set_running(NS, first)
    await client.CoreV1Api(api).delete_namespaced_pod(first, NS)
    second = await kubelet.wait_for_pod(NS, "del")
    job = await until(api, "del", lambda j: j.status.failed == 1)
    assert job.status.active == 1
    assert await pod_names(api, "del") == [second]


async def test_active_deadline_fails_the_job_and_deletes_its_pods(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("late", activeDeadlineSeconds=1)
    )
    pod = await kubelet.wait_for_pod(NS, "late")
    kubelet.set_running(NS, pod)
    job = await until(api, "late", is_true("Failed"), timeout=4)
    assert condition(job, "Failed").reason == "DeadlineExceeded"
    assert condition(job, "FailureTarget").reason == "DeadlineExceeded"
    assert job.status.failed == 1  # the killed pod, counted in the same write as Failed
    assert await pod_names(api, "late") == []
    assert job.status.completion_time is None


async def test_pod_failure_policy_ignores_disruptions(kube: Any) -> None:
    _, kubelet, api = kube
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]
    }
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("evicted", backoffLimit=0, podFailurePolicy=policy)
    )
    first = await kubelet.wait_for_pod(NS, "evicted")
    kubelet.set_running(NS, first)
    kubelet.evict(NS, first)

    second = await kubelet.wait_for_pod(NS, "evicted")
    job = await read_job(api, "evicted")
    assert not job.status.failed
    assert not is_true("Failed")(job)
    kubelet.succeed(NS, second)
    job = await until(api, "evicted", is_true("Complete"))
    assert (job.status.failed, job.status.succeeded) == (None, 1)


async def test_pod_failure_policy_fail_job_with_not_in(kube: Any) -> None:
    _, kubelet, api = kube
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("notin", backoffLimit=5, podFailurePolicy=policy)
    )
    kubelet.fail(NS, await kubelet.wait_for_pod(NS, "notin"), exit_code=1)
    pod = await kubelet.wait_for_pod(NS, "notin")
    kubelet.fail(NS, pod, exit_code=2)
    job = await until(api, "notin", is_true("Failed"))
    failed = condition(job, "Failed")
    assert failed.reason == "PodFailurePolicy"
    assert f"{NS}/{pod} failed with exit code 2 matching FailJob rule at index 0" in failed.message
    assert job.status.failed == 2


async def test_pod_failure_policy_count_counts(kube: Any) -> None:
    _, kubelet, api = kube
    policy = {"rules": [{"action": "Count", "onExitCodes": {"operator": "In", "values": [137]}}]}
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("oom", backoffLimit=0, podFailurePolicy=policy)
    )
    kubelet.oom_kill(NS, await kubelet.wait_for_pod(NS, "oom"))
    job = await until(api, "oom", is_true("Failed"))
    assert condition(job, "Failed").reason == "BackoffLimitExceeded"


async def test_failed_job_with_ttl_is_deleted(kube: Any) -> None:
    localkube, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("gone", backoffLimit=0, ttlSecondsAfterFinished=0)
    )
    kubelet.fail(NS, await kubelet.wait_for_pod(NS, "gone"))
    with anyio.fail_after(5):
        while True:
            if not list(localkube.store.objects("jobs")):
                break
            await anyio.sleep(0.02)
        while True:  # the garbage collector deletes its pods, a little later
            if not await pod_names(api, "gone"):
                break
            await anyio.sleep(0.02)


async def test_ttl_counts_from_the_moment_the_job_finished(kube: Any) -> None:
    localkube, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(
        NS, manifest("one", ttlSecondsAfterFinished=1)
    )
    pod = await kubelet.wait_for_pod(NS, "one")
    before = anyio.current_time()  # the Job finishes after this instant
    kubelet.succeed(NS, pod)
    await until(api, "one", is_true("Complete"))
    await anyio.sleep(max(0.0, 0.6 - (anyio.current_time() - before)))
    if anyio.current_time() - before < 0.95:
        assert [j["metadata"]["name"] for j in localkube.store.objects("jobs")] == ["one"]
    with anyio.fail_after(3):
        while True:
            if not list(localkube.store.objects("jobs")):
                break
            await anyio.sleep(0.02)
    assert anyio.current_time() - before >= 0.99


async def test_on_failure_restarts_count_against_the_backoff_limit(kube: Any) -> None:
    _, kubelet, api = kube
    body = manifest("crash", backoffLimit=1)
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    pod = await kubelet.wait_for_pod(NS, "crash")
    kubelet.waiting(NS, pod, reason="CrashLoopBackOff")
    await anyio.sleep(0.1)
    assert not is_true("FailureTarget")(await read_job(api, "crash"))

    kubelet.waiting(NS, pod, reason="CrashLoopBackOff")

    job = await until(api, "crash", is_true("Failed"))
    assert condition(job, "Failed").reason == "BackoffLimitExceeded"
    assert await pod_names(api, "crash") == []


async def test_a_work_queue_job_completes_once_one_pod_succeeded_and_the_rest_ended(
    kube: Any,
) -> None:
    _, kubelet, api = kube
    body = manifest("queue", parallelism=2)
    body["spec"]["completions"] = None  # a work queue: no fixed number of completions
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    first = await kubelet.wait_for_pod(NS, "queue")
    second = await kubelet.wait_for_pod(NS, "queue")
    kubelet.succeed(NS, first)
    job = await until(api, "queue", lambda j: j.status.succeeded == 1)
    assert not is_true("Complete")(job)
    assert job.status.active == 1
    kubelet.succeed(NS, second)
    job = await until(api, "queue", is_true("Complete"))
    assert job.status.succeeded == 2
    assert len(await pod_names(api, "queue")) == 2
