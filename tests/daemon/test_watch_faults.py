"""The watches survive what an apiserver does to them, and no transition is missed.

Workloads change state while localkube drops every watch, forgets its history (a resumed
watch gets ``410 Expired`` and the daemon must re-list), answers ``429`` with
``Retry-After`` and fails with ``503``. Every workload still reaches its true final state,
its Job's record says so, and ``/readyz`` says "not ready" while the apiserver fails and
"ready" again after.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon
from tests.inprocess import JsonDict, K, until
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


async def test_no_transition_is_missed_across_drops_410_429_and_503(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    env = {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "8", f"{K}JOB_BACKOFF_LIMIT": "0"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env) as daemon:
        ns, kubelet, faults = daemon.namespace, daemon.kubelet, kube.faults
        runs = [await daemon.submit() for _ in range(8)]
        pods = [await daemon.pod_of(w["job_name"]) for w in runs]
        for pod in pods:
            kubelet.set_running(ns, pod)
        for w in runs:
            await daemon.until_state(w["id"], "running")
        relists_before = relists(daemon)
        expected: dict[str, tuple[str, str | None]] = {}

        def ends(i: int, outcome: str, act: Callable[[], None], reason: str | None) -> None:
            act()
            expected[runs[i]["id"]] = (outcome, reason)

        # 1. every watch dropped; pods change before the daemon is back
        faults.drop_watches()
        ends(0, "succeeded", lambda: kubelet.succeed(ns, pods[0]), None)
        ends(1, "failed", lambda: kubelet.fail(ns, pods[1], exit_code=2), "Error")

        # 2. history compacted: resuming gives 410, the daemon must re-list
        faults.compact_history()
        faults.drop_watches()
        ends(2, "succeeded", lambda: kubelet.succeed(ns, pods[2]), None)
        ends(3, "failed", lambda: kubelet.oom_kill(ns, pods[3]), "OOMKilled")
        await until(lambda: relists(daemon) >= relists_before + 2)

        # 3. throttled: watches and lists answered 429 with Retry-After
        faults.fail_next(4, status=429, retry_after=1, match=("watch", None))
        faults.fail_next(2, status=429, retry_after=1, match=("list", None))
        faults.drop_watches()
        ends(4, "succeeded", lambda: kubelet.succeed(ns, pods[4]), None)
        ends(5, "failed", lambda: kubelet.fail(ns, pods[5], exit_code=9), "Error")

        # 4. the apiserver fails: not ready while it does, ready again after
        faults.fail_next(12, status=503, match=("watch", None))
        faults.drop_watches()
        ends(6, "succeeded", lambda: kubelet.succeed(ns, pods[6]), None)
        daemon.kube.store.delete("jobs", ns, runs[7]["job_name"])
        expected[runs[7]["id"]] = ("failed", "JobLost")
        await until(lambda: ready(daemon, want=False))
        await until(lambda: ready(daemon, want=True))

        for wid, (state, reason) in expected.items():
            workload = await daemon.wait(wid)
            assert (workload["id"], workload["state"], workload["reason"]) == (wid, state, reason)
        for job in daemon.jobs():
            record = job["metadata"]["annotations"]
            workload_id = job["metadata"]["labels"]["zwmd.io/workload-id"]
            assert record["zwmd.io/state"] == expected[workload_id][0]
        assert faults.pending_failures == 0, "every injected failure was met"


def relists(daemon: Daemon) -> float:
    body, _ = daemon.ops.metrics_exposition()
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("zwmd_watch_relists_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def ready(daemon: Daemon, *, want: bool) -> bool:
    response = await daemon.http.get("/readyz")
    body: JsonDict = response.json()
    return (response.status_code == 200) is want and body["ok"] is want


async def test_a_job_verdict_before_its_pod_still_gets_the_pods_reason(daemon: Daemon) -> None:
    """The Jobs watch says "Failed" while the Pods watch is down: the reason is still the
    pod's (OOMKilled), not the Job's vaguer BackoffLimitExceeded."""
    ns, faults = daemon.namespace, daemon.kube.faults
    workload = await daemon.submit()
    pod = await daemon.pod_of(workload["job_name"])
    daemon.kubelet.set_running(ns, pod)
    await daemon.until_state(workload["id"], "running")
    faults.fail_next(1000, status=503, match=("watch", "pods"))
    faults.drop_watches()
    daemon.kubelet.oom_kill(ns, pod)
    finished = await daemon.until_state(workload["id"], "failed")
    assert faults.pending_failures > 0, "the pods watch was still down when it failed"
    assert finished["reason"] == "OOMKilled"
    faults.reset()
    assert (await daemon.wait(workload["id"]))["reason"] == "OOMKilled"
