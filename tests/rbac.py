"""zwmd's identity in a test namespace: the shipped Role, bound to a ``zwmd`` service account.

Daemons and ``zwmd doctor`` under test act as that service account, with a token of its
own, under the rules of ``contrib/kubernetes/rbac.yaml`` (or rules a test gives, to see
what a narrower Role does). Nothing grants more than an operator who applied the
shipped manifests would have.

PyYAML ships no type information; it is imported as a module of type Any.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

from zwmd.localkube import ApiError, LocalKube

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "contrib" / "kubernetes" / "rbac.yaml"
ACCOUNT = "zwmd"
RBAC_GROUP = "rbac.authorization.k8s.io"

yaml: Any = importlib.import_module("yaml")
#: The labels of the shipped namespace manifest, so every test namespace runs under its
#: PodSecurity levels (enforce baseline, warn restricted), as a real install does.
NAMESPACE_LABELS: dict[str, str] = yaml.safe_load(
    (ROOT / "contrib" / "kubernetes" / "namespace.yaml").read_text()
)["metadata"]["labels"]

Rules = list[dict[str, Any]]


@cache
def _shipped_role() -> dict[str, Any]:
    (role,) = [d for d in yaml.safe_load_all(SHIPPED.read_text()) if d and d["kind"] == "Role"]
    return dict(role)


def shipped_rules() -> Rules:
    """The rules of the shipped Role (a fresh copy)."""
    return [dict(rule) for rule in _shipped_role()["rules"]]


def without(rules: Rules, resource: str, *verbs: str) -> Rules:
    """``rules`` with ``verbs`` on ``resource`` taken away."""
    narrowed = []
    for rule in rules:
        if resource in rule.get("resources", ()):
            kept = [v for v in rule["verbs"] if v not in verbs]
            others = [r for r in rule["resources"] if r != resource]
            if others:
                narrowed.append({**rule, "resources": others})
            if kept:
                narrowed.append({**rule, "resources": [resource], "verbs": kept})
        else:
            narrowed.append(rule)
    return narrowed


def _create(kube: LocalKube, resource: str, namespace: str, obj: dict[str, Any]) -> None:
    try:
        kube.store.create(resource, namespace, obj)
    except ApiError as error:
        if error.code != 409:
            raise
        kube.store.replace(resource, namespace, obj["metadata"]["name"], obj)


def zwmd_objects(namespace: str, rules: Rules | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(resource, object): the ``zwmd`` service account of ``namespace``, a Role with
    ``rules`` (the shipped Role's by default) and the binding of one to the other."""
    role = {"metadata": {"name": ACCOUNT}, "rules": shipped_rules() if rules is None else rules}
    binding = {
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
    }
    return [
        ("serviceaccounts", {"metadata": {"name": ACCOUNT}}),
        ("roles", role),
        ("rolebindings", binding),
    ]


def bind_zwmd(kube: LocalKube, namespace: str, rules: Rules | None = None) -> None:
    """:func:`zwmd_objects`, written to ``kube``'s store."""
    for resource, obj in zwmd_objects(namespace, rules):
        _create(kube, resource, namespace, obj)


def zwmd_kubeconfig(
    kube: LocalKube, namespace: str, path: Path, rules: Rules | None = None
) -> Path:
    """A kubeconfig acting as ``zwmd`` in ``namespace``, bound as :func:`bind_zwmd` does."""
    bind_zwmd(kube, namespace, rules)
    return kube.service_account_kubeconfig(path, namespace, ACCOUNT)
