"""Discovery documents: ``/api``, ``/apis`` and the per-version resource lists.

Design notes: built once from the resource table in :mod:`zwmd.localkube.admission`, so a
resource added there is discoverable. ``/version`` is the release's own
(:meth:`zwmd.localkube.versions.KubernetesVersion.version_info`). The legacy (non-aggregated) discovery format is
served; kubectl falls back to it when the aggregated format is not offered.
"""

from __future__ import annotations

from typing import Any

from zwmd.localkube.resources import RESOURCES

JsonDict = dict[str, Any]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_SHORT_NAMES = {
    "pods": ["po"],
    "configmaps": ["cm"],
    "serviceaccounts": ["sa"],
    "events": ["ev"],
    "namespaces": ["ns"],
}
EXTRA_GROUPS = {
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview")]
}


def core_versions(address: str) -> JsonDict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def group_versions() -> list[str]:
    found = {t.api_version for t in RESOURCES.values() if "/" in t.api_version}
    return sorted(found | set(EXTRA_GROUPS))


def _group(group_version: str) -> JsonDict:
    group, version_name = group_version.split("/")
    entry = {"groupVersion": group_version, "version": version_name}
    return {"name": group, "versions": [entry], "preferredVersion": entry}


def group_list() -> JsonDict:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(gv) for gv in group_versions()],
    }


def group(name: str) -> JsonDict | None:
    for group_version in group_versions():
        if group_version.split("/")[0] == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(group_version)}
    return None


def resource_list(group_version: str) -> JsonDict | None:
    resources: list[JsonDict] = []
    for plural, kind in RESOURCES.items():
        if kind.api_version != group_version:
            continue
        resources.append(
            {
                "name": plural,
                "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ALL_VERBS,
                "shortNames": _SHORT_NAMES.get(plural, []),
            }
        )
        if kind.status_subresource:
            resources.append(
                {
                    "name": f"{plural}/status",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": kind.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if plural == "pods":
            resources.append(
                {
                    "name": "pods/log",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Pod",
                    "verbs": ["get"],
                }
            )
    for plural, kind_name in EXTRA_GROUPS.get(group_version, []):
        resources.append(
            {
                "name": plural,
                "singularName": "",
                "namespaced": False,
                "kind": kind_name,
                "verbs": ["create"],
            }
        )
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
