"""RBAC: every request is authenticated and authorized from the stored Roles and bindings.

What a cluster administrator checks: a service account can do nothing until a Role is
bound to it, then exactly what the Role says (subresources are resources of their own);
the 403 names the user, verb, resource and namespace as the apiserver words it; access
reviews answer from the same rules; tokens die with their service account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient

from tests.localkube.conftest import api_error, status_of
from zwmd.localkube import ADMIN_HEADERS, LocalKube

pytestmark = pytest.mark.anyio

NS = "team"
SA = f"system:serviceaccount:{NS}:robot"
RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(kubelet=None, job_controller=False, unauthenticated="anonymous") as k:
        k.store.create("namespaces", None, {"metadata": {"name": NS}})
        k.store.create("serviceaccounts", NS, {"metadata": {"name": "robot"}})
        yield k


async def robot(kube: LocalKube, tmp_path: Path) -> ApiClient:
    path = kube.service_account_kubeconfig(tmp_path / "robot", NS, "robot")
    return await config.new_client_from_config(config_file=str(path))


def grant(kube: LocalKube, rules: list[dict[str, Any]], *, kind: str = "Role") -> None:
    """Bind ``rules`` (a Role, or a ClusterRole bound in the namespace) to the robot."""
    if kind == "Role":
        kube.store.create("roles", NS, {"metadata": {"name": "robot"}, "rules": rules})
    else:
        kube.store.create("clusterroles", None, {"metadata": {"name": "robot"}, "rules": rules})
    binding = {
        "metadata": {"name": "robot"},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": "robot"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
    }
    kube.store.create("rolebindings", NS, binding)


async def test_a_service_account_may_do_nothing_until_a_role_is_bound(
    kube: LocalKube, tmp_path: Path
) -> None:
    api = await robot(kube, tmp_path)
    async with api:
        batch = client.BatchV1Api(api)
        error = await api_error(batch.list_namespaced_job(NS))
        assert error.status == 403
        body = status_of(error)
        assert body["reason"] == "Forbidden"
        assert body["message"] == (
            f'jobs.batch is forbidden: User "{SA}" cannot list resource "jobs" in API group '
            f'"batch" in the namespace "{NS}"'
        )
        assert body["details"] == {"group": "batch", "kind": "jobs"}

        grant(kube, [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}])
        assert (await batch.list_namespaced_job(NS)).items == []
        # only the namespace of the binding, and only the verbs of the Role
        assert (await api_error(batch.list_namespaced_job("default"))).status == 403
        error = await api_error(batch.read_namespaced_job("x", NS))
        assert status_of(error)["message"].startswith('jobs.batch "x" is forbidden: ')


async def test_a_subresource_is_granted_apart_from_its_resource(
    kube: LocalKube, tmp_path: Path
) -> None:
    # the seeds' Role names "pods/logs": no such subresource exists, so logs stay refused
    grant(kube, [{"apiGroups": [""], "resources": ["pods", "pods/logs"], "verbs": ["get"]}])
    kube.store.create(
        "pods",
        NS,
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    api = await robot(kube, tmp_path)
    async with api:
        core = client.CoreV1Api(api)
        assert (await core.read_namespaced_pod("p", NS)).metadata.name == "p"
        error = await api_error(core.read_namespaced_pod_log("p", NS))
        assert status_of(error)["message"] == (
            f'pods "p" is forbidden: User "{SA}" cannot get resource "pods/log" in API group "" '
            f'in the namespace "{NS}"'
        )


async def test_a_cluster_role_bound_in_a_namespace_and_wildcards(
    kube: LocalKube, tmp_path: Path
) -> None:
    grant(
        kube,
        [{"apiGroups": ["*"], "resources": ["*/log", "configmaps"], "verbs": ["*"]}],
        kind="ClusterRole",
    )
    api = await robot(kube, tmp_path)
    async with api:
        core = client.CoreV1Api(api)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
        await core.create_namespaced_config_map(NS, body)
        await core.delete_namespaced_config_map("c", NS)
        assert (await api_error(core.list_namespaced_config_map("default"))).status == 403
        assert (await api_error(core.list_namespaced_secret(NS))).status == 403


async def test_access_reviews_answer_from_the_rules(kube: LocalKube, tmp_path: Path) -> None:
    grant(kube, [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}])
    api = await robot(kube, tmp_path)

    async def review(verb: str, resource: str, namespace: str = NS) -> Any:
        attributes = client.V1ResourceAttributes(
            verb=verb, resource=resource, group="batch", namespace=namespace
        )
        spec = client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        body = client.V1SelfSubjectAccessReview(spec=spec)
        return (await authz.create_self_subject_access_review(body)).status

    async with api:
        authz = client.AuthorizationV1Api(api)
        allowed = await review("create", "jobs")
        assert allowed.allowed is True
        assert allowed.reason == (
            f'RBAC: allowed by RoleBinding "robot/{NS}" of Role "robot" to '
            f'ServiceAccount "robot/{NS}"'
        )
        assert (await review("delete", "jobs")).allowed is False
        assert (await review("create", "jobs", "default")).allowed is False


async def test_tokens_are_checked_and_die_with_their_service_account(
    kube: LocalKube, tmp_path: Path
) -> None:
    grant(kube, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}])
    async with httpx.AsyncClient(base_url=kube.url) as http:
        # no credentials: the anonymous user, who may read the version and nothing else
        assert (await http.get("/version")).status_code == 200
        anonymous = await http.get(f"/api/v1/namespaces/{NS}/secrets")
        assert anonymous.status_code == 403
        assert 'User "system:anonymous"' in anonymous.json()["message"]
        bad = await http.get("/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
        assert (bad.status_code, bad.json()["reason"]) == (401, "Unauthorized")

        # the TokenRequest API, as ``kubectl create token robot`` calls it
        minted = await http.post(
            f"/api/v1/namespaces/{NS}/serviceaccounts/robot/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
            headers=ADMIN_HEADERS,
        )
        assert minted.status_code == 201, minted.text
        token = {"Authorization": f"Bearer {minted.json()['status']['token']}"}
        assert (await http.get(f"/api/v1/namespaces/{NS}/secrets", headers=token)).is_success

        kube.store.delete("serviceaccounts", NS, "robot", "Background", None)
        kube.store.create("serviceaccounts", NS, {"metadata": {"name": "robot"}})
        stale = await http.get(f"/api/v1/namespaces/{NS}/secrets", headers=token)
        assert stale.status_code == 401  # bound to the deleted account's uid


async def test_a_binding_cannot_change_its_role(kube: LocalKube, tmp_path: Path) -> None:
    grant(kube, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}])
    async with await config.new_client_from_config(
        config_file=str(kube.write_kubeconfig(tmp_path / "admin"))
    ) as admin:
        rbac = client.RbacAuthorizationV1Api(admin)
        binding = await rbac.read_namespaced_role_binding("robot", NS)
        binding.role_ref.name = "other"
        error = await api_error(rbac.replace_namespaced_role_binding("robot", NS, binding))
        assert error.status == 422
        assert "cannot change roleRef" in status_of(error)["message"]
        no_verbs = client.V1Role(
            metadata=client.V1ObjectMeta(name="empty"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=[])],
        )
        assert (await api_error(rbac.create_namespaced_role(NS, no_verbs))).status == 422
