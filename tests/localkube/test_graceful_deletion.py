"""Graceful pod deletion: a deleted pod stays Terminating until its kubelet has stopped it.

As on a real cluster: the DELETE sets ``deletionTimestamp`` and
``deletionGracePeriodSeconds``; the process kubelet sends SIGTERM, SIGKILL after the
grace period, records the container's end and deletes the pod with grace 0; its log
stays readable until then. ``gracePeriodSeconds=0`` removes it at once, and so does a
DELETE of a pod never scheduled. The Job controller counts Terminating pods.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client, config

from tests.localkube.conftest import api_error, job
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

Kube = tuple[LocalKube, Any]


@pytest.fixture
async def process_kube(tmp_path: Path) -> AsyncIterator[Kube]:
    async with LocalKube(kubelet="process") as kube:
        api = await config.new_client_from_config(
            config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield kube, api
        finally:
            await api.close()


@pytest.fixture
async def scripted_kube(tmp_path: Path) -> AsyncIterator[Kube]:
    async with LocalKube(kubelet="scripted") as kube:
        api = await config.new_client_from_config(
            config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield kube, api
        finally:
            await api.close()


def _pod(name: str, code: str, grace: int | None = None) -> Any:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {"name": "main", "image": "ignored", "command": [sys.executable, "-u", "-c", code]}
        ],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": name}, "spec": spec}


TRAPS_TERM = """
import signal, sys, time
def stop(*_):
    print("got SIGTERM, cleaning up", flush=True)
    time.sleep(0.3)
    print("cleaned up", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("started", flush=True)
while True:
    time.sleep(0.05)
"""

IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started", flush=True)
while True:
    time.sleep(0.05)
"""


async def _until(check: Any, timeout: float = 10.0) -> Any:
    with anyio.fail_after(timeout):
        while True:
            found = await check()
            if found:
                return found
            await anyio.sleep(0.03)


async def _log_has(core: Any, name: str, text: str) -> bool:
    try:
        log: str = await core.read_namespaced_pod_log(name, "default")
    except client.ApiException:
        return False
    return text in log


async def _gone(core: Any, name: str) -> bool:
    pods = await core.list_namespaced_pod("default")
    return name not in {p.metadata.name for p in pods.items}


def _recorder(kube: LocalKube, name: str) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def listener(event_type: str, resource: str, obj: Any, old: Any) -> None:
        if resource == "pods" and obj["metadata"]["name"] == name:
            seen.append((event_type, obj))

    kube.store.add_listener(listener)
    return seen


async def test_a_deleted_pod_is_terminating_gets_sigterm_and_keeps_its_log(
    process_kube: Kube,
) -> None:
    kube, api = process_kube
    core = client.CoreV1Api(api)
    seen = _recorder(kube, "graceful")
    await core.create_namespaced_pod("default", _pod("graceful", TRAPS_TERM, grace=20))
    await _until(lambda: _log_has(core, "graceful", "started"))
    await core.delete_namespaced_pod("graceful", "default")
    marked = await core.read_namespaced_pod("graceful", "default")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 20  # the pod's own
    # what it prints after SIGTERM is in its log while it is Terminating
    await _until(lambda: _log_has(core, "graceful", "got SIGTERM, cleaning up"))
    await _until(lambda: _gone(core, "graceful"))
    [last] = [obj for kind, obj in seen if kind == "DELETED"]
    state = last["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0  # it exited on its own, from its handler
    assert [kind for kind, _ in seen][-1] == "DELETED"


async def test_sigkill_after_the_grace_period_of_the_delete_options(process_kube: Kube) -> None:
    kube, api = process_kube
    core = client.CoreV1Api(api)
    seen = _recorder(kube, "stubborn")
    await core.create_namespaced_pod("default", _pod("stubborn", IGNORES_TERM))
    await _until(lambda: _log_has(core, "stubborn", "started"))
    await core.delete_namespaced_pod("stubborn", "default", grace_period_seconds=1)
    marked = await core.read_namespaced_pod("stubborn", "default")
    assert marked.metadata.deletion_grace_period_seconds == 1
    await _until(lambda: _gone(core, "stubborn"))
    [last] = [obj for kind, obj in seen if kind == "DELETED"]
    state = last["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 137
    assert last["status"]["phase"] == "Failed"


async def test_grace_zero_removes_at_once(process_kube: Kube) -> None:
    _, api = process_kube
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod("default", _pod("forced", IGNORES_TERM, grace=30))
    await _until(lambda: _log_has(core, "forced", "started"))
    await core.delete_namespaced_pod("forced", "default", grace_period_seconds=0)
    assert (await api_error(core.read_namespaced_pod("forced", "default"))).status == 404


async def test_a_pod_never_scheduled_goes_at_once(private_kube: Kube) -> None:
    _, api = private_kube
    core = client.CoreV1Api(api)
    await core.create_namespaced_pod("default", _pod("unscheduled", "pass"))
    await core.delete_namespaced_pod("unscheduled", "default")
    assert (await api_error(core.read_namespaced_pod("unscheduled", "default"))).status == 404


async def test_the_default_grace_is_30_seconds_and_a_second_delete_shortens_it(
    private_kube: Kube,
) -> None:
    kube, api = private_kube
    core = client.CoreV1Api(api)
    pod = _pod("scheduled", "pass")
    pod["spec"]["nodeName"] = "elsewhere"  # no kubelet here will confirm it
    await core.create_namespaced_pod("default", pod)
    await core.delete_namespaced_pod("scheduled", "default")
    marked = await core.read_namespaced_pod("scheduled", "default")
    assert marked.metadata.deletion_grace_period_seconds == 30
    await core.delete_namespaced_pod("scheduled", "default", grace_period_seconds=60)
    kept = await core.read_namespaced_pod("scheduled", "default")
    assert kept.metadata.deletion_grace_period_seconds == 30  # never longer
    await core.delete_namespaced_pod("scheduled", "default", grace_period_seconds=5)
    shorter = await core.read_namespaced_pod("scheduled", "default")
    assert shorter.metadata.deletion_grace_period_seconds == 5
    # a status update of a Terminating pod does not remove it
    kube.store.update_status("pods", "default", "scheduled", {"phase": "Running"})
    assert kube.store.get("pods", "default", "scheduled")
    await core.delete_namespaced_pod("scheduled", "default", grace_period_seconds=0)
    assert (await api_error(core.read_namespaced_pod("scheduled", "default"))).status == 404


async def test_the_job_controller_counts_terminating_pods(scripted_kube: Kube) -> None:
    kube, api = scripted_kube
    kubelet = kube.kubelet
    kubelet.hold_terminations = True
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job("default", job("held"))
    pod = await kubelet.wait_for_pod("default", "held")
    kubelet.set_running("default", pod)
    kubelet.log("default", pod, "working")
    await batch.patch_namespaced_job("held", "default", {"spec": {"suspend": True}})

    async def terminating() -> bool:
        status = (await batch.read_namespaced_job("held", "default")).status
        return status.terminating == 1 and not status.active

    await _until(terminating)
    core = client.CoreV1Api(api)
    kubelet.log("default", pod, "after SIGTERM")
    assert await _log_has(core, pod, "after SIGTERM")
    kubelet.finish_termination("default", pod)
    await _until(lambda: _gone(core, pod))

    async def none_terminating() -> bool:
        status = (await batch.read_namespaced_job("held", "default")).status
        return not status.terminating

    await _until(none_terminating)


async def test_failed_comes_after_failure_target_once_pods_are_gone(scripted_kube: Kube) -> None:
    kube, api = scripted_kube
    kubelet = kube.kubelet
    kubelet.hold_terminations = True
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job("default", job("deadline", active_deadline_seconds=1))
    pod = await kubelet.wait_for_pod("default", "deadline")
    kubelet.set_running("default", pod)

    async def conditions() -> set[str]:
        status = (await batch.read_namespaced_job("deadline", "default")).status
        return {c.type for c in status.conditions or () if c.status == "True"}

    await _until(lambda: _has(conditions, "FailureTarget"))
    assert "Failed" not in await conditions()  # its pod is still Terminating
    kubelet.finish_termination("default", pod)
    await _until(lambda: _has(conditions, "Failed"))


async def _has(conditions: Any, wanted: str) -> bool:
    return wanted in await conditions()
