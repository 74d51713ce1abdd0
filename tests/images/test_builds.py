"""Build on demand, end to end: the daemon on localkube, a real registry, builder Jobs.

What a user checks: an image already in the registry comes back at once and no Job is
made; a missing one gets exactly one builder Job (Dockerfile in a ConfigMap, push
credentials in a Secret, both owned by the Job; the deadline is the build's timeout);
ten identical requests share that Job; wrong credentials fail clearly and at once; a
failed build fails every workload waiting for it, with the builder's last log lines.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from pathlib import Path

import anyio
import pytest

from tests.images.conftest import Daemon, build_env
from tests.images.registries import PASSWORD, USER, Registry, push_image
from tests.inprocess import until
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

DOCKERFILE = "FROM python:3.11-slim\nRUN pip install zenml==0.98.0\n"


def image_name() -> str:
    return f"zenml-runner:{uuid.uuid4().hex}"


async def test_an_existing_tag_is_returned_at_once_without_a_job(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    name = image_name()
    push_image(basic_registry, "team/zenml-runner", name.split(":")[1])
    config = basic_registry.docker_config(tmp_path / "config.json")
    env = build_env(basic_registry, config)
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        workload = await daemon.build(dockerfile=DOCKERFILE, image_name=name)
        assert workload["state"] == "succeeded"
        assert workload["image"] == f"{basic_registry.host}/team/{name}"
        assert daemon.builder_jobs() == []
        body, _ = daemon.ops.metrics_exposition()
        assert b'zwmd_builds_total{result="cache_hit"} 1.0' in body


async def test_a_missing_tag_runs_one_builder_job_with_its_inputs(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    env = build_env(basic_registry, config, ZWMD_BUILDER_ARGS='["--cache=true"]')
    name = image_name()
    full = f"{basic_registry.host}/team/{name}"
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        wid = str(uuid.uuid4())
        workload = await daemon.build(
            wid, dockerfile=DOCKERFILE, image_name=name, timeout_seconds=900
        )
        assert (workload["state"], workload["image"]) == ("building", "")
        [job] = daemon.builder_jobs()
        meta, spec = job["metadata"], job["spec"]
        assert meta["labels"]["zwmd.io/kind"] == "builder"
        assert meta["labels"]["zwmd.io/workload-id"] == wid
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "zwmd"
        assert meta["annotations"]["zwmd.io/image"] == full
        assert spec["activeDeadlineSeconds"] == 900
        assert "ttlSecondsAfterFinished" not in spec  # only once its log is stored
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert container["image"] == "cgr.dev/chainguard/kaniko:latest"
        assert container["args"] == [
            "--dockerfile=/workspace/Dockerfile",
            "--context=dir:///workspace",
            f"--destination={full}",
            "--insecure",
            f"--insecure-registry={basic_registry.host}",
            "--cache=true",
        ]
        assert pod["serviceAccountName"] == "zenml-runner"
        volumes = {v["name"]: v for v in pod["volumes"]}

        configmap = daemon.kube_object("configmaps", volumes["context"]["configMap"]["name"])
        assert configmap["data"] == {"Dockerfile": DOCKERFILE}
        secret = daemon.kube_object("secrets", volumes["docker-config"]["secret"]["secretName"])
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        pushed = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
        login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert pushed == {"auths": {basic_registry.host: {"auth": login}}}
        for owned in (configmap, secret):
            [owner] = owned["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"]) == (
                "Job",
                meta["name"],
                meta["uid"],
            )

        # the builder pushes and exits 0: the workload gets its image
        await until(lambda: not daemon.kube_object("jobs", meta["name"])["spec"].get("suspend"))
        builder = await daemon.builder_pod(meta["name"])
        daemon.kubelet.set_running(daemon.namespace, builder)
        daemon.kubelet.log(daemon.namespace, builder, "INFO Pushed " + full)
        daemon.kubelet.succeed(daemon.namespace, builder)
        done = await daemon.wait(wid)
        assert (done["state"], done["image"]) == ("succeeded", full)
        body, _ = daemon.ops.metrics_exposition()
        assert b'zwmd_builds_total{result="built"} 1.0' in body
        # the builder's log joined the workload's stream, then the Job got its TTL
        await until(lambda: _has_log(daemon, wid, "Pushed"))
        await until(
            lambda: "ttlSecondsAfterFinished" in daemon.kube_object("jobs", meta["name"])["spec"]
        )
        finished = daemon.kube_object("jobs", meta["name"])["metadata"]["annotations"]
        assert finished["zwmd.io/logs-flushed"] == "true"
        assert finished["zwmd.io/state"] == "succeeded"


async def _has_log(daemon: Daemon, wid: str, text: str) -> bool:
    response = await daemon.http.get(f"/v1/workloads/{wid}/logs")
    return response.status_code == 200 and text in response.text


async def test_ten_identical_requests_share_one_builder_job(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    env = build_env(basic_registry, config)
    name = image_name()
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        ids = [str(uuid.uuid4()) for _ in range(10)]
        async with anyio.create_task_group() as tg:
            for wid in ids:
                tg.start_soon(
                    functools.partial(daemon.build, wid, dockerfile=DOCKERFILE, image_name=name)
                )
        [job] = daemon.builder_jobs()
        waiters = {
            key.split("/", 1)[1]
            for key in job["metadata"]["annotations"]
            if key.startswith("waiter.zwmd.io/")
        }
        await until(lambda: len(_waiters(daemon, job["metadata"]["name"])) == 10)
        assert waiters <= set(ids)
        builder = await daemon.builder_pod(job["metadata"]["name"])
        daemon.kubelet.succeed(daemon.namespace, builder)
        results = [await daemon.wait(wid) for wid in ids]
        assert {r["state"] for r in results} == {"succeeded"}
        assert {r["image"] for r in results} == {f"{basic_registry.host}/team/{name}"}
        assert len(daemon.builder_jobs()) == 1


def _waiters(daemon: Daemon, job_name: str) -> set[str]:
    notes = daemon.kube_object("jobs", job_name)["metadata"]["annotations"]
    return {key for key in notes if key.startswith("waiter.zwmd.io/")}


async def test_wrong_credentials_fail_at_once_with_a_clear_message(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json", password="wrong")
    env = build_env(basic_registry, config)
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        wid = str(uuid.uuid4())
        workload = await daemon.build(wid, dockerfile=DOCKERFILE, image_name=image_name())
        assert (workload["state"], workload["reason"]) == ("failed", "BuildFailed")
        assert (
            f"the registry {basic_registry.host} refused the configured credentials"
            in (workload["message"])
        )
        assert (await daemon.wait(wid))["reason"] == "BuildFailed"
        assert daemon.builder_jobs() == []
        await until(lambda: _has_log(daemon, wid, "refused the configured credentials"))


async def test_a_failed_build_fails_every_waiting_workload_with_the_log_tail(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    env = build_env(basic_registry, config)
    name = image_name()
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        await daemon.build(first, dockerfile=DOCKERFILE, image_name=name)
        await daemon.build(second, dockerfile=DOCKERFILE, image_name=name)
        [job] = daemon.builder_jobs()
        builder = await daemon.builder_pod(job["metadata"]["name"])
        daemon.kubelet.set_running(daemon.namespace, builder)
        daemon.kubelet.log(
            daemon.namespace, builder, "Step 2/2 : RUN pip install zenml", "error: no space left"
        )
        daemon.kubelet.fail(daemon.namespace, builder, exit_code=1)
        for wid in (first, second):
            done = await daemon.wait(wid)
            assert (done["state"], done["reason"]) == ("failed", "BuildFailed")
            assert "error: no space left" in done["message"]
            assert done["image"] == ""
        # the second requester's own stream says why, with the builder's last lines
        await until(lambda: _has_log(daemon, second, "error: no space left"))
        body, _ = daemon.ops.metrics_exposition()
        assert b'zwmd_builds_total{result="failed"} 1.0' in body


async def test_bearer_token_registry_finds_an_existing_tag(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, token_registry: Registry
) -> None:
    name = image_name()
    push_image(token_registry, "team/zenml-runner", name.split(":")[1])
    config = token_registry.docker_config(tmp_path / "config.json")
    env = build_env(token_registry, config)
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        found = await daemon.build(dockerfile=DOCKERFILE, image_name=name)
        assert (found["state"], found["image"]) == (
            "succeeded",
            f"{token_registry.host}/team/{name}",
        )
        missing = await daemon.build(dockerfile=DOCKERFILE, image_name=image_name())
        assert missing["state"] == "building"
        assert len(daemon.builder_jobs()) == 1


async def test_runner_pods_get_pull_credentials_for_the_registry(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, basic_registry: Registry
) -> None:
    config = basic_registry.docker_config(tmp_path / "config.json")
    env = build_env(basic_registry, config)
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", env) as daemon:
        wid = str(uuid.uuid4())
        image = f"{basic_registry.host}/team/zenml-runner:abc"
        response = await daemon.http.post(
            f"/v1/workloads/{wid}/run", json={"image": image, "command": ["true"]}
        )
        assert response.status_code == 202, response.text
        job = daemon.kube_object("jobs", response.json()["job_name"])
        [pull] = job["spec"]["template"]["spec"]["imagePullSecrets"]
        secret = daemon.kube_object("secrets", pull["name"])
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        assert list(auths) == [basic_registry.host]
