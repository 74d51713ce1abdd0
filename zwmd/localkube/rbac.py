"""RBAC authorization as the apiserver's RBAC authorizer decides it, from the stored policy.

Design notes:

* A request is described by :class:`Attributes`: who (a :class:`User`), the verb as RBAC
  names it, and either an API group, resource, subresource, namespace and name, or a
  non-resource path (``/version``, ``/apis``).
* :meth:`Authorizer.authorize` visits the rules that apply to the user as upstream's rule
  resolver does: every ClusterRoleBinding's role, then, for a namespaced request, every
  RoleBinding of that namespace (its ``roleRef`` a Role of that namespace or a
  ClusterRole). The first rule that matches allows, and the reason names its source
  (``RBAC: allowed by RoleBinding "zwmd/ns" of Role "zwmd" to ServiceAccount "zwmd/ns"``).
  A binding whose role does not exist is skipped, and that is told in the denial's reason.
* Rule matching follows ``rbac/v1`` evaluation: ``*`` in verbs, groups and resources;
  ``pods/log`` as the combined resource, ``*/log`` for any resource's subresource;
  ``resourceNames`` only narrow; non-resource URLs match exactly or by a trailing ``*``.
* Nothing is built in: the bootstrap policy (:data:`BOOTSTRAP_POLICY`) is written to the
  store as the apiserver reconciles its default roles at start, so ``system:masters``
  holds ``cluster-admin`` by a binding any client can read, and every authenticated
  identity may read discovery and create SelfSubjectAccessReviews.
* :func:`forbidden` is the 403 a denied request gets, worded as upstream's
  ``responsewriters.Forbidden``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from zwmd.localkube.errors import ApiError, JsonDict, qualified
from zwmd.localkube.resources import RBAC_GROUP

__all__ = ["BOOTSTRAP_POLICY", "Attributes", "Authorizer", "User", "forbidden"]

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class User:
    """An authenticated (or anonymous) identity."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @classmethod
    def service_account(cls, namespace: str, name: str, uid: str = "") -> User:
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
        return cls(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", groups, uid)


ANONYMOUS = User("system:anonymous", (UNAUTHENTICATED,))


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, in RBAC's terms."""

    user: User
    verb: str
    resource: str = ""  # empty: a non-resource request on ``path``
    group: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _any(values: Any, wanted: str, wildcard: str = "*") -> bool:
    return any(value in (wildcard, wanted) for value in values or ())


def _resource_matches(rule: JsonDict, combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or ():
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _url_matches(rule: JsonDict, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url in ("*", path) or (url.endswith("*") and path.startswith(url.rstrip("*"))):
            return True
    return False


def rule_allows(rule: JsonDict, attributes: Attributes) -> bool:
    """Whether one PolicyRule allows ``attributes``."""
    if not _any(rule.get("verbs"), attributes.verb):
        return False
    if not attributes.is_resource_request:
        return _url_matches(rule, attributes.path)
    combined = attributes.resource
    if attributes.subresource:
        combined = f"{combined}/{attributes.subresource}"
    names = rule.get("resourceNames") or ()
    return (
        _any(rule.get("apiGroups"), attributes.group)
        and _resource_matches(rule, combined, attributes.subresource)
        and (not names or attributes.name in names)
    )


def _subject_applies(subject: JsonDict, user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    return False


def _describe(subject: JsonDict, binding_namespace: str) -> str:
    name = subject.get("name", "")
    if subject.get("kind") == "ServiceAccount":
        name = f"{name}/{subject.get('namespace') or binding_namespace}"
    return f'{subject.get("kind")} "{name}"'


@dataclass
class _Visit:
    attributes: Attributes
    errors: list[str] = field(default_factory=list)


class Authorizer:
    """Decides requests from the Roles, ClusterRoles and their bindings in ``store``."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _role_rules(self, kind: str, name: str, namespace: str) -> list[JsonDict] | None:
        resource = "clusterroles" if kind == "ClusterRole" else "roles"
        try:
            role = self.store.get(resource, None if kind == "ClusterRole" else namespace, name)
        except ApiError:
            return None
        rules: list[JsonDict] = role.get("rules") or []
        return rules

    def _bindings(self, namespace: str) -> Iterator[tuple[str, JsonDict]]:
        for binding in self.store.list("clusterrolebindings", None)[0]:
            yield "", binding
        if namespace:
            for binding in self.store.list("rolebindings", namespace)[0]:
                yield namespace, binding

    def authorize(self, attributes: Attributes) -> Decision:
        visit = _Visit(attributes)
        for namespace, binding in self._bindings(attributes.namespace):
            subjects = [
                s
                for s in binding.get("subjects") or ()
                if _subject_applies(s, attributes.user, namespace)
            ]
            if not subjects:
                continue
            ref = binding.get("roleRef") or {}
            kind, role_name = str(ref.get("kind", "")), str(ref.get("name", ""))
            rules = self._role_rules(kind, role_name, namespace)
            if rules is None:
                resource = "clusterroles" if kind == "ClusterRole" else "roles"
                visit.errors.append(f'{resource}.{RBAC_GROUP} "{role_name}" not found')
                continue
            if any(rule_allows(rule, attributes) for rule in rules):
                name = binding["metadata"]["name"]
                binding_kind = "RoleBinding" if namespace else "ClusterRoleBinding"
                if namespace:
                    name = f"{name}/{namespace}"
                source = (
                    f'{binding_kind} "{name}" of {kind} "{role_name}" to '
                    f"{_describe(subjects[0], namespace)}"
                )
                return Decision(True, f"RBAC: allowed by {source}")
        reason = f"RBAC: [{', '.join(visit.errors)}]" if visit.errors else ""
        return Decision(False, reason)


def forbidden(attributes: Attributes, reason: str = "") -> ApiError:
    """The 403 of a denied request, as the apiserver words it."""
    user = attributes.user.name
    if not attributes.is_resource_request:
        message = f'forbidden: User "{user}" cannot {attributes.verb} path "{attributes.path}"'
        return ApiError(403, "Forbidden", message + (f": {reason}" if reason else ""))
    resource = attributes.resource
    if attributes.subresource:
        resource = f"{resource}/{attributes.subresource}"
    scope = (
        f'in the namespace "{attributes.namespace}"'
        if attributes.namespace
        else "at the cluster scope"
    )
    detail = (
        f'User "{user}" cannot {attributes.verb} resource "{resource}" in API group '
        f'"{attributes.group}" {scope}'
    )
    if reason:
        detail = f"{detail}: {reason}"
    target = qualified(attributes.resource)
    if attributes.name:
        target = f'{target} "{attributes.name}"'
    return ApiError(
        403,
        "Forbidden",
        f"{target} is forbidden: {detail}",
        name=attributes.name or None,
        resource=attributes.resource,
    )


def _cluster_role(name: str, rules: list[JsonDict]) -> tuple[str, JsonDict]:
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return "clusterroles", {"metadata": {"name": name, "labels": labels}, "rules": rules}


def _cluster_binding(role: str, *groups: str) -> tuple[str, JsonDict]:
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return "clusterrolebindings", {
        "metadata": {"name": role, "labels": labels},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


_PUBLIC_INFO = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
#: The default roles and bindings every cluster starts with (upstream's bootstrap policy,
#: the part localkube serves): (resource, object), cluster-scoped.
BOOTSTRAP_POLICY: tuple[tuple[str, JsonDict], ...] = (
    _cluster_role(
        "cluster-admin",
        [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    ),
    _cluster_binding("cluster-admin", MASTERS),
    _cluster_role(
        "system:discovery",
        [
            {
                "nonResourceURLs": [
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/openapi",
                    "/openapi/*",
                    *_PUBLIC_INFO,
                ],
                "verbs": ["get"],
            }
        ],
    ),
    _cluster_binding("system:discovery", AUTHENTICATED),
    _cluster_role(
        "system:basic-user",
        [
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            }
        ],
    ),
    _cluster_binding("system:basic-user", AUTHENTICATED),
    _cluster_role(
        "system:public-info-viewer", [{"nonResourceURLs": _PUBLIC_INFO, "verbs": ["get"]}]
    ),
    _cluster_binding("system:public-info-viewer", AUTHENTICATED, UNAUTHENTICATED),
)
