"""Every failure reason, from pods the scripted kubelet drives, as the API reports it.

Each test submits a run over HTTP, plays one way a runner can fail (on the pod, the Job
or its Events, as Kubernetes would write them) and reads ``GET /v1/workloads/{id}``:
state ``failed`` with a stable ``reason`` and a message that says what happened.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION, needs_pod_failure_policy
from tests.daemon.conftest import Daemon
from tests.inprocess import JsonDict, K, until
from zwmd.daemon.serving import DaemonConfig
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

POLICY_SKIPPED = needs_pod_failure_policy.args[0]
POLICY = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}


def fast(config: DaemonConfig) -> DaemonConfig:
    """Grace periods and deadlines short enough for a test.

    Longer than a second: Kubernetes' condition times have whole-second precision, so a
    shorter deadline can be over the moment it starts.
    """
    timing = dataclasses.replace(
        config.engine_timing,
        image_pull_grace=timedelta(seconds=1.5),
        unschedulable_deadline=timedelta(seconds=1.5),
        events_poll_after=0.2,
        tick=0.1,
    )
    return dataclasses.replace(config, engine_timing=timing)


@pytest.fixture
async def daemon(kube: LocalKube, kubeconfig: Path, tmp_path: Path) -> AsyncIterator[Daemon]:
    # a release without pod failure policies (before 1.26) runs the rest without one
    env = {} if POLICY_SKIPPED else {f"{K}POD_FAILURE_POLICY": json.dumps(POLICY)}
    async with Daemon.running(kube, kubeconfig, tmp_path, env, adjust=fast) as d:
        yield d


async def started(daemon: Daemon, **body: object) -> tuple[str, str, str]:
    """Submit a run and wait for its pod: (workload id, Job name, pod name)."""
    workload = await daemon.submit(**body)  # type: ignore[arg-type]
    pod = await daemon.pod_of(workload["job_name"])
    return workload["id"], workload["job_name"], pod


async def failed(daemon: Daemon, wid: str) -> JsonDict:
    workload = await daemon.wait(wid)
    assert workload["state"] == "failed", workload
    assert workload["finished_at"] is not None
    if workload["reason"] != "JobLost":  # nothing is left running, and the Job can expire
        job = workload["job_name"]
        await until(lambda: not [p for p in daemon.pods(job) if is_active(p)])
        await until(lambda: job_failed(daemon.job(job)))
    assert (await daemon.get(wid))["reason"] == workload["reason"], "the reason stays"
    return workload


def job_failed(job: JsonDict) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Failed" and c["status"] == "True" for c in conditions)


def is_active(pod: JsonDict) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not pod[
        "metadata"
    ].get("deletionTimestamp")


async def test_exit_code_is_error_with_the_code(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    daemon.kubelet.fail(daemon.namespace, pod, exit_code=3)
    workload = await failed(daemon, wid)
    assert workload["reason"] == "Error"
    assert workload["exit_code"] == 3
    assert "exited with code 3" in workload["message"]


async def test_a_secret_in_the_termination_message_is_masked_in_the_reason(
    daemon: Daemon,
) -> None:
    token = secrets.token_hex(16)
    wid, job, pod = await started(daemon, environment={"ZENML_STORE_API_TOKEN": token})
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    daemon.kubelet.fail(daemon.namespace, pod, exit_code=3, message=f"login with {token} refused")
    workload = await failed(daemon, wid)
    assert "login with *** refused" in workload["message"]
    for seen in (json.dumps(workload), json.dumps(daemon.job(job)), await daemon.scrape()):
        assert token not in seen
    assert token not in "\n".join(await daemon.logs(wid))


async def test_backoff_limit_retries_then_reports_the_last_exit_code(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    env = {f"{K}JOB_BACKOFF_LIMIT": "1"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env, adjust=fast) as daemon:
        wid, job, first = await started(daemon)
        daemon.kubelet.fail(daemon.namespace, first, exit_code=5)
        second = await daemon.pod_of(job)
        assert (await daemon.get(wid))["state"] in ("starting", "running")
        daemon.kubelet.fail(daemon.namespace, second, exit_code=7)
        workload = await failed(daemon, wid)
        assert workload["reason"] == "Error"
        assert workload["exit_code"] == 7
        assert "backoffLimit 1" in workload["message"] or "code 7" in workload["message"]
        conditions = {c["type"]: c for c in daemon.job(job)["status"]["conditions"]}
        assert conditions["Failed"]["reason"] == "BackoffLimitExceeded"


async def test_oom_killed(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.oom_kill(daemon.namespace, pod)
    workload = await failed(daemon, wid)
    assert workload["reason"] == "OOMKilled"
    assert "ran out of memory" in workload["message"]


async def test_evicted(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.evict(daemon.namespace, pod, message="The node was low on resource: memory.")
    workload = await failed(daemon, wid)
    assert workload["reason"] == "Evicted"
    assert "low on resource: memory" in workload["message"]


async def test_image_pull_error_after_the_grace_period(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon, image="registry.example/nope:1")
    daemon.kubelet.waiting(daemon.namespace, pod, "ErrImagePull")
    assert (await daemon.get(wid))["state"] == "starting", "not failed before the grace period"
    daemon.kubelet.waiting(daemon.namespace, pod, "ImagePullBackOff")
    workload = await failed(daemon, wid)  # no further event: the grace period ends it
    assert workload["reason"] == "ImagePullError"
    assert "registry.example/nope:1" in workload["message"]


async def test_crash_loop_back_off(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.waiting(daemon.namespace, pod, "CrashLoopBackOff", "back-off 10s restarting")
    workload = await failed(daemon, wid)
    assert workload["reason"] == "CrashLoopBackOff"
    assert "keeps crashing" in workload["message"]
    assert "None" not in workload["message"]


async def test_unschedulable_after_the_deadline(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.unschedulable(
        daemon.namespace, pod, "0/3 nodes are available: 3 Insufficient cpu."
    )
    assert (await daemon.until_state(wid, "starting", "failed"))["state"] == "starting"
    workload = await failed(daemon, wid)
    assert workload["reason"] == "Unschedulable"
    assert "Insufficient cpu" in workload["message"]


async def test_missing_service_account_is_create_failed(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(
        kube, kubeconfig, tmp_path, adjust=fast, service_account=False
    ) as daemon:
        workload = await daemon.submit()
        workload = await failed(daemon, workload["id"])
        assert workload["reason"] == "CreateFailed"
        assert 'serviceaccount "zenml-runner" not found' in workload["message"]
        assert daemon.pods(workload["job_name"]) == []


async def test_timeout_is_deadline_exceeded(daemon: Daemon) -> None:
    wid, job, pod = await started(daemon, timeout_seconds=1)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    workload = await failed(daemon, wid)  # the pod never ends by itself
    assert workload["reason"] == "DeadlineExceeded"
    assert "timeout of 1" in workload["message"]
    assert daemon.job(job)["spec"]["activeDeadlineSeconds"] == 1


@needs_pod_failure_policy
async def test_pod_failure_policy(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.fail(daemon.namespace, pod, exit_code=42)
    workload = await failed(daemon, wid)
    assert workload["reason"] == "PodFailurePolicy"
    assert "42" in workload["message"]


async def test_a_job_deleted_behind_the_daemons_back_is_job_lost(daemon: Daemon) -> None:
    wid, job, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    daemon.kube.store.delete("jobs", daemon.namespace, job)
    workload = await failed(daemon, wid)
    assert workload["reason"] == "JobLost"
    assert job in workload["message"]


async def test_success(daemon: Daemon) -> None:
    wid, _, pod = await started(daemon)
    daemon.kubelet.set_running(daemon.namespace, pod)
    running = await daemon.until_state(wid, "running")
    assert running["started_at"] is not None
    daemon.kubelet.succeed(daemon.namespace, pod)
    workload = await daemon.wait(wid)
    assert (workload["state"], workload["reason"]) == ("succeeded", None)


async def test_a_failed_create_event_seen_only_on_a_later_look_still_fails_the_run(
    tmp_path: Path,
) -> None:
    """Events are not watched: a Job without a pod is looked at again until one appears."""
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="scripted", job_controller=False
    ) as quiet:
        kubeconfig = quiet.write_kubeconfig(tmp_path / "kubeconfig")
        async with Daemon.running(quiet, kubeconfig, tmp_path, adjust=fast) as daemon:
            workload = await daemon.submit()
            job = workload["job_name"]
            await until(lambda: not daemon.job(job)["spec"].get("suspend"))
            # the Job started and made no pod; its controller has said nothing yet
            quiet.store.update_status(
                "jobs", daemon.namespace, job, {"startTime": "2026-01-01T00:00:00Z"}
            )
            await anyio.sleep(1.0)  # the daemon looked for Events and found none
            assert (await daemon.get(workload["id"]))["state"] == "starting"
            quiet.kubelet.failed_create_event(
                daemon.namespace, job, 'pods "x" is forbidden: quota exhausted for pods'
            )
            done = await daemon.wait(workload["id"])
            uid = daemon.job(job)["metadata"]["uid"]
    assert (done["state"], done["reason"]) == ("failed", "CreateFailed")
    assert "forbidden" in done["message"]
    # Events are asked for this Job alone, never the whole namespace's, at every look
    event_lists = [e.request_uri for e in quiet.audit.events() if e.resource == "events"]
    assert len(event_lists) >= 2
    assert all(f"involvedObject.uid%3D{uid}" in uri for uri in event_lists), event_lists
