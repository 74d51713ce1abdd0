"""``zwmd doctor`` against localkube: a healthy set-up, then what an operator gets wrong.

The command runs as a subprocess (its table and exit code are what a user sees) while
localkube serves in the test's event loop. It acts as the ``zwmd`` service account under
the shipped Role, or under a narrower Role to show what it says about a missing verb.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.daemon_process import free_port
from tests.rbac import NAMESPACE_LABELS, Rules, shipped_rules, without, zwmd_kubeconfig
from zwmd.daemon.doctor import PERMISSIONS
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"


@pytest.fixture
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(kubelet=None, unauthenticated="anonymous") as localkube:
        yield localkube


def environment(
    kube: LocalKube,
    tmp_path: Path,
    namespace: str,
    rules: Rules | None = None,
    *,
    admin: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Doctor's variables: it acts as ``zwmd`` under ``rules`` (the shipped Role's by
    default), or with ``admin`` as a cluster administrator running it by hand."""
    if admin:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    else:
        kubeconfig = zwmd_kubeconfig(kube, namespace, tmp_path / "kubeconfig", rules)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env.update(
        {
            f"{K}NAMESPACE": namespace,
            f"{K}SERVICE_ACCOUNT": "zenml-runner",
            "ZWMD_STATE_DIR": str(tmp_path / "state"),
            "KUBECONFIG": str(kubeconfig),
            **(extra or {}),
        }
    )
    return env


async def doctor(env: dict[str, str]) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Exit code, rows by check name (status, detail), and the whole output."""
    result = await anyio.run_process(
        [sys.executable, "-m", "zwmd", "doctor"], env=env, check=False, stderr=sys.stderr
    )
    output = result.stdout.decode()
    rows = {}
    for line in output.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("ok", "FAIL", "warn", "skip"):
            name, _, detail = rest.strip().partition("  ")
            rows[name.strip()] = (status.strip(), detail.strip())
    return result.returncode, rows, output


def namespace_with(kube: LocalKube, *, service_account: bool) -> str:
    name = f"doc-{uuid.uuid4().hex[:8]}"
    kube.store.create("namespaces", None, {"metadata": {"name": name, "labels": NAMESPACE_LABELS}})
    if service_account:
        kube.store.create("serviceaccounts", name, {"metadata": {"name": "zenml-runner"}})
    return name


async def test_a_good_set_up_passes_every_check(kube: LocalKube, tmp_path: Path) -> None:
    namespace = namespace_with(kube, service_account=True)
    code, rows, output = await doctor(environment(kube, tmp_path, namespace))
    assert code == 0, output
    assert list(rows) == [
        "configuration",
        "Kubernetes API",
        "Kubernetes version",
        "namespace",
        "service account",
        "permissions",
        "registry",
        "log store",
    ]
    assert {name for name, (status, _) in rows.items() if status != "ok"} == {
        "namespace",
        "registry",
    }
    assert rows["registry"] == ("skip", "none configured (runner images: reuse)")
    # the shipped Role grants nothing on Namespaces: doctor says so, and does not fail
    assert rows["namespace"] == (
        "skip",
        f"{namespace}: not checked (zwmd may not read Namespaces, nor needs to)",
    )
    assert rows["permissions"][1].startswith("18 verbs allowed")
    assert "fix" not in output


async def test_missing_service_account_and_a_denied_verb(kube: LocalKube, tmp_path: Path) -> None:
    namespace = namespace_with(kube, service_account=False)
    rules = without(without(shipped_rules(), "jobs", "delete"), "pods", "watch")
    code, rows, output = await doctor(environment(kube, tmp_path, namespace, rules))
    assert code == 1, output
    assert rows["namespace"][0] == "skip"
    assert rows["service account"] == (
        "FAIL",
        f"zenml-runner does not exist in {namespace}: runner Jobs could not create pods",
    )
    assert rows["permissions"] == ("FAIL", f"denied in {namespace}: delete jobs, watch pods")
    assert (
        f"fix (service account): kubectl -n {namespace} create serviceaccount zenml-runner"
        in output
    )
    assert "fix (permissions): apply contrib/kubernetes/rbac.yaml" in output


async def test_missing_namespace(kube: LocalKube, tmp_path: Path) -> None:
    code, rows, output = await doctor(environment(kube, tmp_path, "nowhere", admin=True))
    assert code == 1, output
    assert rows["namespace"] == ("FAIL", "nowhere does not exist")
    assert "fix (namespace): kubectl create namespace nowhere" in output


async def test_unreachable_registry_and_unwritable_log_store(
    kube: LocalKube, tmp_path: Path
) -> None:
    namespace = namespace_with(kube, service_account=True)
    registry = f"127.0.0.1:{free_port()}"  # nothing listens there
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    env = environment(
        kube,
        tmp_path,
        namespace,
        extra={
            "ZWMD_STATE_DIR": str(not_a_directory / "state"),
            "ZWMD_INSECURE_REGISTRIES": registry,
            f"{K}DOCKER_REGISTRY": registry,
            f"{K}BUILD_RUNNER_IMAGE": "true",
        },
    )
    code, rows, output = await doctor(env)
    assert code == 1, output
    assert rows["registry"] == ("FAIL", f"http://{registry}/v2/ did not answer")
    assert rows["log store"][0] == "FAIL"
    assert f"fix (log store): make {not_a_directory / 'state'} writable" in output
    assert rows["permissions"][0] == "ok"


async def test_invalid_configuration_exits_2(kube: LocalKube, tmp_path: Path) -> None:
    env = environment(kube, tmp_path, "Not_A_Namespace", admin=True)
    code, rows, output = await doctor(env)
    assert code == 2
    assert rows["configuration"] == ("FAIL", "invalid")
    assert f"{K}NAMESPACE" in output


def test_doctor_checks_exactly_what_the_role_grants() -> None:
    yaml: Any = importlib.import_module("yaml")  # PyYAML ships no type information
    path = Path(__file__).parents[2] / "contrib" / "kubernetes" / "rbac.yaml"
    (role,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Role"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    checked = {(g, r, v) for g, r, verbs in PERMISSIONS for v in verbs}
    assert checked == granted
