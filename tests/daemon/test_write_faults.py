"""Faults on writes, not only on watches: what a real apiserver does under load.

Each fault is injected by localkube on one verb and resource; the daemon stays up, the
client is told to retry (503 with ``Retry-After``), and the workload ends as it should.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import anyio
import pytest

from tests.daemon.conftest import Daemon
from tests.inprocess import until
from zwmd.apiclient import ApiError, Client, ClientConfig
from zwmd.daemon.serving import DaemonConfig
from zwmd.engine.speckey import SECRET_NAME
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


async def test_throttled_admission_is_retried_and_the_run_completes(daemon: Daemon) -> None:
    faults = daemon.kube.faults
    faults.fail_next(3, status=429, match=("patch", "jobs"))  # the un-suspend, three times
    workload = await daemon.submit(command=["sh", "-c", "exit 0"], expect=(202,))
    job = str(workload["job_name"])
    pod = await daemon.pod_of(job, timeout=30)  # admitted once the apiserver let it
    assert faults.pending_failures == 0
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.succeed(daemon.namespace, pod)
    assert (await daemon.wait(str(workload["id"]), timeout=30))["state"] == "succeeded"
    assert (await daemon.http.get("/healthz")).status_code == 200  # and the daemon is up


async def test_a_failed_secret_create_asks_for_a_retry_that_then_runs(daemon: Daemon) -> None:
    await daemon.ops.runners.spec_key.get()  # its Secret exists: the fault hits the run's
    daemon.kube.faults.fail_next(1, status=500, match=("create", "secrets"))
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    url = "/v1/workloads/6a1c1b9e-0000-4000-8000-0000000005e1/run"
    refused = await daemon.http.post(url, json=body)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "500" in refused.json()["detail"]
    retried = await daemon.http.post(url, json=body)  # the same request again
    assert retried.status_code == 202, retried.text
    job = str(retried.json()["job_name"])
    assert daemon.kube_object("secrets", f"{job}-env")  # the environment is there now
    pod = await daemon.pod_of(job, timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.succeed(daemon.namespace, pod)
    assert (await daemon.wait(retried.json()["id"], timeout=30))["state"] == "succeeded"


async def test_a_retry_while_the_first_try_writes_its_job_is_answered_by_its_outcome(
    daemon: Daemon,
) -> None:
    """The caller gave up on a slow first try and sent the request again: the retry is
    not told "queued" for a workload the first try then drops when its create fails."""
    await daemon.ops.runners.spec_key.get()  # its Secret exists: the fault hits the Job's
    faults = daemon.kube.faults
    faults.latency = 1.0  # every request: the first try's Job create is slow...
    faults.fail_next(1, status=500, match=("create", "jobs"))  # ...and then refused
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    url = "/v1/workloads/6a1c1b9e-0000-4000-8000-0000000005e7/run"
    answers: dict[str, int] = {}

    async def post(name: str) -> None:
        answers[name] = (await daemon.http.post(url, json=body)).status_code

    async with anyio.create_task_group() as tg:
        tg.start_soon(post, "first")
        await anyio.sleep(0.3)  # the first try is inside its Job create now
        tg.start_soon(post, "retry")
    faults.latency = 0.0
    assert answers == {"first": 503, "retry": 202}  # the retry made the workload itself
    workload = await daemon.get("6a1c1b9e-0000-4000-8000-0000000005e7")  # it is known
    job = str(workload["job_name"])
    pod = await daemon.pod_of(job, timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.succeed(daemon.namespace, pod)
    assert (await daemon.wait(str(workload["id"]), timeout=30))["state"] == "succeeded"


def _short_grace(config: DaemonConfig) -> DaemonConfig:
    timing = dataclasses.replace(config.engine_timing, environment_grace=2.0)
    return dataclasses.replace(config, engine_timing=timing)


async def test_a_job_whose_secret_never_came_fails_without_a_pod_and_blocks_nobody(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    cut_short = "6a1c1b9e-0000-4000-8000-0000000005e4"
    async with Daemon.running(
        kube,
        kubeconfig,
        tmp_path,
        {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "1"},
        adjust=_short_grace,
    ) as daemon:
        await daemon.ops.runners.spec_key.get()  # its Secret exists: the fault hits the run's
        daemon.kube.faults.fail_next(1, status=500, match=("create", "secrets"))
        refused = await daemon.http.post(f"/v1/workloads/{cut_short}/run", json=body)
        assert refused.status_code == 503, refused.text
        job = str((await daemon.get(cut_short))["job_name"])  # known, and queued
        assert (await daemon.get(cut_short))["state"] == "queued"
        behind = await daemon.submit(command=["sh", "-c", "exit 0"], expect=(202,))
        pod = await daemon.pod_of(str(behind["job_name"]), timeout=30)  # the slot was free
        daemon.kubelet.set_running(daemon.namespace, pod)
        daemon.kubelet.succeed(daemon.namespace, pod)
        failed = await daemon.wait(cut_short, timeout=30)
        assert failed["state"] == "failed"
        assert failed["reason"] == "CreateFailed"
        assert f"{job}-env was never created" in failed["message"]
        assert daemon.pods(job) == []  # no pod ever ran without its environment
        await until(lambda: not any(j["metadata"]["name"] == job for j in daemon.jobs()), 10)


async def test_a_retry_after_a_restart_completes_a_cut_short_submission(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    wid = "6a1c1b9e-0000-4000-8000-0000000005e5"
    async with Daemon.running(kube, kubeconfig, tmp_path) as first:
        await first.ops.runners.spec_key.get()  # its Secret exists: the fault hits the run's
        first.kube.faults.fail_next(1, status=500, match=("create", "secrets"))
        assert (await first.http.post(f"/v1/workloads/{wid}/run", json=body)).status_code == 503
        config = first.config  # the daemon stops with the Job there and no Secret
    async with Daemon.running(kube, kubeconfig, tmp_path, config=config) as second:
        adopted = await second.get(wid)
        assert adopted["state"] == "queued"  # adopted, and not admitted without its Secret
        job = str(adopted["job_name"])
        assert second.job(job)["spec"]["suspend"] is True
        retried = await second.http.post(f"/v1/workloads/{wid}/run", json=body)
        assert retried.status_code in (200, 202), retried.text
        assert retried.json()["job_name"] == job  # the same workload, not a new attempt
        assert second.kube_object("secrets", f"{job}-env")
        pod = await second.pod_of(job, timeout=30)
        second.kubelet.set_running(second.namespace, pod)
        second.kubelet.succeed(second.namespace, pod)
        assert (await second.wait(wid, timeout=30))["state"] == "succeeded"


async def test_cancel_says_cancelled_only_once_the_job_is_deleted(daemon: Daemon) -> None:
    """A refused delete is retried by the daemon, and says so meanwhile; no second call."""
    workload = await daemon.submit(command=["sh", "-c", "sleep 600"], expect=(202,))
    wid, job = str(workload["id"]), str(workload["job_name"])
    pod = await daemon.pod_of(job, timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    faults = daemon.kube.faults
    faults.fail_next(3, status=500, match=("delete", "jobs"))
    accepted = await daemon.http.delete(f"/v1/workloads/{wid}")
    assert accepted.status_code == 202, accepted.text  # under way, not done
    assert accepted.json()["state"] == "running"  # not a word about "cancelled"
    assert "cancel requested" in accepted.json()["message"]
    assert "500" in accepted.json()["message"]
    assert daemon.job(job)  # the Job is still there
    assert (await daemon.wait(wid, timeout=60))["state"] == "cancelled"
    assert faults.pending_failures == 0  # the daemon asked again until it was let
    assert job not in {j["metadata"]["name"] for j in daemon.jobs()}
    assert not (await daemon.get(wid))["message"].startswith("cancel requested")
    assert (await daemon.http.delete(f"/v1/workloads/{wid}")).status_code == 204


async def test_a_cancel_whose_delete_keeps_failing_lets_the_run_end_as_it_does(
    daemon: Daemon,
) -> None:
    workload = await daemon.submit(command=["sh", "-c", "exit 0"], expect=(202,))
    wid, job = str(workload["id"]), str(workload["job_name"])
    pod = await daemon.pod_of(job, timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    daemon.kube.faults.fail_next(1000, status=503, match=("delete", "jobs"))
    assert (await daemon.http.delete(f"/v1/workloads/{wid}")).status_code == 202
    daemon.kubelet.succeed(daemon.namespace, pod)  # it ends before a delete got through
    done = await daemon.wait(wid, timeout=30)
    assert done["state"] == "succeeded", done
    assert "cancel" not in done["message"]
    daemon.kube.faults.reset()


# -- the HTTP client: what the ZenML adapter sees ---------------------------------------


def _client(daemon: Daemon, retry_seconds: float) -> Client:
    config = ClientConfig(url=daemon.url, token=daemon.token, retry_seconds=retry_seconds)
    return Client(config)


async def test_the_client_retries_a_503_and_the_run_goes_through(daemon: Daemon) -> None:
    await daemon.ops.runners.spec_key.get()  # its Secret exists: the fault hits the run's
    daemon.kube.faults.fail_next(2, status=500, match=("create", "secrets"))
    wid = "6a1c1b9e-0000-4000-8000-0000000005e2"
    with _client(daemon, retry_seconds=30) as client:
        await anyio.to_thread.run_sync(client.healthz)  # the daemon has answered once
        workload = await anyio.to_thread.run_sync(
            lambda: client.run(wid, image="runner:1", command=["sh", "-c", "exit 0"])
        )
    assert daemon.kube.faults.pending_failures == 0  # both refusals were met, then retried
    assert workload.state in ("queued", "starting")
    pod = await daemon.pod_of(str(workload.job_name), timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    daemon.kubelet.succeed(daemon.namespace, pod)
    assert (await daemon.wait(wid, timeout=30))["state"] == "succeeded"


async def test_without_a_retry_budget_the_client_raises_the_503(daemon: Daemon) -> None:
    await daemon.ops.runners.spec_key.get()  # its Secret exists: the fault hits the run's
    daemon.kube.faults.fail_next(1, status=500, match=("create", "secrets"))
    wid = "6a1c1b9e-0000-4000-8000-0000000005e3"
    with _client(daemon, retry_seconds=0) as client, pytest.raises(ApiError) as raised:
        await anyio.to_thread.run_sync(
            lambda: client.run(wid, image="runner:1", command=["sh", "-c", "exit 0"])
        )
    assert raised.value.status == 503
    assert "500" in str(raised.value)


async def test_a_retried_request_gets_its_run_back_even_finished_and_after_a_restart(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    wid = "6a1c1b9e-0000-4000-8000-0000000005e6"
    url, first_try = f"/v1/workloads/{wid}/run", {"Idempotency-Key": "request-1"}
    async with Daemon.running(kube, kubeconfig, tmp_path) as first:
        accepted = await first.http.post(url, json=body, headers=first_try)
        assert accepted.status_code == 202, accepted.text
        job = str(accepted.json()["job_name"])
        pod = await first.pod_of(job, timeout=30)
        first.kubelet.set_running(first.namespace, pod)
        first.kubelet.succeed(first.namespace, pod)
        assert (await first.wait(wid, timeout=30))["state"] == "succeeded"
        retried = await first.http.post(url, json=body, headers=first_try)
        assert retried.status_code == 200, retried.text  # the answer the first try lost
        assert (retried.json()["attempt"], retried.json()["job_name"]) == (1, job)
        config = first.config
    async with Daemon.running(kube, kubeconfig, tmp_path, config=config) as second:
        retried = await second.http.post(url, json=body, headers=first_try)
        assert retried.status_code == 200, retried.text
        assert retried.json()["attempt"] == 1
        assert [j["metadata"]["name"] for j in second.jobs()] == [job]  # nothing ran again
        resumed = await second.http.post(url, json=body, headers={"Idempotency-Key": "request-2"})
        assert resumed.status_code == 202, resumed.text  # a new request: the next attempt
        assert resumed.json()["attempt"] == 2


async def test_a_broken_spec_key_secret_is_named_in_the_answer(daemon: Daemon) -> None:
    """Not a bare 500: the operator is told which Secret to mend, and it is left alone."""
    broken = {"metadata": {"name": SECRET_NAME}, "data": {"key": "bm90IGEga2V5"}}
    daemon.kube.store.create("secrets", daemon.namespace, broken)
    body = {"image": "runner:1", "command": ["sh", "-c", "exit 0"]}
    answer = await daemon.http.post(f"/v1/workloads/{uuid.uuid4()}/run", json=body)
    assert answer.status_code == 500
    assert SECRET_NAME in answer.json()["detail"]
    assert "restore it, or delete it" in answer.json()["detail"]
    assert daemon.kube_object("secrets", SECRET_NAME)["data"] == broken["data"]
    assert daemon.jobs() == []  # nothing was written


async def test_a_log_read_as_soon_as_the_run_ended_holds_every_line(daemon: Daemon) -> None:
    """ZenML reads the log once it sees the run end: a slow store or apiserver delays the
    last lines, but the read waits for them rather than answering a short log."""
    workload = await daemon.submit(command=["sh", "-c", "exit 0"], expect=(202,))
    wid, job = str(workload["id"]), str(workload["job_name"])
    pod = await daemon.pod_of(job, timeout=30)
    daemon.kubelet.set_running(daemon.namespace, pod)
    await daemon.until_state(wid, "running")
    lines = [f"line {k}" for k in range(200)]
    daemon.kubelet.log(daemon.namespace, pod, *lines)
    daemon.kube.faults.latency = 1.0  # every new request: the final log fetch is slow
    try:
        daemon.kubelet.succeed(daemon.namespace, pod)  # seen at once, on the open watch
        await daemon.until_state(wid, "succeeded")
        got = await daemon.logs(wid)
    finally:
        daemon.kube.faults.latency = 0.0
    assert [line.split("] ", 1)[1] for line in got if "] line " in line] == lines
