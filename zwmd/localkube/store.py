"""The object store: every served object, one global resourceVersion, change listeners.

Design notes:

* One event loop, no locks: every method is synchronous and runs to completion, so a
  change, its history entry, its watch events and its listener calls are atomic.
* Stored objects are never mutated: each change stores a new dict together with its
  JSON encoding (``orjson``, done once). Readers get copies decoded from that encoding,
  so nobody outside can alter the store; the server and watches use the bytes directly.
* Metadata is the apiserver's: ``uid``, ``resourceVersion`` (one global counter, as a
  string), ``creationTimestamp``, ``generation`` (bumped on spec changes for Jobs and
  Pods), ``generateName``, ``deletionTimestamp`` while finalizers remain (and, for a
  pod, while its kubelet stops it). A namespaced
  create needs its namespace to exist; ``default`` exists from the start and every new
  namespace gets a ``default`` ServiceAccount, as the controller-manager would create.
* Deletion and garbage collection live in :mod:`zwmd.localkube.deleting` (a base class).
* The store is one Kubernetes release (:mod:`zwmd.localkube.versions`): a write drops
  the fields that release does not serve before defaulting, and defaulting names labels
  as that release does. The server passes each request's ``fieldValidation``; writes
  made in process drop such fields silently.
"""

from __future__ import annotations

import bisect
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from zwmd.localkube import errors, podsecurity
from zwmd.localkube.admission import (
    RESOURCES,
    ResourceType,
    default,
    validate,
    validate_update,
)
from zwmd.localkube.deleting import Deletion, copy_object, now
from zwmd.localkube.errors import ApiError, JsonDict, bad_request
from zwmd.localkube.patching import apply_patch
from zwmd.localkube.selectors import combined_predicate
from zwmd.localkube.versions import NEWEST, FieldValidation, KubernetesVersion
from zwmd.localkube.watching import History, WatchEvent, WatchStream

__all__ = ["ApiError", "Listener", "Page", "Store"]

Listener = Callable[[str, str, JsonDict, JsonDict | None], None]
#: A requester's admission of a write: (stored object or None, object to store); raises.
Admit = Callable[[JsonDict | None, JsonDict], None]
_Key = tuple[str, str]
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Page:
    """One page of a list: encoded items, the list's resourceVersion, the next token."""

    __slots__ = ("encoded_items", "items_objects", "next_key", "remaining", "resource_version")

    def __init__(
        self,
        items_objects: list[JsonDict],
        encoded_items: list[bytes],
        resource_version: str,
        next_key: _Key | None,
        remaining: int,
    ) -> None:
        self.items_objects = items_objects
        self.encoded_items = encoded_items
        self.resource_version = resource_version
        self.next_key = next_key
        self.remaining = remaining


