"""The informer: one cache of Jobs and Pods, trimmed, with the pods-by-Job index.

Against localkube with its Job controller (it creates the Job's pod, owned by the Job)
and the scripted kubelet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.inprocess import until
from zwmd.kube import naming
from zwmd.kube.client import KubeClient, Obj, load_api_client
from zwmd.kube.informer import Change, Informer, job_of
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

WORKLOAD = "6a1c1b9e-0000-4000-8000-00000000aaaa"


@dataclass
class Cluster:
    localkube: LocalKube
    kube: KubeClient


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with LocalKube(kubernetes_version=KUBERNETES_VERSION, kubelet="scripted") as localkube:
        kubeconfig = str(localkube.write_kubeconfig(tmp_path / "kubeconfig"))
        api = await load_api_client(kubeconfig)
        try:
            yield Cluster(localkube, KubeClient(api, "default"))
        finally:
            await api.close()


class _Recorder:
    def __init__(self) -> None:
        self.listed: list[str] = []
        self.changes: list[Change] = []

    async def on_listed(self, resource: str) -> None:
        self.listed.append(resource)

    async def on_changed(self, change: Change) -> None:
        self.changes.append(change)


def _job(name: str) -> Obj:
    labels = {
        naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
        naming.LABEL_WORKLOAD_ID: WORKLOAD,
        naming.LABEL_KIND: naming.KIND_RUNNER,
    }
    container = {
        "name": "runner",
        "image": "runner:1",
        "command": ["sh", "-c", "exit 0"],
        "env": [{"name": "BIG", "value": "x" * 5000}],
        "resources": {"limits": {"memory": "700Mi"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": {naming.ANN_STATE: "queued"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


async def test_one_cache_trimmed_with_pods_indexed_by_their_job(cluster: Cluster) -> None:
    informer = Informer(cluster.kube)
    recorder = _Recorder()
    informer.subscribers.append(recorder)
    async with anyio.create_task_group() as tg:
        await tg.start(informer.run)
        assert informer.synced
        assert sorted(recorder.listed) == ["jobs", "pods"]
        await cluster.kube.create("jobs", _job("zwmd-runner-one"))
        await until(lambda: bool(informer.pods_of("zwmd-runner-one")))

        job = informer.job("zwmd-runner-one")
        assert job is not None
        assert "template" not in job["spec"]
        assert job["spec"]["backoffLimit"] == 0
        assert "managedFields" not in job["metadata"]
        assert job["metadata"]["annotations"][naming.ANN_STATE] == "queued"
        (pod,) = informer.pods_of("zwmd-runner-one")
        assert job_of(pod) == "zwmd-runner-one"
        assert "annotations" not in pod["metadata"]
        assert pod["spec"]["containers"] == [
            {"name": "runner", "image": "runner:1", "resources": {"limits": {"memory": "700Mi"}}}
        ]  # no env, no command: what zwmd reads, nothing more
        assert informer.pod(pod["metadata"]["name"]) is pod
        pod_changes = [c for c in recorder.changes if c.resource == "pods"]
        assert pod_changes
        assert all(c.job_name == "zwmd-runner-one" for c in pod_changes)

        listed = await informer.list_pods_of("zwmd-runner-one")
        assert [p["metadata"]["name"] for p in listed] == [pod["metadata"]["name"]]

        await cluster.kube.delete("jobs", "zwmd-runner-one", propagation="Background")
        await until(lambda: informer.job("zwmd-runner-one") is None)
        await until(lambda: not informer.pods_of("zwmd-runner-one"))
        assert any(c.resource == "jobs" and c.deleted for c in recorder.changes)
        tg.cancel_scope.cancel()


def test_the_owner_reference_names_the_job_before_any_label() -> None:
    owned = {
        "metadata": {
            "labels": {"job-name": "from-label"},
            "ownerReferences": [{"kind": "Job", "name": "from-owner", "controller": True}],
        }
    }
    legacy = {"metadata": {"labels": {"job-name": "legacy"}}}  # Kubernetes before 1.27
    assert job_of(owned) == "from-owner"
    assert job_of(legacy) == "legacy"
    assert job_of({"metadata": {}}) == ""


def _owned_config_map(owner: Obj, text: str) -> Obj:
    meta = owner["metadata"]
    reference = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "zwmd-builder-x-context", "ownerReferences": [reference]},
        "data": {"Dockerfile": text},
    }


def _suspended_job(name: str) -> Obj:
    job = _job(name)
    job["spec"]["suspend"] = True
    return job


async def _replaced_owner(cluster: Cluster) -> tuple[Obj, Obj]:
    """A Job with its ConfigMap, deleted (its ConfigMap not collected yet), and a new Job
    of the same name: what a rebuild meets on a real cluster."""
    cluster.localkube.garbage_collector.delay = 60.0  # lags until caught up
    old = await cluster.kube.create("jobs", _suspended_job("zwmd-builder-x"))
    await cluster.kube.create_or_replace("configmaps", _owned_config_map(old, "FROM a"))
    await cluster.kube.delete("jobs", "zwmd-builder-x", propagation="Background")
    new = await cluster.kube.create("jobs", _suspended_job("zwmd-builder-x"))
    return old, new


async def test_create_or_replace_takes_the_new_owner_and_data(cluster: Cluster) -> None:
    _, new = await _replaced_owner(cluster)
    await cluster.kube.create_or_replace("configmaps", _owned_config_map(new, "FROM b"))
    cluster.localkube.garbage_collector.catch_up()  # the collector comes after the replace
    stored = await cluster.kube.get("configmaps", "zwmd-builder-x-context")
    assert stored["data"] == {"Dockerfile": "FROM b"}
    assert [ref["uid"] for ref in stored["metadata"]["ownerReferences"]] == [new["metadata"]["uid"]]


async def test_create_or_replace_creates_again_what_the_collector_deleted_meanwhile(
    cluster: Cluster,
) -> None:
    _, new = await _replaced_owner(cluster)
    localkube = cluster.localkube
    # the collector deletes the old ConfigMap between the create's 409 and the update
    localkube.faults.before_next(
        localkube.garbage_collector.catch_up, match=("update", "configmaps")
    )
    await cluster.kube.create_or_replace("configmaps", _owned_config_map(new, "FROM b"))
    localkube.garbage_collector.catch_up()
    stored = await cluster.kube.get("configmaps", "zwmd-builder-x-context")
    assert stored["data"] == {"Dockerfile": "FROM b"}
    assert [ref["uid"] for ref in stored["metadata"]["ownerReferences"]] == [new["metadata"]["uid"]]


async def test_create_or_replace_of_an_object_being_deleted_creates_it_anew(
    cluster: Cluster,
) -> None:
    _, new = await _replaced_owner(cluster)
    store = cluster.localkube.store
    held = store.get("configmaps", "default", "zwmd-builder-x-context")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    store.replace("configmaps", "default", "zwmd-builder-x-context", held)
    store.delete("configmaps", "default", "zwmd-builder-x-context")  # marked, not gone
    await cluster.kube.create_or_replace("configmaps", _owned_config_map(new, "FROM b"))
    cluster.localkube.garbage_collector.catch_up()
    stored = await cluster.kube.get("configmaps", "zwmd-builder-x-context")
    assert stored["data"] == {"Dockerfile": "FROM b"}
    assert "deletionTimestamp" not in stored["metadata"]
    assert [ref["uid"] for ref in stored["metadata"]["ownerReferences"]] == [new["metadata"]["uid"]]
