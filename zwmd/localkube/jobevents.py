"""The Events localkube's Job controller records about a Job.

Design notes:

* Events go straight into the store, as the event recorder's sink would write them
  (named ``<job>.<hex nanoseconds>``, see :func:`zwmd.localkube.jobrules.event_for`). A
  write that fails is logged and dropped, as the recorder drops what it cannot deliver:
  an Event is never a reason for a sync to fail.
* ``FailedCreate`` repeats (a missing service account is retried every second) update
  one Event, its ``count`` and ``lastTimestamp``, the way the recorder aggregates them,
  instead of writing one Event per attempt. Which Jobs have one outstanding is also what
  the controller looks at when a ServiceAccount appears, to retry those Jobs at once.
* ``emit=False`` silences the lifecycle Events (``SuccessfulCreate``, ``Completed`` and
  the like) but not ``FailedCreate``, which explains a Job that makes no pods.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from zwmd.localkube import jobrules as rules
from zwmd.localkube.errors import ApiError

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

__all__ = ["JobEvents"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]


class JobEvents:
    """Records Events about Jobs in ``store``."""

    def __init__(self, store: Store, *, emit: bool = True) -> None:
        self._store = store
        self._emit = emit
        self._failed_create: dict[str, str] = {}  # job uid -> FailedCreate Event name

    def record(self, job: JsonDict, kind: str, reason: str, message: str) -> None:
        """A lifecycle Event (``kind`` Normal or Warning) about ``job``."""
        if self._emit:
            self._write(job, kind, reason, message)

    def failed_create(self, job: JsonDict, message: str) -> None:
        """``job`` could not create a pod: a Warning, or one more of the same."""
        uid = str(job["metadata"]["uid"])
        namespace = job["metadata"]["namespace"]
        name = self._failed_create.get(uid)
        if name is not None:
            try:
                event = self._store.get("events", namespace, name)
                self._store.patch(
                    "events",
                    namespace,
                    name,
                    {
                        "count": int(event.get("count") or 1) + 1,
                        "lastTimestamp": rules.now_rfc3339(time.time()),
                        "message": message,
                    },
                    "application/merge-patch+json",
                )
                return
            except ApiError:
                pass  # deleted meanwhile: start a new one
        self._failed_create[uid] = self._write(job, "Warning", "FailedCreate", message)

    def created(self, uid: str) -> None:
        """Job ``uid`` created a pod: a later failure starts a new ``FailedCreate``."""
        self._failed_create.pop(uid, None)

    def failing_create(self, uid: str) -> bool:
        """Whether Job ``uid``'s last attempt to create a pod failed."""
        return uid in self._failed_create

    def forget(self, uid: str) -> None:
        self._failed_create.pop(uid, None)

    def _write(self, job: JsonDict, kind: str, reason: str, message: str) -> str:
        event = rules.event_for(job, kind, reason, message, time.time_ns())
        try:
            self._store.create("events", job["metadata"]["namespace"], event)
        except ApiError as error:
            logger.debug("event for job %s: %s", job["metadata"]["name"], error.message)
        return str(event["metadata"]["name"])
