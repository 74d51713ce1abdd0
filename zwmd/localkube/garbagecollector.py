"""localkube's garbage collector: deletes dependents whose owners are gone, later.

It behaves like kube-controller-manager's garbage collector: the apiserver only removes
(or marks) the object a DELETE names (:mod:`zwmd.localkube.deleting`); this collector
finds the dependents, through ``ownerReferences`` by uid, and deals with them
``delay`` seconds after it learns of the change, as a real cluster's does when its
queues are busy. A client that deletes a Job and at once creates objects of the same
names meets the old dependents, as it would on a cluster.

Design notes:

* A graph in miniature, kept by a store listener (called synchronously after every
  change): every object's uid and key, and for every owner uid (living or not) the uids
  of its dependents. Owners are known by uid only: a reference whose uid no longer
  exists is dangling, even if an object of that name exists again with a new uid.
* Work items are ``(action, uid)``, each due ``delay`` after the change that queued it
  (queued again meanwhile, it keeps the earlier time); :meth:`GarbageCollector.run`
  sleeps until the earliest. An item is decided on the object as stored *then*, never
  on what the event said, and every write it makes is conditional on the uid and
  resourceVersion it read, so a dependent replaced or re-owned meanwhile is spared.
* ``delete`` (upstream's attempt-to-delete): an owner that is gone queues each of its
  dependents, and so does an object created or updated with a reference to an absent
  uid. The references are sorted as upstream sorts them: *solid* (the owner lives),
  *dangling* (it is gone) and *waiting* (it is being deleted in the foreground). With a
  solid owner the item only loses its dangling and waiting references; without one it
  is deleted, with Foreground when a waiting owner needs it to and it has dependents of
  its own, else with the policy its own finalizers ask for (Background by default).
* ``foreground``: an owner marked with ``foregroundDeletion`` has all its dependents
  queued for deletion; once none with ``blockOwnerDeletion`` is left, the finalizer is
  removed and the apiserver removes the owner. Each blocking dependent that goes queues
  the owner again.
* ``orphan``: an owner marked with the ``orphan`` finalizer has its uid removed from
  every dependent's ``ownerReferences``, then loses the finalizer.
* A failed step (a conflict with a concurrent write) is retried ``delay`` later.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from zwmd.localkube.admission import RESOURCES
from zwmd.localkube.deleting import FOREGROUND, ORPHAN, copy_object
from zwmd.localkube.errors import ApiError

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

__all__ = ["DEFAULT_DELAY", "GarbageCollector"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
_Where = tuple[str, str, str]  # resource, namespace, name
_Item = tuple[str, str]  # action, uid

DEFAULT_DELAY = 0.5


def _reference_uids(obj: JsonDict | None) -> set[str]:
    if not obj:
        return set()
    return {str(o.get("uid")) for o in obj["metadata"].get("ownerReferences") or ()}


def _finalizers(obj: JsonDict) -> list[str]:
    return list(obj["metadata"].get("finalizers") or ())


def _deleting_dependents(obj: JsonDict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp")) and FOREGROUND in _finalizers(obj)


class GarbageCollector:
    """Collects the dependents of deleted owners in ``store``; :meth:`run` until cancelled."""

    def __init__(self, store: Store, *, delay: float = DEFAULT_DELAY) -> None:
        self._store = store
        self.delay = delay  # seconds; tests may change it while it runs
        self._where: dict[str, _Where] = {}  # uid -> where the object is
        self._dependents: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self._due: dict[_Item, float] = {}
        self._heap: list[tuple[float, _Item]] = []
        self._wake: anyio.Event | None = None  # made in run(): needs the event loop
        self._listening = False

    # --- the graph ----------------------------------------------------------------------

    def _on_change(
        self, event_type: str, resource: str, obj: JsonDict, old: JsonDict | None
    ) -> None:
        meta = obj["metadata"]
        uid = str(meta["uid"])
        now_refs = set() if event_type == "DELETED" else _reference_uids(obj)
        old_refs = _reference_uids(old)
        for owner in old_refs - now_refs:
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard(uid)
                if not dependents:
                    del self._dependents[owner]
            if owner in self._where:
                self._queue("foreground", owner)  # it may have waited for this one
        for owner in now_refs:
            self._dependents.setdefault(owner, set()).add(uid)
        if event_type == "DELETED":
            self._where.pop(uid, None)
            for dependent in self._dependents.get(uid, ()):
                self._queue("delete", dependent)
            return
        self._where[uid] = (resource, str(meta.get("namespace") or ""), str(meta["name"]))
        if any(owner not in self._where for owner in now_refs - old_refs):
            self._queue("delete", uid)  # created (or re-owned) with a dangling reference
        if meta.get("deletionTimestamp"):
            finalizers = _finalizers(obj)
            if ORPHAN in finalizers:
                self._queue("orphan", uid)
            if FOREGROUND in finalizers:
                self._queue("foreground", uid)

    def _queue(self, action: str, uid: str) -> None:
        item = (action, uid)
        due = time.monotonic() + self.delay
        if item in self._due and self._due[item] <= due:
            return
        self._due[item] = due  # an earlier entry for it in the heap is skipped as stale
        heapq.heappush(self._heap, (due, item))
        if self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        """How many work items wait (for tests and debugging)."""
        return len(self._due)

    def catch_up(self) -> None:
        """Do every queued item now, and what it leads to, synchronously (tests)."""
        for _ in range(10_000):
            if not self._due:
                return
            item = min(self._due, key=self._due.__getitem__)
            del self._due[item]
            try:
                self._process(*item)
            except ApiError as error:
                logger.debug("garbage collector: %s %s: %s", *item, error.message)
        self._heap = [(due, item) for item, due in self._due.items()]
        heapq.heapify(self._heap)

    def hurry(self) -> None:
        """Make every queued item due now (a test's "the collector has caught up")."""
        now = time.monotonic()
        self._due = dict.fromkeys(self._due, now)
        self._heap = [(now, item) for item in self._due]
        heapq.heapify(self._heap)
        if self._wake is not None:
            self._wake.set()

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Process work items as they come due, until cancelled."""
        if not self._listening:
            self._listening = True
            self._store.add_listener(self._on_change)
            for resource in RESOURCES:
                for obj in self._store.objects(resource):
                    self._on_change("ADDED", resource, obj, None)
        while True:
            wake = self._wake = anyio.Event()
            delay = self._heap[0][0] - time.monotonic() if self._heap else math.inf
            if delay > 0:
                with anyio.move_on_after(delay):
                    await wake.wait()
                continue
            due, item = heapq.heappop(self._heap)
            if self._due.get(item) != due:
                continue  # stale: queued again for an earlier time
            del self._due[item]
            try:
                self._process(*item)
            except ApiError as error:
                logger.debug("garbage collector: %s %s: %s", *item, error.message)
                self._queue(*item)
            except Exception:
                logger.exception("garbage collector: %s %s failed", *item)
                self._queue(*item)
            await anyio.lowlevel.checkpoint()

    def _process(self, action: str, uid: str) -> None:
        latest = self._latest(uid)
        if latest is None:
            return
        if action == "orphan":
            self._orphan(latest)
        elif action == "foreground" or _deleting_dependents(latest):
            self._foreground(latest)
        else:
            self._attempt_to_delete(latest)

    def _latest(self, uid: str) -> JsonDict | None:
        where = self._where.get(uid)
        if where is None:
            return None
        try:
            obj = self._store.get(*where)
        except ApiError as error:
            if error.code == 404:
                return None
            raise
        return obj if obj["metadata"]["uid"] == uid else None

    # --- the three actions --------------------------------------------------------------

    def _attempt_to_delete(self, item: JsonDict) -> None:
        meta = item["metadata"]
        if meta.get("deletionTimestamp"):
            return  # on its way out already; its own removal queues its dependents
        references = meta.get("ownerReferences") or []
        if not references:
            return
        solid, dangling, waiting = [], [], []
        for reference in references:
            owner = self._latest(str(reference.get("uid")))
            if owner is None:
                dangling.append(reference)
            elif _deleting_dependents(owner):
                waiting.append(reference)
            else:
                solid.append(reference)
        if solid:
            if dangling or waiting:
                gone = {str(r.get("uid")) for r in dangling + waiting}
                self._drop_references(item, gone)
            return
        if waiting and self._dependents.get(str(meta["uid"])):
            policy = "Foreground"
        elif ORPHAN in _finalizers(item):
            policy = "Orphan"
        elif FOREGROUND in _finalizers(item):
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(item, policy)

    def _foreground(self, owner: JsonDict) -> None:
        if not _deleting_dependents(owner):
            return
        uid = str(owner["metadata"]["uid"])
        for dependent_uid in sorted(self._dependents.get(uid, ())):
            dependent = self._latest(dependent_uid)
            if dependent is not None and not _deleting_dependents(dependent):
                self._attempt_to_delete(dependent)
        for dependent_uid in sorted(self._dependents.get(uid, ())):
            dependent = self._latest(dependent_uid)
            for reference in (dependent or {}).get("metadata", {}).get("ownerReferences") or ():
                if reference.get("uid") == uid and reference.get("blockOwnerDeletion"):
                    return  # its removal queues this owner again
        self._remove_finalizer(owner, FOREGROUND)

    def _orphan(self, owner: JsonDict) -> None:
        meta = owner["metadata"]
        if not meta.get("deletionTimestamp") or ORPHAN not in _finalizers(owner):
            return
        uid = str(meta["uid"])
        for dependent_uid in sorted(self._dependents.get(uid, ())):
            dependent = self._latest(dependent_uid)
            if dependent is not None:
                self._drop_references(dependent, {uid})
        self._remove_finalizer(owner, ORPHAN)

    # --- writes, conditional on what was read --------------------------------------------

    def _where_of(self, obj: JsonDict) -> _Where:
        return self._where[str(obj["metadata"]["uid"])]

    def _delete(self, obj: JsonDict, policy: str) -> None:
        resource, namespace, name = self._where_of(obj)
        meta = obj["metadata"]
        self._store.delete(
            resource,
            namespace,
            name,
            policy,
            resource_version=meta["resourceVersion"],
            uid=meta["uid"],
        )

    def _drop_references(self, obj: JsonDict, uids: set[str]) -> None:
        updated = copy_object(obj)
        kept = [r for r in obj["metadata"]["ownerReferences"] if str(r.get("uid")) not in uids]
        if kept:
            updated["metadata"]["ownerReferences"] = kept
        else:
            del updated["metadata"]["ownerReferences"]
        self._store.replace(*self._where_of(obj), updated)  # resourceVersion: conditional

    def _remove_finalizer(self, obj: JsonDict, finalizer: str) -> None:
        updated = copy_object(obj)
        kept = [f for f in _finalizers(obj) if f != finalizer]
        if kept:
            updated["metadata"]["finalizers"] = kept
        else:
            del updated["metadata"]["finalizers"]
        self._store.replace(*self._where_of(obj), updated)
