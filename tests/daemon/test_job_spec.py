"""The runner Job that zwmd creates, built from every ZENML_KUBERNETES_WORKLOAD_MANAGER_* knob.

Settings are loaded from variables (as ``zwmd serve`` does), a run is submitted over
HTTP, and the Job is read back from the (local) Kubernetes API, as ``kubectl get job -o
json`` would show it. The second half checks that the run's environment, a secret, is in
the Secret the Job owns and nowhere else: not in the Job, not in any API response, not
in the daemon's log.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from pathlib import Path

import orjson
import pytest

from tests.clusterversion import needs_pod_failure_policy
from tests.daemon.conftest import Daemon
from tests.inprocess import SERVICE_ACCOUNT, K, until
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
NODE_SELECTOR = {"node-pool": "zenml-pool", "kubernetes.io/arch": "amd64"}
TOLERATIONS = [
    {"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"},
    {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
]
POD_FAILURE_POLICY = {
    "rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
}
EVERY_KNOB = {
    f"{K}POD_RESOURCES": json.dumps(RESOURCES),
    f"{K}NODE_SELECTOR": json.dumps(NODE_SELECTOR),
    f"{K}TOLERATIONS": json.dumps(TOLERATIONS),
    f"{K}JOB_BACKOFF_LIMIT": "3",
    f"{K}TTL_SECONDS_AFTER_FINISHED": "600",
    "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "1",
}
POLICY_SERVED = not needs_pod_failure_policy.args[0]  # 1.26+
if POLICY_SERVED:
    EVERY_KNOB[f"{K}POD_FAILURE_POLICY"] = json.dumps(POD_FAILURE_POLICY)


async def test_every_variable_shapes_the_runner_job(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(kube, kubeconfig, tmp_path, EVERY_KNOB) as daemon:
        first = await daemon.submit(
            image="registry.example/zenml/runner:0.98.0",
            command=["python", "-m", "zenml.entrypoints.entrypoint"],
            arguments=["--run_id", str(uuid.uuid4())],
            timeout_seconds=900,
        )
        second = await daemon.submit(image="registry.example/zenml/runner:0.98.0")
        wid = first["id"]
        assert first["job_name"] == f"zwmd-runner-{uuid.UUID(wid).hex}"

        job = daemon.job(first["job_name"])
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["serviceAccountName"] == SERVICE_ACCOUNT
        assert pod["restartPolicy"] == "Never"
        assert container["image"] == "registry.example/zenml/runner:0.98.0"
        assert container["command"] == ["python", "-m", "zenml.entrypoints.entrypoint"]
        assert container["args"][0] == "--run_id"
        assert container["resources"] == RESOURCES
        assert pod["nodeSelector"] == NODE_SELECTOR
        assert pod["tolerations"] == TOLERATIONS
        assert spec["backoffLimit"] == 3
        assert spec.get("podFailurePolicy") == (POD_FAILURE_POLICY if POLICY_SERVED else None)
        assert spec["activeDeadlineSeconds"] == 900
        assert container["envFrom"] == [{"secretRef": {"name": f"{first['job_name']}-env"}}]
        # Pod Security "restricted" by default
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        labels = job["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "zwmd"
        assert labels["zwmd.io/workload-id"] == wid
        assert labels["zwmd.io/kind"] == "runner"
        assert "ttlSecondsAfterFinished" not in spec, "the TTL is set only once finished"

        # concurrency 1: the first is un-suspended, the second waits suspended
        await until(lambda: daemon.job(first["job_name"])["spec"]["suspend"] is False)
        second_job = daemon.job(second["job_name"])
        assert second_job["spec"]["suspend"] is True
        assert "activeDeadlineSeconds" not in second_job["spec"], "timeout 0 means no deadline"
        assert (await daemon.get(second["id"]))["state"] == "queued"

        pod_name = await daemon.pod_of(first["job_name"])
        daemon.kubelet.set_running(daemon.namespace, pod_name)
        await daemon.until_state(wid, "running")
        assert "ttlSecondsAfterFinished" not in daemon.job(first["job_name"])["spec"]
        daemon.kubelet.succeed(daemon.namespace, pod_name)
        assert (await daemon.wait(wid))["state"] == "succeeded"
        await until(
            lambda: daemon.job(first["job_name"])["spec"].get("ttlSecondsAfterFinished") == 600
        )
        # the slot it freed goes to the queued run
        await until(lambda: daemon.job(second["job_name"])["spec"]["suspend"] is False)
        assert (await daemon.get(second["id"]))["state"] == "starting"


async def test_runner_pods_may_run_as_root_when_told(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    """ZWMD_RUNNER_POD_SECURITY=baseline: for images that must run as root."""
    env = {"ZWMD_RUNNER_POD_SECURITY": "baseline"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env) as daemon:
        workload = await daemon.submit()
        pod = daemon.job(workload["job_name"])["spec"]["template"]["spec"]
        assert "runAsNonRoot" not in pod["securityContext"]
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def enforce_pod_security(kube: LocalKube, namespace: str, level: str) -> None:
    labels = {"pod-security.kubernetes.io/enforce": level}
    patch = {"metadata": {"labels": labels}}
    kube.store.patch("namespaces", None, namespace, patch, "application/merge-patch+json")


def pods_of(kube: LocalKube, namespace: str, job_name: str) -> list[dict[str, object]]:
    return kube.store.list("pods", namespace, label_selector=f"job-name={job_name}")[0]


async def test_runner_pods_are_admitted_where_restricted_is_enforced(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(kube, kubeconfig, tmp_path) as daemon:
        enforce_pod_security(kube, daemon.namespace, "restricted")
        workload = await daemon.submit()
        await until(lambda: bool(pods_of(kube, daemon.namespace, workload["job_name"])))


async def test_a_root_runner_is_refused_where_restricted_is_enforced(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    """The counter-test: the same namespace refuses the pod of a runner allowed root."""
    env = {"ZWMD_RUNNER_POD_SECURITY": "baseline"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env) as daemon:
        enforce_pod_security(kube, daemon.namespace, "restricted")
        workload = await daemon.submit()
        job_name = workload["job_name"]

        def refused() -> bool:
            events = kube.store.list("events", daemon.namespace)[0]
            return any(
                e["involvedObject"]["name"] == job_name
                and e["reason"] == "FailedCreate"
                and 'violates PodSecurity "restricted' in e["message"]
                for e in events
            )

        await until(refused)
        assert pods_of(kube, daemon.namespace, job_name) == []
        # and the run says so: it fails with the admission's words, not silently starting
        finished = await daemon.wait(workload["id"])
        assert (finished["state"], finished["reason"]) == ("failed", "CreateFailed")
        assert 'violates PodSecurity "restricted:latest": runAsNonRoot' in finished["message"]


async def test_the_environment_is_only_in_the_secret_the_job_owns(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = f"zenml-api-token-{uuid.uuid4().hex}"
    url = f"https://zenml.internal/{uuid.uuid4().hex}"
    environment = {"ZENML_STORE_API_TOKEN": token, "ZENML_STORE_URL": url}
    caplog.set_level(logging.DEBUG)
    async with Daemon.running(kube, kubeconfig, tmp_path) as daemon:
        responses = []
        submitted = await daemon.submit(environment=environment, arguments=["--run_id", "r-1"])
        wid, job_name = submitted["id"], submitted["job_name"]
        responses.append(json.dumps(submitted))
        again = await daemon.http.post(
            f"/v1/workloads/{wid}/run",
            json={
                "image": "runner:1",
                "environment": environment,
                "arguments": ["--run_id", "r-1"],
            },
        )
        assert again.status_code == 200
        responses.append(again.text)

        secret = kube.store.get("secrets", daemon.namespace, f"{job_name}-env")
        job = daemon.job(job_name)
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == environment
        (owner,) = secret["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Job",
            job_name,
            job["metadata"]["uid"],
        )

        pod_name = await daemon.pod_of(job_name)
        daemon.kubelet.set_running(daemon.namespace, pod_name)
        await daemon.until_state(wid, "running")
        daemon.kubelet.fail(daemon.namespace, pod_name, exit_code=3)
        responses.append(json.dumps(await daemon.wait(wid)))
        for path in (f"/v1/workloads/{wid}", "/v1/workloads", "/v1/workloads/r-1"):
            response = await daemon.http.get(path)
            assert response.status_code == 200
            responses.append(response.text)
        responses.append((await daemon.http.get("/metrics")).text)
        job = daemon.job(job_name)

    job_json = orjson.dumps(job).decode()
    pod_json = orjson.dumps(kube.store.get("pods", daemon.namespace, pod_name)).decode()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "running -> failed" in logged or wid in logged, "the daemon's log was captured"
    for value in environment.values():
        for where, text in [("Job", job_json), ("pod", pod_json), ("daemon log", logged)] + [
            (f"API response {i}", r) for i, r in enumerate(responses)
        ]:
            assert value not in text, f"an environment value is in the {where}"
            assert base64.b64encode(value.encode()).decode() not in text, where
