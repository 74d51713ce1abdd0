"""A run resubmitted under its Job's name right after that Job was deleted (issue 12).

A real cluster's garbage collector deletes a Job's environment Secret some time after the
Job. A run whose Job was deleted while no daemon watched (its attempt still open in the
log store) is resubmitted under the same Job name, and meets the old Secret. What a user
checks: the run starts and gets the environment it was resubmitted with, whenever the
collector comes (here: between zwmd's 409 and its update of the Secret).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon
from zwmd.localkube import LocalKube
from zwmd.localkube.garbagecollector import GarbageCollector

pytestmark = pytest.mark.anyio

ONE_AT_A_TIME = {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "1"}


@pytest.fixture
def collector(kube: LocalKube) -> Iterator[GarbageCollector]:
    """The localkube's garbage collector, lagging until the test makes it catch up."""
    collector = kube.garbage_collector
    before = collector.delay
    collector.delay = 60.0
    try:
        yield collector
    finally:
        collector.delay = before
        collector.hurry()


async def test_a_run_resubmitted_after_its_job_was_deleted_gets_its_environment(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, collector: GarbageCollector
) -> None:
    namespace = f"zwmd-{uuid.uuid4().hex[:10]}"
    blocker, wid = str(uuid.uuid4()), str(uuid.uuid4())
    async with Daemon.running(
        kube, kubeconfig, tmp_path, ONE_AT_A_TIME, namespace=namespace
    ) as first:
        await first.submit(blocker, command=["run"])
        queued = await first.submit(wid, command=["run"], environment={"TOKEN": "old"})
        assert queued["state"] == "queued"
        job_name = queued["job_name"]
    # while no daemon runs, someone deletes the queued run's Job; its Secret stays a while
    kube.store.delete("jobs", namespace, job_name, "Background")
    assert kube.store.get("secrets", namespace, f"{job_name}-env")

    async with Daemon.running(
        kube, kubeconfig, tmp_path, ONE_AT_A_TIME, namespace=namespace
    ) as second:
        kube.faults.before_next(collector.catch_up, match=("update", "secrets"))
        again = await second.submit(wid, command=["run"], environment={"TOKEN": "new"})
        assert again["job_name"] == job_name  # the same attempt: the Secret's name again
        blocker_job = (await second.get(blocker))["job_name"]
        second.kubelet.succeed(namespace, await second.pod_of(blocker_job))
        pod = await second.pod_of(job_name)
        second.kubelet.succeed(namespace, pod)
        done = await second.wait(wid)
        assert done["state"] == "succeeded", done
        collector.catch_up()
        secret = second.kube_object("secrets", f"{job_name}-env")
        assert base64.b64decode(secret["data"]["TOKEN"]) == b"new"
        owners = [ref["uid"] for ref in secret["metadata"]["ownerReferences"]]
        assert owners == [second.job(job_name)["metadata"]["uid"]]
