"""The shipped Role grants exactly what zwmd uses: no verb more, no verb less.

A full life under the shipped Role, read back from localkube's audit trail: a build that
fails and one that pushes, runs that succeed, fail, are cancelled and cannot create their
pods (the Job's Events explain it), logs read, the daemon restarted, and ``zwmd doctor``.
Every request zwmd made as its service account is mapped to (API group, resource, verb)
and compared with :data:`zwmd.daemon.doctor.PERMISSIONS`, the table doctor checks and
``contrib/kubernetes/rbac.yaml`` grants (tests/ops/test_contrib_kubernetes.py holds the
Role to the same table).
"""

from __future__ import annotations

import dataclasses
import importlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.images.conftest import Daemon, build_env
from tests.images.registries import Registry
from tests.images.test_builds import DOCKERFILE, image_name
from tests.inprocess import until
from tests.ops.test_doctor import doctor, environment
from zwmd.daemon.doctor import PERMISSIONS
from zwmd.daemon.serving import DaemonConfig
from zwmd.kube.cluster_version import OLDEST_SUPPORTED
from zwmd.localkube import LocalKube
from zwmd.localkube.resources import group_of

pytestmark = pytest.mark.anyio

# kubernetes-validate ships no type information
kubernetes_validate: Any = importlib.import_module("kubernetes_validate")
# the oldest supported version whose schemas kubernetes-validate ships (it starts at 1.25)
OLDEST = max(
    ".".join(map(str, OLDEST_SUPPORTED)),
    importlib.import_module("kubernetes_validate.utils").all_versions()[0],
    key=lambda v: tuple(int(part) for part in v.split(".")[:2]),
)

Used = set[tuple[str, str, str]]


def fast(config: DaemonConfig) -> DaemonConfig:
    """Events are read soon after a Job starts with no pod."""
    timing = dataclasses.replace(
        config.engine_timing, events_poll_after=0.2, image_pull_grace=timedelta(seconds=1.5)
    )
    return dataclasses.replace(config, engine_timing=timing)


def used_by_zwmd(kube: LocalKube, namespaces: set[str], *, refused: bool = False) -> Used:
    """(group, resource[/subresource], verb) of every request zwmd's identities made that
    RBAC allowed, or with ``refused`` of those it refused (403)."""
    users = {f"system:serviceaccount:{ns}:zwmd" for ns in namespaces}
    used: Used = set()
    for event in kube.audit.events():
        if event.user in users and (event.code == 403) == refused:
            resource = event.resource + (f"/{event.subresource}" if event.subresource else "")
            used.add((group_of(event.resource), resource, event.verb))
    return used


def granted() -> Used:
    return {(group, resource, verb) for group, resource, verbs in PERMISSIONS for verb in verbs}


async def builds_runs_and_a_restart(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, registry: Registry
) -> str:
    config = registry.docker_config(tmp_path / "config.json")
    env = build_env(registry, config)
    state = tmp_path / "state"
    async with Daemon.running(kube, kubeconfig, state, env, adjust=fast) as daemon:
        namespace = daemon.namespace
        # a build that fails (its log tail read from the builder pod), then a rebuild that
        # pushes while the collector still lags behind: the failed builder's inputs are
        # still there, and are taken over
        name = image_name()
        lag = kube.garbage_collector.delay
        kube.garbage_collector.delay = 60.0
        for outcome in ("fail", "succeed"):
            wid = str(uuid.uuid4())
            await daemon.build(wid, dockerfile=DOCKERFILE, image_name=name)
            job = next(
                j
                for j in daemon.builder_jobs()
                if j["metadata"]["labels"]["zwmd.io/workload-id"] == wid
            )["metadata"]["name"]
            pod = await daemon.builder_pod(job)
            daemon.kubelet.set_running(namespace, pod)
            daemon.kubelet.log(namespace, pod, "building")
            if outcome == "fail":
                daemon.kubelet.fail(namespace, pod, exit_code=1)
            else:
                daemon.kubelet.succeed(namespace, pod)
            await daemon.wait(wid)
        kube.garbage_collector.delay = lag
        kube.garbage_collector.hurry()
        # a run that succeeds, with the registry's pull credentials, and its logs
        image = f"{registry.host}/team/zenml-runner:abc"
        ok = await daemon.submit(image=image, command=["true"], environment={"API_TOKEN": "s"})
        pod = await daemon.pod_of(ok["job_name"])
        daemon.kubelet.set_running(namespace, pod)
        daemon.kubelet.log(namespace, pod, "hello")
        daemon.kubelet.succeed(namespace, pod)
        assert (await daemon.wait(ok["id"]))["state"] == "succeeded"
        assert any(line.endswith("hello") for line in await daemon.logs(ok["id"]))
        # one that fails, and one cancelled while it runs
        bad = await daemon.submit()
        pod = await daemon.pod_of(bad["job_name"])
        daemon.kubelet.set_running(namespace, pod)
        daemon.kubelet.fail(namespace, pod, exit_code=3)
        assert (await daemon.wait(bad["id"]))["state"] == "failed"
        running = await daemon.submit()
        pod = await daemon.pod_of(running["job_name"])
        daemon.kubelet.set_running(namespace, pod)
        await daemon.until_state(running["id"], "running")
        assert (await daemon.http.delete(f"/v1/workloads/{running['id']}")).is_success
        assert (await daemon.wait(running["id"]))["state"] == "cancelled"
        left = await daemon.submit()  # still queued or starting when the daemon stops
    # a restart adopts what the first daemon left, from one list of each kind
    async with Daemon.running(
        kube, kubeconfig, state, env, namespace=namespace, adjust=fast
    ) as again:
        pod = await again.pod_of(left["job_name"])
        again.kubelet.set_running(namespace, pod)
        again.kubelet.succeed(namespace, pod)
        assert (await again.wait(left["id"]))["state"] == "succeeded"
        # the pull Secret this daemon did not write is brought up to date
        pulled = await again.submit(image=image)
        pod = await again.pod_of(pulled["job_name"])
        again.kubelet.succeed(namespace, pod)
        assert (await again.wait(pulled["id"]))["state"] == "succeeded"
    return namespace


