"""contrib/kubernetes: every manifest passes kubernetes-validate, and the files agree.

kubernetes-validate and PyYAML ship no type information; they are imported as modules
of type Any rather than with ``type: ignore`` comments.
"""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from zwmd.daemon.doctor import PERMISSIONS

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "contrib" / "kubernetes"
HELM_VALUES = KUBE / "helm-values-snippet.yaml"
MANIFESTS = sorted(p for p in KUBE.glob("*.yaml") if p != HELM_VALUES)
KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests must work with

kubernetes_validate: Any = importlib.import_module("kubernetes_validate")
yaml: Any = importlib.import_module("yaml")


@cache
def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for path in MANIFESTS
        for d in documents(path)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, found)
    return found[0]


def container(name: str) -> Any:
    deployment = find("Deployment")
    (found,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    return found


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def test_expected_files() -> None:
    assert {p.name for p in MANIFESTS} == {"namespace.yaml", "rbac.yaml", "sidecar-patch.yaml"}
    assert HELM_VALUES.exists()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", [KUBERNETES_VERSION, None], ids=["oldest", "latest"])
def test_manifest_validates(path: Path, version: str | None) -> None:
    desired = version or kubernetes_validate.latest_version()
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, desired, strict=True)


def test_helm_values_render_to_a_valid_container() -> None:
    """The snippet's environment and annotations, as the chart renders them, validate."""
    values = yaml.safe_load(HELM_VALUES.read_text())
    environment = values["zenml"]["environment"]
    assert all(isinstance(v, str) for v in environment.values()), environment
    assert environment["ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE"] == (
        "zwmd.zenml.WorkloadManager"
    )
    rendered = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "zenml"},
        "spec": {
            "selector": {"matchLabels": {"app": "zenml"}},
            "template": {
                "metadata": {"labels": {"app": "zenml"}, "annotations": values["podAnnotations"]},
                "spec": {
                    "serviceAccountName": values["serviceAccount"]["name"],
                    "containers": [
                        {
                            "name": "zenml",
                            "image": f"{values['zenml']['image']['repository']}:{values['zenml']['image']['tag']}",
                            "env": [{"name": k, "value": v} for k, v in environment.items()],
                        }
                    ],
                },
            },
        },
    }
    kubernetes_validate.validate(rendered, kubernetes_validate.latest_version(), strict=True)
    assert values["serviceAccount"]["name"] == find("ServiceAccount", "zwmd")["metadata"]["name"]
    assert environment["ZWMD_API_SOCKET"] == env(container("zwmd"))["ZWMD_API_SOCKET"]


def test_sidecar_shares_the_socket_and_probes_a_tcp_port() -> None:
    server, zwmd = container("zenml"), container("zwmd")
    server_env, zwmd_env = env(server), env(zwmd)
    assert server_env["ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE"] == (
        "zwmd.zenml.WorkloadManager"
    )
    socket_path = server_env["ZWMD_API_SOCKET"]
    assert zwmd_env["ZWMD_API_SOCKET"] == socket_path
    socket_dir = str(Path(socket_path).parent)
    spec = find("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in (server, zwmd):
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == socket_dir]
        assert "emptyDir" in volumes[mount["name"]]

    ports = {p["name"]: p["containerPort"] for p in zwmd["ports"]}
    assert str(ports["zwmd-metrics"]) == zwmd_env["ZWMD_METRICS_PORT"]
    assert zwmd["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "zwmd-metrics"}
    assert zwmd["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "zwmd-metrics"}


def test_only_zwmd_holds_the_kubernetes_token() -> None:
    spec = find("Deployment")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "zwmd"
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert any(m["mountPath"] == token_dir for m in container("zwmd")["volumeMounts"])
    assert not any(m["mountPath"] == token_dir for m in container("zenml")["volumeMounts"])


def test_rbac_matches_the_deployment_and_the_namespace() -> None:
    runner_namespace = find("Namespace")["metadata"]["name"]
    zwmd_env = env(container("zwmd"))
    assert zwmd_env["ZENML_KUBERNETES_WORKLOAD_MANAGER_NAMESPACE"] == runner_namespace
    runner_sa = find(
        "ServiceAccount", zwmd_env["ZENML_KUBERNETES_WORKLOAD_MANAGER_SERVICE_ACCOUNT"]
    )
    assert runner_sa["metadata"]["namespace"] == runner_namespace

    role, binding = find("Role"), find("RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == runner_namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    zwmd_sa = find("ServiceAccount", "zwmd")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "zwmd", "namespace": zwmd_sa["metadata"]["namespace"]}
    ]
    assert find("Deployment")["metadata"]["namespace"] == zwmd_sa["metadata"]["namespace"]


def test_role_grants_what_doctor_checks() -> None:
    """The Role is doctor's table (which tests/images/test_permissions_used.py holds to
    what zwmd calls), and nothing is cluster-wide."""
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in find("Role")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {(group, resource): sorted(verbs) for group, resource, verbs in PERMISSIONS}
    assert not any(kind in ("ClusterRole", "ClusterRoleBinding") for kind in all_kinds())


def test_docs_table_lists_what_the_role_grants() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    rows = re.findall(r"^\| `([a-z/]+)`(?: \(([a-z.]+)\))? \| ([a-z, ]+) \|", text, re.M)
    documented = {(group, resource): sorted(verbs.split(", ")) for resource, group, verbs in rows}
    assert documented == {
        (group, resource): sorted(verbs) for group, resource, verbs in PERMISSIONS
    }


def all_kinds() -> list[str]:
    return [d["kind"] for path in MANIFESTS for d in documents(path)]


def test_no_registry_host_in_images() -> None:
    """Images are placeholders: no registry host (a first path part with a dot or port)."""
    texts = [p.read_text() for p in [*MANIFESTS, HELM_VALUES]]
    for text in texts:
        for image in re.findall(r"^\s*(?:image|repository):\s*(\S+)", text, re.MULTILINE):
            first = image.split("/")[0]
            assert "/" not in image or not re.search(r"[.:]", first), image
