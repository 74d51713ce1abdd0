"""``zwmd localkube`` as a process: port 0, the printed URL, a kubeconfig clients accept."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

pytestmark = pytest.mark.anyio


@pytest.fixture
def localkube_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zwmd",
            "localkube",
            "--port",
            "0",
            "--kubelet",
            "process",
            "--kubeconfig",
            str(kubeconfig),
            # kubectl 1.32 sends its typed commands' bodies (create configmap) as protobuf
            # to servers of 1.32 or later, and localkube decodes JSON only
            "--kubernetes-version",
            "1.31",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("localkube listening on http://127.0.0.1:")
        url = lines[0].split()[-1]
        assert lines[1] == f"port: {url.rsplit(':', 1)[1]}\n"
        yield url, kubeconfig
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


async def test_kubeconfig_works_with_kubernetes_asyncio(
    localkube_process: tuple[str, Path],
) -> None:
    url, kubeconfig = localkube_process
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    async with api:
        assert api.configuration.host == url
        core = client.CoreV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="cli")))
        names = {n.metadata.name for n in (await core.list_namespace()).items}
    assert names == {"default", "cli"}


def test_kubeconfig_works_with_kubectl(localkube_process: tuple[str, Path]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing (apt-get install kubernetes-client)")
        pytest.skip("kubectl is not installed")
    _, kubeconfig = localkube_process
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def kubectl_run(*args: str) -> str:
        done = subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    kubectl_run("create", "configmap", "settings", "--from-literal=a=b")
    assert kubectl_run("get", "configmaps", "-o", "name").split() == ["configmap/settings"]
    assert kubectl_run("get", "configmap", "settings", "-o", "jsonpath={.data.a}") == "b"
    # kubectl get prints the server's Table: the columns real Kubernetes has for ConfigMaps
    header, row = kubectl_run("get", "configmaps").splitlines()
    assert header.split() == ["NAME", "DATA", "AGE"]
    assert row.split()[:2] == ["settings", "1"]
    assert kubectl_run("get", "configmap", "settings").splitlines()[1].split()[:2] == [
        "settings",
        "1",
    ]
    kubectl_run("delete", "configmap", "settings")
    assert kubectl_run("get", "configmaps", "-o", "name").strip() == ""


def test_kubectl_runs_a_job_and_prints_its_columns(
    localkube_process: tuple[str, Path], tmp_path: Path
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing (apt-get install kubernetes-client)")
        pytest.skip("kubectl is not installed")
    _, kubeconfig = localkube_process
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def kubectl_run(*args: str) -> str:
        done = subprocess.run([kubectl, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    manifest = tmp_path / "job.json"
    container = {"name": "main", "image": "ignored", "command": ["/bin/sh", "-c", "echo hello"]}
    pod_spec = {"restartPolicy": "Never", "containers": [container]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "greet"},
        "spec": {"template": {"spec": pod_spec}},
    }
    manifest.write_text(json.dumps(job))
    assert kubectl_run("apply", "-f", str(manifest)).strip() == ("job.batch/greet created")
    kubectl_run("wait", "--for=condition=complete", "job/greet", "--timeout=50s")
    header, row = kubectl_run("get", "jobs").splitlines()
    assert header.split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert row.split()[:3] == ["greet", "Complete", "1/1"]
    header, row = kubectl_run("get", "pods", "-o", "wide").splitlines()
    assert header.split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert row.split()[1:4] == ["0/1", "Completed", "0"]
    assert kubectl_run("logs", "job/greet") == "hello\n"
    kubectl_run("delete", "job", "greet", "--wait=false")
    kubectl_run("wait", "--for=delete", "job/greet", "--timeout=50s")
    assert kubectl_run("get", "namespaces").splitlines()[0].split() == ["NAME", "STATUS", "AGE"]


Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def kubectl(localkube_process: tuple[str, Path]) -> Kubectl:
    """Run the real kubectl against the localkube process (its outcome, not checked)."""
    binary = shutil.which("kubectl")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is missing (apt-get install kubernetes-client)")
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": str(localkube_process[1])}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)

    return run


def _job_manifest(tmp_path: Path, name: str, **spec: object) -> str:
    container = {"name": "main", "image": "ignored", "command": ["/bin/true"]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    manifest = tmp_path / f"{name}.json"
    manifest.write_text(json.dumps(job))
    return str(manifest)


def test_kubectl_apply_validates_against_the_served_openapi(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    done = kubectl("apply", "-f", _job_manifest(tmp_path, "plain", backoffLimit=2))
    assert (done.returncode, done.stdout.strip()) == (0, "job.batch/plain created")
    assert done.stderr == ""

    typo = _job_manifest(tmp_path, "typo", backofLimit=2)
    strict = kubectl("apply", "--validate=strict", "-f", typo)
    assert strict.returncode == 1
    assert strict.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{typo}": Job in version "v1" '
        'cannot be handled as a Job: strict decoding error: unknown field "spec.backofLimit"'
    )
    assert kubectl("get", "job", "typo").returncode == 1  # nothing was created

    # applying to an existing Job is a strategic merge patch: the patch handler's 422
    changed = kubectl("apply", "-f", _job_manifest(tmp_path, "plain", backofLimit=3))
    assert changed.returncode == 1
    assert changed.stderr.startswith('The request is invalid: patch: Invalid value: "map[')
    assert changed.stderr.strip().endswith(
        ' spec:map[backofLimit:3 backoffLimit:<nil>]]": '
        'strict decoding error: unknown field "spec.backofLimit"'
    )

    warned = kubectl("apply", "--validate=warn", "-f", typo)
    assert (warned.returncode, warned.stdout.strip()) == (0, "job.batch/typo created")
    assert warned.stderr.strip() == 'Warning: unknown field "spec.backofLimit"'


def test_kubectl_explain_reads_the_served_schemas(kubectl: Kubectl) -> None:
    job = kubectl("explain", "job")
    assert job.returncode == 0, job.stderr
    fields = [line.split()[0] for line in job.stdout.splitlines() if re.match(r"  \S", line)]
    assert fields == ["apiVersion", "kind", "metadata", "spec", "status"]
    limit = kubectl("explain", "job.spec.backoffLimit")
    assert limit.returncode == 0, limit.stderr
    assert "FIELD: backoffLimit <integer>" in limit.stdout
    assert "Pod failures tolerated before the Job fails." in limit.stdout


def test_the_garbage_collector_delay_is_a_flag() -> None:
    from zwmd.localkube.cli import build_parser
    from zwmd.localkube.garbagecollector import DEFAULT_DELAY

    assert build_parser().parse_args([]).gc_delay == DEFAULT_DELAY
    assert build_parser().parse_args(["--gc-delay", "2.5"]).gc_delay == 2.5
