"""OwnerReferencesPermissionEnforcement: who may set ownerReferences, over HTTP.

A service account with a Role of its own writes ConfigMaps owned by a Job; what it sees
is the status code and the apiserver's message. The plugin is off unless asked for, as
in kube-apiserver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

NS = "team"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
RBAC = "rbac.authorization.k8s.io"
WRITE = ["create", "get", "update", "patch"]


def start(*, enforce: bool) -> LocalKube:
    return LocalKube(
        kubelet=None,
        job_controller=False,
        unauthenticated="anonymous",
        owner_references_enforcement=enforce,
    )


def setup(kube: LocalKube, rules: list[dict[str, Any]]) -> tuple[httpx.AsyncClient, Any]:
    """The robot's client under ``rules``, and the Job that owns what it writes."""
    kube.store.create("namespaces", None, {"metadata": {"name": NS}})
    kube.store.create("serviceaccounts", NS, {"metadata": {"name": "robot"}})
    kube.store.create("roles", NS, {"metadata": {"name": "robot"}, "rules": rules})
    binding = {
        "metadata": {"name": "robot"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "robot"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
    }
    kube.store.create("rolebindings", NS, binding)
    job = kube.store.create(
        "jobs",
        NS,
        {
            "metadata": {"name": "owner"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            },
        },
    )
    token = kube.authenticator.mint(NS, "robot")["token"]
    http = httpx.AsyncClient(base_url=kube.url, headers={"Authorization": f"Bearer {token}"})
    return http, job


def owned(name: str, job: Any, *, block: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "controller": True,
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [ref]}, "data": {"k": "v"}}


def configmap_rule(verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}


FINALIZERS = {"apiGroups": ["batch"], "resources": ["jobs/finalizers"], "verbs": ["update"]}


@pytest.fixture
async def enforcing() -> AsyncIterator[LocalKube]:
    async with start(enforce=True) as kube:
        yield kube


async def test_an_owner_reference_needs_delete_on_the_object(enforcing: LocalKube) -> None:
    http, job = setup(enforcing, [configmap_rule(WRITE)])
    async with http:
        response = await http.post(CONFIGMAPS, json=owned("cm", job))
        assert response.status_code == 403
        body = response.json()
        assert body["reason"] == "Forbidden"
        assert body["message"] == (
            'configmaps "cm" is forbidden: cannot set an ownerRef on a resource you '
            "can't delete: , <nil>"
        )
        # without an owner the same Role may create it
        plain = {"metadata": {"name": "cm"}, "data": {"k": "v"}}
        assert (await http.post(CONFIGMAPS, json=plain)).status_code == 201
        # and adding the reference later is refused as well
        patch = {"metadata": {"ownerReferences": owned("cm", job)["metadata"]["ownerReferences"]}}
        response = await http.patch(
            f"{CONFIGMAPS}/cm",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 403
        assert "cannot set an ownerRef on a resource you can't delete" in response.json()["message"]


async def test_with_delete_an_owner_reference_is_admitted(enforcing: LocalKube) -> None:
    http, job = setup(enforcing, [configmap_rule([*WRITE, "delete"])])
    async with http:
        response = await http.post(CONFIGMAPS, json=owned("cm", job))
        assert response.status_code == 201
        assert response.json()["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
        # an update that leaves the references alone is not asked again
        updated = {**response.json(), "data": {"k": "w"}}
        assert (await http.put(f"{CONFIGMAPS}/cm", json=updated)).status_code == 200


async def test_block_owner_deletion_needs_update_on_the_owner_s_finalizers(
    enforcing: LocalKube,
) -> None:
    http, job = setup(enforcing, [configmap_rule([*WRITE, "delete"])])
    async with http:
        response = await http.post(CONFIGMAPS, json=owned("cm", job, block=True))
        assert response.status_code == 403
        assert response.json()["message"] == (
            'configmaps "cm" is forbidden: cannot set blockOwnerDeletion if an ownerReference '
            "refers to a resource you can't set finalizers on: , <nil>"
        )


async def test_with_finalizers_block_owner_deletion_is_admitted(enforcing: LocalKube) -> None:
    http, job = setup(enforcing, [configmap_rule([*WRITE, "delete"]), FINALIZERS])
    async with http:
        response = await http.post(CONFIGMAPS, json=owned("cm", job, block=True))
        assert response.status_code == 201


async def test_an_owner_kind_the_server_does_not_serve_cannot_block(
    enforcing: LocalKube,
) -> None:
    http, job = setup(enforcing, [configmap_rule([*WRITE, "delete"]), FINALIZERS])
    body = owned("cm", job, block=True)
    body["metadata"]["ownerReferences"][0].update(apiVersion="apps/v1", kind="Deployment")
    async with http:
        response = await http.post(CONFIGMAPS, json=body)
        assert response.status_code == 403
        assert response.json()["message"] == (
            'configmaps "cm" is forbidden: cannot set blockOwnerDeletion in this case because '
            "cannot find RESTMapping for APIVersion apps/v1 Kind Deployment: "
            'no matches for kind "Deployment" in version "apps/v1"'
        )


async def test_the_plugin_is_off_by_default() -> None:
    async with start(enforce=False) as kube:
        http, job = setup(kube, [configmap_rule(WRITE)])
        async with http:
            response = await http.post(CONFIGMAPS, json=owned("cm", job, block=True))
            assert response.status_code == 201
