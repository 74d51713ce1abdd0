"""What an API path names: the resource, namespace, name and subresource, and the verb.

Design notes:

* :func:`parse_path` splits ``/api/v1/...`` and ``/apis/{group}/{version}/...``;
  :func:`route_for` resolves the rest against the served resources
  (:data:`~zwmd.localkube.resources.RESOURCES`), or says that nothing is served there.
* :func:`attributes` describes any request as the apiserver's request-info resolver
  does, for the authorizer: a path under a group version with a resource is a resource
  request (even when localkube serves no such resource, so that a denial comes before
  a 404, as upstream); anything else (``/version``, ``/apis``, ``/api/v1``) is a
  non-resource request on its path, with the lowercase HTTP method as its verb.
* Verbs are RBAC's: ``list`` and ``watch`` for collections (``watch=true``),
  ``deletecollection`` for a DELETE on one.
"""

from __future__ import annotations

from typing import Any

from zwmd.localkube.rbac import Attributes, User
from zwmd.localkube.resources import RESOURCES
from zwmd.localkube.streaming import query_bool

__all__ = ["Route", "attributes", "parse_path", "route_for"]

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def verb_of(method: str, query: Any, *, collection: bool) -> str:
    if method == "GET":
        if collection:
            return "watch" if query_bool(query, "watch") else "list"
        return "get"
    if method == "DELETE" and collection:
        return "deletecollection"
    return _METHOD_VERBS.get(method, method.lower())


class Route:
    """A parsed API path."""

    def __init__(
        self, resource: str, namespace: str | None, name: str | None, sub: str | None
    ) -> None:
        self.resource, self.namespace, self.name, self.subresource = resource, namespace, name, sub

    def verb(self, method: str, query: Any) -> str:
        return verb_of(method, query, collection=self.name is None)


def parse_path(path: str) -> tuple[str, list[str]] | None:
    """Split an API path into its group version and the rest (None when not an API path)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        return "v1", parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return f"{parts[1]}/{parts[2]}", parts[3:]
    return None


def route_for(group_version: str, rest: list[str]) -> Route | None:
    def served(resource: str) -> bool:
        kind = RESOURCES.get(resource)
        return kind is not None and kind.api_version == group_version

    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and served(rest[2])
        and RESOURCES[rest[2]].namespaced
    ):
        if len(rest) > 5:
            return None
        return Route(
            rest[2], rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None
        )
    if 1 <= len(rest) <= 3 and served(rest[0]):
        if len(rest) > 1 and RESOURCES[rest[0]].namespaced:
            return None
        return Route(
            rest[0], None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        )
    return None


def attributes(user: User, method: str, path: str, query: Any) -> Attributes:
    """The authorizer's view of a request by ``user``."""
    parsed = parse_path(path)
    if parsed is None or not parsed[1]:
        return Attributes(user, method.lower(), path=path)
    group_version, rest = parsed
    group = group_version.rpartition("/")[0]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        namespace = rest[1]  # a namespace object is in its own namespace, as upstream has it
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = "/".join(rest[2:])
    return Attributes(
        user,
        verb_of(method, query, collection=not name),
        resource=resource,
        group=group,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )
