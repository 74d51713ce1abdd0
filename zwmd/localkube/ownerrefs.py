"""The OwnerReferencesPermissionEnforcement admission plugin: who may set ownerReferences.

Design notes (modelled on upstream's ``plugin/pkg/admission/gc``, written anew):

* Off by default, as in kube-apiserver's default plugin list (OpenShift turns it on);
  ``LocalKube(owner_references_enforcement=True)`` or ``--owner-references-enforcement``
  turns it on. It runs on creates and updates of every resource (status writes included)
  whose ``metadata.ownerReferences`` change; an unchanged list costs nothing.
* A requester who changes the list must be allowed to ``delete`` the object itself
  (owning an object is a way of deleting it). For every reference that newly has
  ``blockOwnerDeletion: true`` (added, or changed to true), the requester must be allowed
  to ``update`` the owner's ``finalizers`` subresource, the owner's resource found from
  its ``apiVersion``/``kind`` among the resources localkube serves (the owner's
  namespace is the object's, none for a cluster-scoped kind). A kind localkube does not
  serve is refused, as upstream refuses one its REST mapper cannot find.
* Refusals are 403 Forbidden worded as upstream's: ``<resource> "<name>" is forbidden:
  cannot set an ownerRef on a resource you can't delete: <reason>, <nil>`` and ``...
  cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set
  finalizers on: <reason>, <nil>`` (upstream formats the authorizer's reason and its
  error, nil for RBAC's plain denial).
* Decisions come from localkube's RBAC :class:`~zwmd.localkube.rbac.Authorizer`, so
  ``system:masters`` (the admin kubeconfig) passes as upstream. localkube's own
  controllers (the Job controller sets ``blockOwnerDeletion`` on the pods it creates)
  write to the store directly, not over HTTP, so they are never asked: upstream's
  controller roles grant them these verbs (``jobs/finalizers`` update for the Job
  controller), and the outcome is the same.
"""

from __future__ import annotations

from typing import Any

from zwmd.localkube.errors import ApiError, qualified
from zwmd.localkube.rbac import Attributes, Authorizer, User
from zwmd.localkube.resources import RESOURCES

__all__ = ["OwnerReferencesEnforcement"]

JsonDict = dict[str, Any]


def _references(obj: JsonDict | None) -> list[JsonDict]:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return [r for r in refs if isinstance(r, dict)]


def _newly_blocking(old: JsonDict | None, new: JsonDict) -> list[JsonDict]:
    """References of ``new`` that block owner deletion and did not in ``old``."""
    blocking_before = {r.get("uid") for r in _references(old) if r.get("blockOwnerDeletion")}
    return [
        ref
        for ref in _references(new)
        if ref.get("blockOwnerDeletion") and ref.get("uid") not in blocking_before
    ]


def _owner_resource(ref: JsonDict) -> str | None:
    for resource, kind in RESOURCES.items():
        if kind.api_version == ref.get("apiVersion") and kind.kind == ref.get("kind"):
            return resource
    return None


class OwnerReferencesEnforcement:
    """Decides, for one requester, whether a write may set the ownerReferences it sets."""

    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    def check(
        self, user: User, resource: str, namespace: str | None, old: JsonDict | None, new: JsonDict
    ) -> None:
        """Raise 403 when ``user`` may not change ``old``'s references into ``new``'s."""
        if _references(old) == _references(new):
            return
        name = str(new["metadata"].get("name", ""))
        own = Attributes(
            user,
            "delete",
            resource,
            RESOURCES[resource].group,
            namespace=namespace or "",
            name=name,
        )
        decision = self._authorizer.authorize(own)
        if not decision.allowed:
            raise self._forbidden(
                resource,
                name,
                f"cannot set an ownerRef on a resource you can't delete: {decision.reason}, <nil>",
            )
        for ref in _newly_blocking(old, new):
            owner = _owner_resource(ref)
            if owner is None:
                raise self._forbidden(
                    resource,
                    name,
                    "cannot set blockOwnerDeletion in this case because cannot find RESTMapping "
                    f"for APIVersion {ref.get('apiVersion')} Kind {ref.get('kind')}: "
                    f'no matches for kind "{ref.get("kind")}" in version "{ref.get("apiVersion")}"',
                )
            finalizers = Attributes(
                user,
                "update",
                owner,
                RESOURCES[owner].group,
                subresource="finalizers",
                namespace=(namespace or "") if RESOURCES[owner].namespaced else "",
                name=str(ref.get("name", "")),
            )
            decision = self._authorizer.authorize(finalizers)
            if not decision.allowed:
                raise self._forbidden(
                    resource,
                    name,
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource "
                    f"you can't set finalizers on: {decision.reason}, <nil>",
                )

    @staticmethod
    def _forbidden(resource: str, name: str, why: str) -> ApiError:
        return ApiError(
            403,
            "Forbidden",
            f'{qualified(resource)} "{name}" is forbidden: {why}',
            name=name,
            resource=resource,
        )
