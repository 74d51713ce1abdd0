"""Concurrency: at most ``ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS`` runners at once, in order.

Twenty runs are submitted to a daemon with the default limit of 2. A store listener sees
every write localkube makes, so "at no moment" is literal: after every change, at most two
runner Jobs are un-suspended and unfinished, and at most two pods exist that have not
ended. Runs start in the order they were submitted.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.daemon.conftest import Daemon
from tests.inprocess import JsonDict

pytestmark = pytest.mark.anyio

RUNS = 20


def _finished(job: JsonDict) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
    )


async def test_two_at_a_time_in_submission_order(daemon: Daemon) -> None:
    store, ns = daemon.kube.store, daemon.namespace
    worst = {"jobs": 0, "pods": 0}
    unsuspended_order: list[str] = []

    def count(event_type: str, resource: str, obj: JsonDict, old: JsonDict | None) -> Any:
        if (obj.get("metadata") or {}).get("namespace") != ns:
            return
        if resource == "jobs" and obj["spec"].get("suspend") is False:
            name = obj["metadata"]["name"]
            if name not in unsuspended_order:
                unsuspended_order.append(name)
        jobs = [j for j in store.list("jobs", ns)[0] if not j["spec"].get("suspend")]
        active_jobs = [j for j in jobs if not _finished(j)]
        pods = [
            p
            for p in store.list("pods", ns)[0]
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        worst["jobs"] = max(worst["jobs"], len(active_jobs))
        worst["pods"] = max(worst["pods"], len(pods))

    store.add_listener(count)
    try:
        submitted = [await daemon.submit() for _ in range(RUNS)]
        order = [w["job_name"] for w in submitted]
        states = [(await daemon.get(w["id"]))["state"] for w in submitted]
        assert states.count("queued") >= RUNS - 2
        started: list[str] = []
        with anyio.fail_after(60):
            while len(started) < RUNS:
                pod = await daemon.kubelet.wait_for_pod(ns, timeout=10)
                job = store.get("pods", ns, pod)["metadata"]["labels"]["job-name"]
                started.append(job)
                daemon.kubelet.set_running(ns, pod)
                await daemon.until_state(submitted[order.index(job)]["id"], "running")
                daemon.kubelet.succeed(ns, pod)
        for workload in submitted:
            assert (await daemon.wait(workload["id"]))["state"] == "succeeded"
    finally:
        store.remove_listener(count)
    assert started == order, "pods started in submission order"
    assert unsuspended_order == order, "Jobs were un-suspended in submission order"
    assert worst == {"jobs": 2, "pods": 2}
    assert len(daemon.jobs()) == RUNS, "one Job per run, no duplicate"
