"""Deletion as the apiserver and its garbage collector do it, for :class:`~zwmd.localkube.store.Store`.

Design notes:

* ``Background`` removes the object, then every dependent (``ownerReferences`` by uid)
  left without a living owner; a dependent that still has another owner only loses the
  dangling reference, as the garbage collector does.
* ``Foreground`` marks the owner with ``deletionTimestamp`` and the ``foregroundDeletion``
  finalizer, deletes its dependents, and removes the owner once none remain (a dependent
  held by its own finalizer keeps the owner visible, as on a real cluster).
* ``Orphan`` strips the owner reference from every dependent, then removes the owner.
* Any object with finalizers is only marked (``deletionTimestamp``); it goes when an
  update empties its finalizers. Pods go at once: this stands for the kubelet's
  confirmation of a graceful deletion, which localkube's kubelets need not send.
* A namespace takes everything in it along.

This is a base class of ``Store``: it works on the store's objects through the few
primitives declared abstract here.
"""

from __future__ import annotations

import abc
import datetime
from typing import Any

import orjson

from zwmd.localkube import errors
from zwmd.localkube.admission import RESOURCES
from zwmd.localkube.errors import JsonDict, bad_request

FOREGROUND = "foregroundDeletion"
_Key = tuple[str, str]
_Dependents = list[tuple[str, _Key]]


def now() -> str:
    """The current time as the apiserver writes timestamps."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def copy_object(obj: JsonDict) -> JsonDict:
    """A deep copy of a JSON object (faster than ``copy.deepcopy``)."""
    copied: JsonDict = orjson.loads(orjson.dumps(obj))
    return copied


class Deletion(abc.ABC):
    """DELETE with propagation policies, finalizers and garbage collection."""

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
    ) -> JsonDict:
        """Delete with a propagation policy; returns the object as last stored.

        The object stays (with ``deletionTimestamp``) while finalizers remain, including
        ``foregroundDeletion`` while Foreground dependents exist.
        """
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(f"Unsupported propagationPolicy {propagation!r}")
        current, _ = self._stored(resource, namespace, name)
        if resource_version and resource_version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource, name)
        key = self._key(resource, namespace, name)
        uid = current["metadata"]["uid"]
        if propagation == "Orphan":
            self._orphan_dependents(uid)
        if resource == "namespaces":
            self._delete_namespace_contents(name)
        finalizers = list(current["metadata"].get("finalizers") or [])
        if propagation == "Foreground" and FOREGROUND not in finalizers and self._dependents(uid):
            finalizers.append(FOREGROUND)
        if not finalizers:
            return self._remove(resource, key)
        marked = copy_object(current)
        marked["metadata"]["finalizers"] = finalizers
        if not marked["metadata"].get("deletionTimestamp"):
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = grace_period_seconds or 0
        result = self._commit("MODIFIED", resource, key, marked, current)
        if FOREGROUND in finalizers:
            for dep_resource, dep_key in self._dependents(uid):
                if dep_key in self._objects[dep_resource]:
                    self.delete(dep_resource, dep_key[0], dep_key[1], "Foreground")
            self._finish_foreground(uid)
        return result

    def _remove(self, resource: str, key: _Key) -> JsonDict:
        current, _ = self._objects[resource][key]
        gone = copy_object(current)
        result = self._commit("DELETED", resource, key, gone, current)
        self._collect_garbage(current["metadata"]["uid"])
        for owner in current["metadata"].get("ownerReferences") or ():
            self._finish_foreground(owner.get("uid"))
        return result

    def _dependents(self, uid: str) -> _Dependents:
        found = []
        for resource, objects in self._objects.items():
            for key, (obj, _) in objects.items():
                for owner in obj["metadata"].get("ownerReferences") or ():
                    if owner.get("uid") == uid:
                        found.append((resource, key))
                        break
        return found

    def _uid_exists(self, uid: str) -> bool:
        return any(
            obj["metadata"]["uid"] == uid
            for objects in self._objects.values()
            for obj, _ in objects.values()
        )

    def _collect_garbage(self, uid: str) -> None:
        """Background GC: delete dependents whose owners are all gone."""
        for resource, key in self._dependents(uid):
            if key not in self._objects[resource]:
                continue
            obj = self._objects[resource][key][0]
            owners = obj["metadata"].get("ownerReferences") or ()
            if any(self._uid_exists(o.get("uid")) for o in owners if o.get("uid") != uid):
                self._drop_owner_reference(resource, key, uid)  # as the GC removes dangling ones
            else:
                self.delete(resource, key[0], key[1], "Background")

    def _orphan_dependents(self, uid: str) -> None:
        for resource, key in self._dependents(uid):
            self._drop_owner_reference(resource, key, uid)

    def _drop_owner_reference(self, resource: str, key: _Key, uid: str) -> None:
        current = self._objects[resource][key][0]
        updated = copy_object(current)
        updated["metadata"]["ownerReferences"] = [
            o for o in current["metadata"]["ownerReferences"] if o.get("uid") != uid
        ]
        if not updated["metadata"]["ownerReferences"]:
            del updated["metadata"]["ownerReferences"]
        self._commit("MODIFIED", resource, key, updated, current)

    def _finish_foreground(self, uid: Any) -> None:
        """Remove an owner under Foreground deletion once its last dependent is gone."""
        for resource, objects in self._objects.items():
            for key, (obj, _) in list(objects.items()):
                metadata = obj["metadata"]
                if metadata["uid"] != uid or FOREGROUND not in (metadata.get("finalizers") or ()):
                    continue
                if self._dependents(uid):
                    return
                released = copy_object(obj)
                released["metadata"]["finalizers"] = [
                    f for f in metadata["finalizers"] if f != FOREGROUND
                ]
                if not released["metadata"]["finalizers"]:
                    del released["metadata"]["finalizers"]
                self._commit("MODIFIED", resource, key, released, obj)
                if not released["metadata"].get("finalizers"):
                    self._remove(resource, key)
                return

    def _delete_namespace_contents(self, namespace: str) -> None:
        for resource, kind in RESOURCES.items():
            if not kind.namespaced:
                continue
            for key in [k for k in self._objects[resource] if k[0] == namespace]:
                if key in self._objects[resource]:
                    self._remove(resource, key)
