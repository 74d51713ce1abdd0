"""Deletion as the apiserver does it, for :class:`~zwmd.localkube.store.Store`.

Design notes:

* This is the apiserver's half of deletion only; dependents are the business of the
  garbage collector (:mod:`zwmd.localkube.garbagecollector`), which runs apart and
  later, as kube-controller-manager's does. Without it, dependents simply stay.
* ``Background`` removes the object at once (unless it has finalizers).
* ``Foreground`` marks the object with ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer; the collector deletes its dependents, then removes
  the finalizer, and the object goes. ``Orphan`` does the same with the ``orphan``
  finalizer, and the collector strips the object's uid from its dependents'
  ``ownerReferences`` instead. Unlike the apiserver, which adds the finalizer
  whatever, localkube adds it only when the object has dependents (an object with none
  goes at once): a bare :class:`Store` with no collector then never keeps a deleted
  object for ever, and nobody can tell the difference.
* Any object with finalizers is only marked (``deletionTimestamp``); it goes when an
  update empties its finalizers.
* Pods are deleted gracefully, as the apiserver's pod strategy does: the grace period
  is the DeleteOptions' ``gracePeriodSeconds``, else the pod's
  ``terminationGracePeriodSeconds`` (30 by default), and 0 for a pod never scheduled
  or already Succeeded/Failed. With a grace period the pod is only marked
  (``deletionTimestamp`` = now + grace, ``deletionGracePeriodSeconds``) and stays,
  Terminating, until its kubelet has stopped its containers and deletes it with grace
  0; a second DELETE may shorten the grace, never lengthen it. Grace 0 removes it at once.
* ``uid`` and ``resourceVersion`` preconditions (DeleteOptions' ``preconditions``) are
  checked first: the collector deletes with both, so it never removes an object that
  was replaced, or changed, since it looked.
* A namespace takes everything in it along, at once.

This is a base class of ``Store``: it works on the store's objects through the few
primitives declared abstract here.
"""

from __future__ import annotations

import abc
import datetime

import orjson

from zwmd.localkube import errors
from zwmd.localkube.admission import RESOURCES
from zwmd.localkube.errors import JsonDict, bad_request

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_Key = tuple[str, str]


def now(seconds_later: float = 0) -> str:
    """The current time (plus ``seconds_later``) as the apiserver writes timestamps."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds_later)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_grace(pod: JsonDict, requested: int | None) -> int:
    """The grace period of a pod's deletion (the apiserver's CheckGracefulDelete)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0  # nothing runs it (yet, or any more): nobody to wait for
    if requested is not None:
        return max(int(requested), 0)
    return int(spec.get("terminationGracePeriodSeconds", 30))


def copy_object(obj: JsonDict) -> JsonDict:
    """A deep copy of a JSON object (faster than ``copy.deepcopy``)."""
    copied: JsonDict = orjson.loads(orjson.dumps(obj))
    return copied


class Deletion(abc.ABC):
    """DELETE with propagation policies, preconditions and finalizers."""

    _objects: dict[str, dict[_Key, tuple[JsonDict, bytes]]]

    @abc.abstractmethod
    def _stored(self, resource: str, namespace: str | None, name: str) -> tuple[JsonDict, bytes]:
        """The stored object and its encoding, or 404."""

    @abc.abstractmethod
    def _key(self, resource: str, namespace: str | None, name: str) -> _Key:
        """The storage key of an object."""

    @abc.abstractmethod
    def _commit(
        self, event_type: str, resource: str, key: _Key, obj: JsonDict, old: JsonDict | None
    ) -> JsonDict:
        """Store (or drop, for DELETED) ``obj`` with a new resourceVersion and announce it."""

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        propagation: str = "Background",
        grace_period_seconds: int | None = None,
        *,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> JsonDict:
        """Delete with a propagation policy; returns the object as last stored.

        The object stays (with ``deletionTimestamp``) while finalizers remain, including
        ``foregroundDeletion`` and ``orphan`` until the garbage collector has done its part.
        """
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(f"Unsupported propagationPolicy {propagation!r}")
        current, _ = self._stored(resource, namespace, name)
        if uid and uid != current["metadata"]["uid"]:
            raise errors.conflict(resource, name)
        if resource_version and resource_version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource, name)
        key = self._key(resource, namespace, name)
        if resource == "pods":
            grace = _pod_grace(current, grace_period_seconds)
            if grace > 0:
                return self._mark_terminating(key, current, grace)
            grace_period_seconds = 0
        if resource == "namespaces":
            self._delete_namespace_contents(name)
        finalizers = list(current["metadata"].get("finalizers") or [])
        wanted = {"Foreground": FOREGROUND, "Orphan": ORPHAN}.get(propagation)
        if (
            wanted is not None
            and wanted not in finalizers
            and self.has_dependents(current["metadata"]["uid"])
        ):
            # one policy at a time: a new DELETE may switch it, as the apiserver allows
            finalizers = [f for f in finalizers if f not in (FOREGROUND, ORPHAN)] + [wanted]
        if not finalizers:
            return self._remove(resource, key)
        marked = copy_object(current)
        marked["metadata"]["finalizers"] = finalizers
        if not marked["metadata"].get("deletionTimestamp"):
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = grace_period_seconds or 0
        if resource == "pods":  # confirmed by its kubelet: only finalizers hold it now
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
        if marked == current:
            return copy_object(current)
        return self._commit("MODIFIED", resource, key, marked, current)

    def _mark_terminating(self, key: _Key, current: JsonDict, grace: int) -> JsonDict:
        meta = current["metadata"]
        if (
            meta.get("deletionTimestamp")
            and int(meta.get("deletionGracePeriodSeconds") or 0) <= grace
        ):
            return copy_object(current)  # already terminating, as soon or sooner
        marked = copy_object(current)
        marked["metadata"]["deletionTimestamp"] = now(grace)
        marked["metadata"]["deletionGracePeriodSeconds"] = grace
        return self._commit("MODIFIED", "pods", key, marked, current)

    @staticmethod
    def _removable(resource: str, obj: JsonDict) -> bool:
        """Whether an object marked for deletion may go now (after an update)."""
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        return resource != "pods" or not meta.get("deletionGracePeriodSeconds")

    def _remove(self, resource: str, key: _Key) -> JsonDict:
        current, _ = self._objects[resource][key]
        return self._commit("DELETED", resource, key, copy_object(current), current)

    def has_dependents(self, uid: str) -> bool:
        """Whether any stored object names ``uid`` in its ``ownerReferences``."""
        for objects in self._objects.values():
            for obj, _ in objects.values():
                for owner in obj["metadata"].get("ownerReferences") or ():
                    if owner.get("uid") == uid:
                        return True
        return False

    def _delete_namespace_contents(self, namespace: str) -> None:
        for resource, kind in RESOURCES.items():
            if not kind.namespaced:
                continue
            for key in [k for k in self._objects[resource] if k[0] == namespace]:
                if key in self._objects[resource]:
                    self._remove(resource, key)
