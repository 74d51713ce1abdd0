"""Creating a Job's pods: how many it lacks, whether the backoff lets it, and admission.

This is the pod-creating half of upstream's ``manageJob`` for NonIndexed Jobs; the
controller in :mod:`zwmd.localkube.controllers` decides *whether* a Job runs at all
(finished, failing, suspended) and calls :meth:`PodCreator.create_missing` only for a
Job that should.

Design notes:

* How many: ``parallelism``, no more than the completions still wanted; a Job without
  ``completions`` (a work queue) wants none once a pod succeeded. Terminating pods
  count as busy when ``podReplacementPolicy`` is ``Failed`` or a pod failure policy is
  set (which implies it), so a replacement waits until the old pod is gone.
* The pod failure backoff (:mod:`zwmd.localkube.podbackoff`) is asked only when a pod is
  missing, as upstream does: a Job that lacks nothing never waits, and one that does
  waits for every pod it lacks, not one at a time.
* A pod the store refuses (PodSecurity admission in :mod:`zwmd.localkube.podsecurity`,
  a terminating namespace) becomes a ``FailedCreate`` Event with the apiserver's
  message, ``Error creating: pods "x" is forbidden: ...``, and another try later; the
  Job makes no progress meanwhile, as upstream's controller behaves.
* Admission stand-in: the ServiceAccount admission plugin's check is done here. ``default`` always exists; any other name must be a ServiceAccount in
  the namespace, else a ``FailedCreate`` Event in the apiserver's words and another try
  ``retry_interval`` seconds later (or as soon as the ServiceAccount is created).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zwmd.localkube import jobrules as rules
from zwmd.localkube.errors import ApiError

if TYPE_CHECKING:
    from zwmd.localkube.jobevents import JobEvents
    from zwmd.localkube.store import Store

__all__ = ["PodCreator"]

JsonDict = dict[str, Any]


class PodCreator:
    """Creates the pods Jobs lack in ``store``, recording Events through ``events``."""

    def __init__(self, store: Store, events: JobEvents, *, retry_interval: float) -> None:
        self._store = store
        self._events = events
        self._retry_interval = retry_interval

    def create_missing(
        self,
        job: JsonDict,
        succeeded: int,
        active: list[JsonDict],
        terminating: list[JsonDict],
        now: float,
        not_before: float | None,
    ) -> tuple[list[JsonDict], float | None]:
        """Create the pods ``job`` lacks, unless it must wait until ``not_before``.

        Returns the pods created and when to try again (None: nothing to retry)."""
        spec, meta = job.get("spec") or {}, job["metadata"]
        wanted = int(spec.get("parallelism", 1))
        completions = rules.wanted_completions(spec)
        if completions is not None:
            wanted = min(wanted, completions - succeeded)
        elif succeeded:
            wanted = 0
        busy = len(active)
        if spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy"):
            busy += len(terminating)
        missing = wanted - busy
        if missing <= 0:
            return [], None
        if not_before is not None and now < not_before:
            return [], not_before
        created: list[JsonDict] = []
        for _ in range(missing):
            name = f"{meta['name']}-{rules.random_suffix()}"
            problem = self._admission_problem(job, name)
            if problem is not None:
                self._events.failed_create(job, f"Error creating: {problem}")
                return created, now + self._retry_interval
            pod = rules.pod_from_template(job, name)
            try:
                created.append(self._store.create("pods", meta["namespace"], pod))
            except ApiError as error:
                self._events.failed_create(job, f"Error creating: {error.message}")
                return created, now + self._retry_interval
            self._events.created(str(meta["uid"]))
            self._events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return created, None

    def _admission_problem(self, job: JsonDict, pod_name: str) -> str | None:
        namespace = job["metadata"]["namespace"]
        pod_spec = (job.get("spec") or {}).get("template", {}).get("spec") or {}
        account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
        if account == "default":
            return None
        try:
            self._store.get("serviceaccounts", namespace, account)
        except ApiError as error:
            if error.code != 404:
                raise
            return (
                f'pods "{pod_name}" is forbidden: error looking up service account '
                f'{namespace}/{account}: serviceaccount "{account}" not found'
            )
        return None
