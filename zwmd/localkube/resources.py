"""The resources localkube serves: plural name → kind, group version, scope, subresources.

Design notes: one table, :data:`RESOURCES`, read by the router, the store, discovery,
errors (the qualified name ``jobs.batch``) and admission, so a resource added here is
routed, stored, discoverable and named in errors as a real apiserver names it. The RBAC
kinds are served so that a cluster administrator (or a test) can write the policy the
authorizer (:mod:`zwmd.localkube.rbac`) reads.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RBAC_GROUP", "RESOURCES", "ResourceType", "group_of"]

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class ResourceType:
    kind: str
    api_version: str
    namespaced: bool = True
    status_subresource: bool = False
    generation: bool = False

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


RESOURCES: dict[str, ResourceType] = {
    "jobs": ResourceType("Job", "batch/v1", status_subresource=True, generation=True),
    "pods": ResourceType("Pod", "v1", status_subresource=True, generation=True),
    "secrets": ResourceType("Secret", "v1"),
    "configmaps": ResourceType("ConfigMap", "v1"),
    "serviceaccounts": ResourceType("ServiceAccount", "v1"),
    "events": ResourceType("Event", "v1"),
    "namespaces": ResourceType("Namespace", "v1", namespaced=False, status_subresource=True),
    "leases": ResourceType("Lease", "coordination.k8s.io/v1"),
    "roles": ResourceType("Role", f"{RBAC_GROUP}/v1"),
    "rolebindings": ResourceType("RoleBinding", f"{RBAC_GROUP}/v1"),
    "clusterroles": ResourceType("ClusterRole", f"{RBAC_GROUP}/v1", namespaced=False),
    "clusterrolebindings": ResourceType("ClusterRoleBinding", f"{RBAC_GROUP}/v1", namespaced=False),
}


def group_of(resource: str) -> str:
    """The API group of ``resource`` (``""`` for the core group and for unknown names)."""
    kind = RESOURCES.get(resource)
    return kind.group if kind else ""
