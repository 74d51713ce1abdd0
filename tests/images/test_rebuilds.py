"""A rebuild after a failed build, on a cluster whose garbage collector lags (issue 12).

A real cluster deletes a Job's dependents asynchronously, so a rebuild right after a
failed build meets the old builder Job's ``-context`` ConfigMap and push Secret. What a
user checks: the rebuild reaches "succeeded" with its image whatever the collector does
meanwhile (it comes after zwmd replaced them, or between zwmd's 409 and its update);
a builder whose inputs cannot be written fails the build clearly and is not left
suspended, so the next build of that image works. The collector is made to lag
(``gc_delay`` of a minute) and then to catch up at the moment the test wants.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images.conftest import Daemon, build_env
from tests.images.registries import Registry
from tests.inprocess import until
from zwmd.localkube import LocalKube
from zwmd.localkube.garbagecollector import GarbageCollector

pytestmark = pytest.mark.anyio

DOCKERFILE = "FROM python:3.11-slim\nRUN pip install zenml==0.98.0\n"


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


def image_name() -> str:
    return f"zenml-runner:{uuid.uuid4().hex}"


async def _failed_build(daemon: Daemon, name: str) -> str:
    """Build ``name`` and let its builder fail; the failed builder Job's uid."""
    workload_id = str(uuid.uuid4())
    await daemon.build(workload_id, dockerfile=DOCKERFILE, image_name=name)
    [job] = daemon.builder_jobs()
    builder = await daemon.builder_pod(job["metadata"]["name"])
    daemon.kubelet.fail(daemon.namespace, builder, exit_code=1)
    done = await daemon.wait(workload_id)
    assert (done["state"], done["reason"]) == ("failed", "BuildFailed")
    return str(job["metadata"]["uid"])


async def _rebuild_succeeds(daemon: Daemon, name: str, registry: Registry) -> None:
    workload_id = str(uuid.uuid4())
    await daemon.build(workload_id, dockerfile=DOCKERFILE, image_name=name)
    [job] = daemon.builder_jobs()
    builder = await daemon.builder_pod(job["metadata"]["name"])
    daemon.kubelet.succeed(daemon.namespace, builder)
    done = await daemon.wait(workload_id)
    assert done["state"] == "succeeded", done
    assert done["image"] == f"{registry.host}/team/{name}"


def _inputs_owned_by(daemon: Daemon, job_name: str) -> bool:
    """The builder's ConfigMap and Secret exist, owned by the builder Job of now alone."""
    uid = daemon.job(job_name)["metadata"]["uid"]
    for resource, suffix in (("configmaps", "-context"), ("secrets", "-push")):
        found = daemon.kube_object(resource, job_name + suffix)
        if [ref["uid"] for ref in found["metadata"].get("ownerReferences") or ()] != [uid]:
            return False
    return True


async def test_a_rebuild_right_after_a_failed_build_succeeds(
    kube: LocalKube,
    kubeconfig: Path,
    tmp_path: Path,
    basic_registry: Registry,
    collector: GarbageCollector,
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    name = image_name()
    async with Daemon.running(
        kube, kubeconfig, tmp_path / "state", build_env(basic_registry, config)
    ) as daemon:
        old_uid = await _failed_build(daemon, name)
        workload_id = str(uuid.uuid4())
        await daemon.build(workload_id, dockerfile=DOCKERFILE, image_name=name)
        await until(lambda: _new_builder_started(daemon, old_uid))
        # the collector comes now, after zwmd replaced the old Job's inputs
        collector.catch_up()
        [job] = daemon.builder_jobs()
        assert _inputs_owned_by(daemon, job["metadata"]["name"])
        builder = await daemon.builder_pod(job["metadata"]["name"])
        daemon.kubelet.succeed(daemon.namespace, builder)
        done = await daemon.wait(workload_id)
        assert done["state"] == "succeeded", done
        assert done["image"] == f"{basic_registry.host}/team/{name}"


async def test_a_rebuild_succeeds_when_the_collector_deletes_its_inputs_meanwhile(
    kube: LocalKube,
    kubeconfig: Path,
    tmp_path: Path,
    basic_registry: Registry,
    collector: GarbageCollector,
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    name = image_name()
    async with Daemon.running(
        kube, kubeconfig, tmp_path / "state", build_env(basic_registry, config)
    ) as daemon:
        await _failed_build(daemon, name)
        # the old ConfigMap answers the rebuild's create with 409; the collector deletes
        # it just before zwmd's update reaches the apiserver
        kube.faults.before_next(collector.catch_up, match=("update", "configmaps"))
        await _rebuild_succeeds(daemon, name, basic_registry)
        [job] = daemon.builder_jobs()
        assert _inputs_owned_by(daemon, job["metadata"]["name"])


async def test_a_builder_whose_inputs_cannot_be_written_fails_and_is_not_left_suspended(
    kube: LocalKube,
    kubeconfig: Path,
    tmp_path: Path,
    basic_registry: Registry,
    collector: GarbageCollector,
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    name = image_name()
    async with Daemon.running(
        kube, kubeconfig, tmp_path / "state", build_env(basic_registry, config)
    ) as daemon:
        # a Role without the verb: the ConfigMap is refused
        kube.faults.fail_next(1, status=403, match=("create", "configmaps"))
        workload_id = str(uuid.uuid4())
        await daemon.build(workload_id, dockerfile=DOCKERFILE, image_name=name)
        done = await daemon.wait(workload_id)
        assert (done["state"], done["reason"]) == ("failed", "BuildFailed")
        assert "403" in done["message"]  # why, as Kubernetes said it
        assert daemon.builder_jobs() == []
        # the next build of that image is not stuck behind a suspended builder
        await _rebuild_succeeds(daemon, name, basic_registry)


def _new_builder_started(daemon: Daemon, old_uid: str) -> bool:
    jobs = daemon.builder_jobs()
    return (
        len(jobs) == 1
        and jobs[0]["metadata"]["uid"] != old_uid
        and not jobs[0]["spec"].get("suspend")
    )
