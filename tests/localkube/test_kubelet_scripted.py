"""The scripted kubelet: every transition, as a client reads it over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client, config

from zwmd.localkube import LocalKube
from zwmd.localkube.kubelets import ScriptedKubelet

pytestmark = pytest.mark.anyio

NS = "default"


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


def job_body(name: str) -> Any:
    """A Job body (a dict, which kubernetes-asyncio sends as it is)."""
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "registry/runner:1", "command": ["x"]}
                    ],
                }
            },
        },
    }


async def new_pod(kube: Any, job: str = "j") -> tuple[ScriptedKubelet, Any, str]:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, job_body(job))
    return kubelet, api, await kubelet.wait_for_pod(NS, job)


async def read_pod(api: Any, name: str) -> Any:
    return await client.CoreV1Api(api).read_namespaced_pod(name, NS)


def conditions(pod: Any) -> dict[str, Any]:
    return {c.type: c for c in pod.status.conditions or []}


async def test_a_new_pod_stays_pending_and_unscheduled(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    await anyio.sleep(0.1)
    pod = await read_pod(api, name)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None

    kubelet.schedule(NS, name)

    pod = await read_pod(api, name)
    assert pod.spec.node_name == "localkube"
    assert conditions(pod)["PodScheduled"].status == "True"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"


async def test_wait_for_pod_hands_out_each_pod_once_and_times_out(kube: Any) -> None:
    _, kubelet, api = kube
    body = job_body("a")
    body["spec"]["backoffLimit"] = 1
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    first = await kubelet.wait_for_pod(NS, "a")
    with pytest.raises(TimeoutError):
        await kubelet.wait_for_pod(NS, "a", timeout=0.2)

    kubelet.fail(NS, first)

    second = await kubelet.wait_for_pod(NS, "a")
    assert second != first
    assert second.startswith("a-")


async def test_set_running_then_succeed(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.set_running(NS, name)
    pod = await read_pod(api, name)
    assert pod.status.phase == "Running"
    assert conditions(pod)["Ready"].status == "True"
    assert pod.status.container_statuses[0].state.running.started_at is not None

    kubelet.succeed(NS, name)

    pod = await read_pod(api, name)
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert conditions(pod)["Ready"].reason == "PodCompleted"


async def test_fail_with_exit_code_and_reason(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.set_running(NS, name)
    kubelet.fail(NS, name, exit_code=2, reason="Error", message="boom")
    pod = await read_pod(api, name)
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (2, "Error", "boom")


async def test_oom_kill(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.set_running(NS, name)
    kubelet.oom_kill(NS, name)
    pod = await read_pod(api, name)
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"])
async def test_waiting_reasons(kube: Any, reason: str) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.waiting(NS, name, reason=reason)
    pod = await read_pod(api, name)
    [status] = pod.status.container_statuses
    assert status.state.waiting.reason == reason
    assert status.ready is False
    if reason == "CrashLoopBackOff":
        assert status.restart_count == 1
    else:
        assert status.state.waiting.message == 'Back-off pulling image "registry/runner:1"'
        assert pod.status.phase == "Pending"


async def test_waiting_with_a_message(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.waiting(NS, name, reason="ErrImagePull", message="manifest unknown")
    pod = await read_pod(api, name)
    assert pod.status.container_statuses[0].state.waiting.message == "manifest unknown"


async def test_evict(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.set_running(NS, name)
    kubelet.evict(NS, name)
    pod = await read_pod(api, name)
    assert pod.status.phase == "Failed"
    assert pod.status.reason == "Evicted"
    disruption = conditions(pod)["DisruptionTarget"]
    assert (disruption.status, disruption.reason) == ("True", "EvictionByEvictionAPI")


async def test_unschedulable(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.unschedulable(NS, name, message="0/1 nodes are available: 1 Insufficient memory.")
    pod = await read_pod(api, name)
    assert pod.status.phase == "Pending"
    scheduled = conditions(pod)["PodScheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message == "0/1 nodes are available: 1 Insufficient memory."


async def test_log_lines(kube: Any) -> None:
    kubelet, api, name = await new_pod(kube)
    kubelet.set_running(NS, name)
    kubelet.log(NS, name, "a", b"b")
    text = await client.CoreV1Api(api).read_namespaced_pod_log(name, NS)
    assert text == "a\nb\n"


async def test_failed_create_event(kube: Any) -> None:
    _, kubelet, api = kube
    await client.BatchV1Api(api).create_namespaced_job(NS, job_body("fc"))
    kubelet.failed_create_event(NS, "fc", 'Error creating: pods "fc-x" is forbidden: quota')
    events = (await client.CoreV1Api(api).list_namespaced_event(NS)).items
    [event] = [e for e in events if e.reason == "FailedCreate"]
    assert event.type == "Warning"
    assert (event.involved_object.kind, event.involved_object.name) == ("Job", "fc")
    assert event.message == 'Error creating: pods "fc-x" is forbidden: quota'