class Store(Deletion):
    """In-memory Kubernetes objects, keyed by plural resource name, namespace and name."""

    def __init__(self, *, history_size: int = 10_000, version: KubernetesVersion = NEWEST) -> None:
        self.version = version
        self._objects: dict[str, dict[_Key, tuple[JsonDict, bytes]]] = {r: {} for r in RESOURCES}
        self._sorted_keys: dict[str, list[_Key]] = {}  # per resource, rebuilt after add/remove
        self._revision = 0
        self._listeners: list[Listener] = []
        self._watchers: dict[str, set[WatchStream]] = {r: set() for r in RESOURCES}
        self.history = History(history_size)
        self.create("namespaces", None, {"metadata": {"name": "default"}})

    # --- reading ----------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    def _type(self, resource: str) -> ResourceType:
        try:
            return RESOURCES[resource]
        except KeyError:
            raise ApiError(
                404, "NotFound", f"the server could not find resource {resource!r}"
            ) from None

    def _key(self, resource: str, namespace: str | None, name: str) -> _Key:
        return (namespace or "", name) if self._type(resource).namespaced else ("", name)

    def _stored(self, resource: str, namespace: str | None, name: str) -> tuple[JsonDict, bytes]:
        found = self._objects[resource].get(self._key(resource, namespace, name))
        if found is None:
            raise errors.not_found(resource, name)
        return found

    def get(self, resource: str, namespace: str | None, name: str) -> JsonDict:
        copied: JsonDict = orjson.loads(self._stored(resource, namespace, name)[1])
        return copied

    def get_encoded(self, resource: str, namespace: str | None, name: str) -> bytes:
        return self._stored(resource, namespace, name)[1]

    def list(
        self,
        resource: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[JsonDict], str]:
        page = self.list_page(
            resource, namespace, label_selector=label_selector, field_selector=field_selector
        )
        return [orjson.loads(item) for item in page.encoded_items], page.resource_version

    def list_page(
        self,
        resource: str,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        after: _Key | None = None,
    ) -> Page:
        """Matching objects in key order, at most ``limit`` of them, after key ``after``."""
        predicate = combined_predicate(resource, label_selector, field_selector)
        self._type(resource)
        objects = self._objects[resource]
        keys = self._sorted_keys.get(resource)
        if keys is None:
            keys = self._sorted_keys[resource] = sorted(objects)
        start = bisect.bisect_right(keys, after) if after is not None else 0
        if namespace and self._type(resource).namespaced:
            start = max(start, bisect.bisect_left(keys, (namespace, "")))
            end = bisect.bisect_left(keys, (namespace + "\x00", ""))
        else:
            end = len(keys)
        keys = keys[start:end]
        selected: list[_Key] = []
        remaining = 0
        for key in keys:
            if predicate is not None and not predicate(objects[key][0]):
                continue
            if limit is not None and len(selected) >= limit:
                remaining += 1
            else:
                selected.append(key)
        next_key = selected[-1] if remaining and selected else None
        return Page(
            [objects[key][0] for key in selected],
            [objects[key][1] for key in selected],
            self.resource_version,
            next_key,
            remaining,
        )

    # --- listeners and watches ------------------------------------------------------------

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event_type, resource, obj, old)`` synchronously after each change."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        self._listeners.remove(callback)

    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> WatchStream:
        """Start a watch: from now (rv "" or "0": current objects first) or after a version.

        Raises 410 Expired when the version is older than the history keeps.
        """
        self._type(resource)
        predicate = combined_predicate(resource, label_selector, field_selector)
        initial: list[WatchEvent] = []
        if not resource_version or resource_version == "0":
            for key, (obj, encoded) in self._objects[resource].items():  # creation order
                if namespace and key[0] != namespace:
                    continue
                if predicate is None or predicate(obj):
                    version = int(obj["metadata"]["resourceVersion"])
                    initial.append(WatchEvent("ADDED", resource, key[0], version, obj, encoded))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version {resource_version!r}") from None
            stream = WatchStream(resource, namespace, predicate, [], self._forget_watcher)
            for event in self.history.since(resource, since):
                stream.offer(event, None if event.type == "ADDED" else self._previous(event))
            self._watchers[resource].add(stream)
            return stream
        stream = WatchStream(resource, namespace, predicate, initial, self._forget_watcher)
        self._watchers[resource].add(stream)
        return stream

    def _previous(self, event: WatchEvent) -> JsonDict | None:
        # Replayed events are matched against their own object only: good enough for
        # selector transitions, which depend on labels that rarely change.
        return event.obj

    def _forget_watcher(self, stream: WatchStream) -> None:
        self._watchers[stream.resource].discard(stream)

    def open_watches(self) -> dict[str, int]:
        """How many watches are open now, by resource (those with any)."""
        return {resource: len(streams) for resource, streams in self._watchers.items() if streams}

    def close_watches(self) -> int:
        """End every open watch (fault injection); returns how many were open."""
        streams = [s for watchers in self._watchers.values() for s in watchers]
        for stream in streams:
            stream.close()
        return len(streams)

    def compact(self) -> None:
        """Forget the history: resuming any watch from a version before now gives 410."""
        self.history.compact(self._revision)

    def _emit(
        self,
        event_type: str,
        resource: str,
        key: _Key,
        obj: JsonDict,
        encoded: bytes,
        old: JsonDict | None,
    ) -> None:
        event = WatchEvent(event_type, resource, key[0], self._revision, obj, encoded)
        self.history.record(event)
        for stream in tuple(self._watchers[resource]):
            stream.offer(event, old)
        for listener in tuple(self._listeners):
            listener(event_type, resource, orjson.loads(encoded), copy_object(old) if old else None)

    # --- writing ----------------------------------------------------------------------

    def _commit(
        self, event_type: str, resource: str, key: _Key, obj: JsonDict, old: JsonDict | None
    ) -> JsonDict:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        encoded = orjson.dumps(obj)
        stored: JsonDict = orjson.loads(encoded)
        if event_type == "DELETED":
            self._objects[resource].pop(key, None)
            self._sorted_keys.pop(resource, None)
        else:
            if key not in self._objects[resource]:
                self._sorted_keys.pop(resource, None)
            self._objects[resource][key] = (stored, encoded)
        self._emit(event_type, resource, key, stored, encoded, old)
        return obj

    def _validation(self, validation: FieldValidation | None) -> FieldValidation:
        return validation if validation is not None else FieldValidation(self.version)

    def create(
        self,
        resource: str,
        namespace: str | None,
        obj: JsonDict,
        validation: FieldValidation | None = None,
        admit: Admit | None = None,
    ) -> JsonDict:
        """POST: fields the release does not serve are dropped as ``validation`` says
        (silently when None); ``admit`` (the requester's admission) sees the object last."""
        kind = self._type(resource)
        obj = copy_object(obj)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            namespace = namespace or metadata.get("namespace") or "default"
            if metadata.get("namespace", namespace) != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            metadata["namespace"] = namespace
            if ("", namespace) not in self._objects["namespaces"]:
                raise errors.not_found("namespaces", namespace)
            terminating = self._objects["namespaces"][("", namespace)][0]
            if terminating["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{errors.qualified(resource)} is forbidden: unable to create new content in "
                    f"namespace {namespace} because it is being terminated",
                )
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise errors.invalid(
                    kind.kind,
                    resource,
                    "",
                    [("metadata.name", "FieldValueRequired", "name or generateName is required")],
                )
            metadata["name"] = prefix + "".join(
                secrets.choice(_GENERATE_ALPHABET) for _ in range(5)
            )
        name = metadata["name"]
        key = self._key(resource, namespace, name)
        if key in self._objects[resource]:
            raise errors.already_exists(resource, name)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now()
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(transient, None)
        if kind.generation:
            metadata["generation"] = 1
        validation = self._validation(validation)
        validation.drop(resource, obj)
        default(resource, obj, self.version)
        validate(resource, obj)
        if resource in ("pods", "jobs") and namespace is not None:
            holder = self._objects["namespaces"][("", namespace)][0]
            validation.warnings += podsecurity.admit(holder, resource, name, obj)
        if admit is not None:
            admit(None, obj)
        created = self._commit("ADDED", resource, key, obj, None)
        if resource == "namespaces":
            self.create("serviceaccounts", name, {"metadata": {"name": "default"}})
        return created

    def _check_version(self, resource: str, name: str, obj: JsonDict, current: JsonDict) -> None:
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource, name)

    def _update(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        obj: JsonDict,
        *,
        status_only: bool,
        validation: FieldValidation | None = None,
        admit: Admit | None = None,
    ) -> JsonDict:
        kind = self._type(resource)
        current, _ = self._stored(resource, namespace, name)
        self._check_version(resource, name, obj, current)
        key = self._key(resource, namespace, name)
        if status_only:
            updated = copy_object(current)
            updated["status"] = copy_object(obj.get("status") or {})
        else:
            updated = copy_object(obj)
            metadata = updated.setdefault("metadata", {})
            if metadata.get("name", name) != name:
                raise bad_request("the name of the object does not match the name on the URL")
            for kept in (
                "uid",
                "creationTimestamp",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if kept in current["metadata"]:
                    metadata[kept] = current["metadata"][kept]
                else:
                    metadata.pop(kept, None)
            metadata["name"] = name
            updated["kind"], updated["apiVersion"] = kind.kind, kind.api_version
            if kind.status_subresource and resource != "namespaces":
                if "status" in current:
                    updated["status"] = current["status"]
                else:
                    updated.pop("status", None)
            self._validation(validation).drop(resource, updated, current)
            if kind.generation and updated.get("spec") != current.get("spec"):
                metadata["generation"] = current["metadata"].get("generation", 1) + 1
            validate(resource, updated)
            validate_update(resource, current, updated)
        if admit is not None:
            admit(current, updated)
        updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if updated == current:
            return copy_object(current)  # a no-op update does not bump the resourceVersion
        result = self._commit("MODIFIED", resource, key, updated, current)
        if self._removable(resource, updated):
            self._remove(resource, key)
        return result

    def replace(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        obj: JsonDict,
        validation: FieldValidation | None = None,
        admit: Admit | None = None,
    ) -> JsonDict:
        """PUT: 409 Conflict when ``metadata.resourceVersion`` is set and stale."""
        return self._update(
            resource, namespace, name, obj, status_only=False, validation=validation, admit=admit
        )

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        status: bool = False,
        validation: FieldValidation | None = None,
        admit: Admit | None = None,
    ) -> JsonDict:
        """PATCH the object (or only its ``.status`` when ``status``)."""
        current, _ = self._stored(resource, namespace, name)
        patched = apply_patch(copy_object(current), patch, content_type)
        return self._update(
            resource,
            namespace,
            name,
            patched,
            status_only=status,
            validation=validation,
            admit=admit,
        )

    def update_status(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        status: JsonDict,
        *,
        resource_version: str | None = None,
    ) -> JsonDict:
        """Replace ``.status`` only (controllers, kubelets and the ``/status`` subresource)."""
        body: JsonDict = {"status": status, "metadata": {}}
        if resource_version:
            body["metadata"]["resourceVersion"] = resource_version
        return self._update(resource, namespace, name, body, status_only=True)

    def objects(self, resource: str) -> Iterator[JsonDict]:
        """Copies of every stored object of ``resource`` (for tests and debugging)."""
        for _, encoded in list(self._objects[resource].values()):
            yield orjson.loads(encoded)