async def a_run_that_cannot_create_its_pod(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> str:
    async with Daemon.running(
        kube, kubeconfig, tmp_path / "no-sa", adjust=fast, service_account=False
    ) as daemon:
        workload = await daemon.submit()
        done = await daemon.wait(workload["id"])
        assert done["reason"] == "CreateFailed"  # told by the Job's FailedCreate Event
        return daemon.namespace


def written_by_zwmd(kube: LocalKube, namespaces: set[str]) -> list[tuple[str, Any]]:
    """(verb resource, body) of every create and update zwmd's identities sent."""
    users = {f"system:serviceaccount:{ns}:zwmd" for ns in namespaces}
    return [
        (f"{event.verb} {event.resource}", event.request_object)
        for event in kube.audit.events()
        if event.user in users and event.verb in ("create", "update") and not event.subresource
    ]


@pytest.fixture
def recorded(kube: LocalKube) -> Iterator[None]:
    """The audit trail keeps the bodies of writes (level Request) for this test."""
    kube.audit.level = "Request"
    try:
        yield
    finally:
        kube.audit.level = "Metadata"


def asked_by_owner_references(written: list[tuple[str, Any]]) -> set[tuple[str, str, str]]:
    """What OwnerReferencesPermissionEnforcement (on in these tests) asks of zwmd without
    a request of its own: ``delete`` on every kind of object it sets an owner on."""
    asked = set()
    for what, body in written:
        if (body.get("metadata") or {}).get("ownerReferences"):
            resource = what.split()[1]
            asked.add((group_of(resource), resource, "delete"))
    return asked


async def test_the_shipped_role_grants_exactly_what_zwmd_uses(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry, recorded: None
) -> None:
    namespace = await builds_runs_and_a_restart(kube, kubeconfig, tmp_path, basic_registry)
    other = await a_run_that_cannot_create_its_pod(kube, kubeconfig, tmp_path)
    # every object zwmd wrote is valid, strictly (no unknown field), on the oldest
    # supported Kubernetes that kubernetes-validate knows and on the newest
    written = written_by_zwmd(kube, {namespace, other})
    kinds = {what for what, _ in written}
    assert {"create jobs", "create secrets", "create configmaps", "update configmaps"} <= kinds
    for version in (OLDEST, kubernetes_validate.latest_version()):
        for what, body in written:
            document = {"apiVersion": "v1", **body} if "apiVersion" not in body else body
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{what} is not valid on Kubernetes {version}: {error}")
    code, _rows, output = await doctor(environment(kube, tmp_path / "doctor", namespace))
    assert code == 0, output
    await until(lambda: bool(used_by_zwmd(kube, {namespace, other})))

    used = used_by_zwmd(kube, {namespace, other}) | asked_by_owner_references(written)
    missing, unused = sorted(used - granted()), sorted(granted() - used)
    assert not missing, f"zwmd needs these, and the Role does not grant them: {missing}"
    assert not unused, f"the Role grants these, and zwmd never uses them: {unused}"
    # only doctor's look at the Namespace is refused, and it says so without failing
    assert used_by_zwmd(kube, {namespace, other}, refused=True) == {("", "namespaces", "get")}
