"""The scripted kubelet: a test decides every step of every pod's life.

Nothing runs. A pod stays as created (Pending, unscheduled) until the test calls one of
the transitions below; each writes the status a real kubelet (or the scheduler, or the
eviction API) would write for that situation, through :mod:`.podstatus`:

========================  =========================================================
``set_running``           scheduled, container running and ready, phase Running
``succeed`` / ``fail``    container terminated (exit 0 ``Completed`` / ``Error``)
``oom_kill``              exit 137, reason ``OOMKilled``, phase Failed
``waiting``               container waiting: ``ImagePullBackOff``, ``ErrImagePull``,
                          ``CrashLoopBackOff``, ... with a message
``evict``                 ``DisruptionTarget=True`` (``EvictionByEvictionAPI``), phase
                          Failed, reason ``Evicted``
``unschedulable``         ``PodScheduled=False``, reason ``Unschedulable``
``log``                   lines appended to the pod's log
``finish_termination``    a Terminating pod's container stops (exit 143 unless told),
                          then the pod is deleted with grace 0
``failed_create_event``   a ``FailedCreate`` Warning Event on a Job
========================  =========================================================

Design notes:

* :meth:`ScriptedKubelet.wait_for_pod` hands out each pod once, oldest first, so a test
  of retries reads naturally: fail the first pod, wait for the next one.
* Transitions are synchronous store writes; they act on the main (first) container
  unless ``container`` is given. A pod that is gone raises the store's 404.
* The transitions are plain methods, so :meth:`run` only has to watch for new pods (to
  wake :meth:`wait_for_pod`); it works without ``run`` as well, by polling the store.
* A graceful deletion leaves a scheduled pod Terminating (see
  :mod:`zwmd.localkube.deleting`). :meth:`run` finishes each one at once, as a container
  that obeys SIGTERM (exit 143); with ``hold_terminations`` set, pods stay Terminating
  (their logs readable, ``log`` still appends) until the test calls
  :meth:`finish_termination`, or their grace period is over.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from zwmd.localkube.errors import ApiError
from zwmd.localkube.jobrules import event_for
from zwmd.localkube.kubelets import podstatus

if TYPE_CHECKING:
    from zwmd.localkube.podlogs import PodLogs
    from zwmd.localkube.store import Store

__all__ = ["ScriptedKubelet"]

JsonDict = dict[str, Any]


class ScriptedKubelet:
    """Pod transitions on demand, for tests."""

    def __init__(
        self, store: Store, logs: PodLogs, *, node_name: str = podstatus.NODE_NAME
    ) -> None:
        self._store = store
        self._logs = logs
        self._node = node_name
        self._claimed: set[str] = set()  # pod uids handed out by wait_for_pod
        self._new_pod: anyio.Event | None = None
        self._started: dict[tuple[str, str, str], str] = {}
        #: leave Terminating pods so until the test finishes them (else at once)
        self.hold_terminations = False

    async def run(self) -> None:
        """Wake :meth:`wait_for_pod` on every new pod, and finish Terminating pods."""
        send, receive = anyio.create_memory_object_stream[tuple[str, str, str]](math.inf)

        def listener(event_type: str, resource: str, obj: JsonDict, old: JsonDict | None) -> None:
            if resource != "pods":
                return
            if self._new_pod is not None:
                self._new_pod.set()
            meta = obj["metadata"]
            was_marked = (old or {}).get("metadata", {}).get("deletionTimestamp")
            if event_type != "DELETED" and meta.get("deletionTimestamp") and not was_marked:
                send.send_nowait((meta["namespace"], meta["name"], meta["uid"]))

        self._store.add_listener(listener)
        try:
            async with anyio.create_task_group() as tg, receive:
                async for namespace, pod, uid in receive:
                    tg.start_soon(self._terminate_later, namespace, pod, uid)
        finally:
            send.close()
            self._store.remove_listener(listener)

    async def _terminate_later(self, namespace: str, pod: str, uid: str) -> None:
        """Finish a Terminating pod: at once, or when its grace is over if held."""
        exit_code = 143  # it obeyed SIGTERM
        if self.hold_terminations:
            try:
                obj = self._pod(namespace, pod)
            except ApiError:
                return
            await anyio.sleep(float(obj["metadata"].get("deletionGracePeriodSeconds") or 0))
            exit_code = 137  # SIGKILL once the grace period is over
        try:
            obj = self._pod(namespace, pod)
        except ApiError:
            return
        if obj["metadata"]["uid"] == uid:
            self.finish_termination(namespace, pod, exit_code=exit_code)

    def finish_termination(
        self, namespace: str, pod: str, exit_code: int = 143, reason: str = "Error"
    ) -> None:
        """The Terminating pod's containers stopped (on SIGTERM: 143); the pod goes."""
        obj = self._pod(namespace, pod)
        status = obj.get("status") or {}
        for entry in status.get("containerStatuses") or ():
            if "running" in (entry.get("state") or {}):
                name = str(entry["name"])
                started = self._started.get((namespace, pod, name)) or podstatus.now()
                state = podstatus.terminated_state(exit_code, reason, started_at=started)
                self._logs.close(namespace, pod, name)
                status = self._write(namespace, pod, podstatus.terminated(status, name, state))[
                    "status"
                ]
        try:
            self._store.delete(
                "pods", namespace, pod, grace_period_seconds=0, uid=obj["metadata"]["uid"]
            )
        except ApiError as error:
            if error.code not in (404, 409):
                raise

    # --- finding pods ---------------------------------------------------------------

    def _unclaimed(self, namespace: str, job_name: str | None) -> str | None:
        selector = None if job_name is None else f"job-name={job_name}"  # every release
        pods, _ = self._store.list("pods", namespace, label_selector=selector)
        pods.sort(key=lambda p: int(p["metadata"].get("resourceVersion") or 0))
        for pod in pods:
            meta = pod["metadata"]
            if meta["uid"] not in self._claimed and not meta.get("deletionTimestamp"):
                self._claimed.add(meta["uid"])
                return str(meta["name"])
        return None

    async def wait_for_pod(
        self, namespace: str, job_name: str | None = None, timeout: float = 5.0
    ) -> str:
        """The name of the next pod (of ``job_name``'s Job) not handed out before."""
        with anyio.fail_after(timeout):
            while True:
                event = self._new_pod = anyio.Event()
                name = self._unclaimed(namespace, job_name)
                if name is not None:
                    return name
                with anyio.move_on_after(0.05):  # also works when run() is not running
                    await event.wait()

    # --- transitions ----------------------------------------------------------------

    def _pod(self, namespace: str, pod: str) -> JsonDict:
        return self._store.get("pods", namespace, pod)

    def _main(self, obj: JsonDict, container: str | None) -> str:
        if container is not None:
            return container
        return str(((obj.get("spec") or {}).get("containers") or [{}])[0].get("name", ""))

    def _write(self, namespace: str, pod: str, status: JsonDict) -> JsonDict:
        return self._store.update_status("pods", namespace, pod, status)

    def _schedule(self, namespace: str, pod: str) -> JsonDict:
        obj = self._pod(namespace, pod)
        if (obj.get("spec") or {}).get("nodeName") != self._node:
            obj = self._store.patch(
                "pods",
                namespace,
                pod,
                {"spec": {"nodeName": self._node}},
                "application/merge-patch+json",
            )
        if not (obj.get("status") or {}).get("containerStatuses"):
            obj = self._write(namespace, pod, podstatus.scheduled(obj))
        return obj

    def schedule(self, namespace: str, pod: str) -> None:
        """Bind the pod to the node: ``PodScheduled=True``, containers ``ContainerCreating``."""
        self._schedule(namespace, pod)

    def set_running(self, namespace: str, pod: str, container: str | None = None) -> None:
        obj = self._schedule(namespace, pod)
        name = self._main(obj, container)
        started = podstatus.now()
        self._started[(namespace, pod, name)] = started
        self._logs.start(namespace, pod, name)
        self._write(namespace, pod, podstatus.running(obj.get("status") or {}, name, started))

    def _terminate(
        self,
        namespace: str,
        pod: str,
        exit_code: int,
        reason: str,
        message: str | None,
        container: str | None,
    ) -> None:
        obj = self._schedule(namespace, pod)
        name = self._main(obj, container)
        started = self._started.get((namespace, pod, name))
        if started is None:  # it ran (it has an exit code), so it has a log, if empty
            started = self._started[(namespace, pod, name)] = podstatus.now()
            self._logs.start(namespace, pod, name)
        state = podstatus.terminated_state(exit_code, reason, started_at=started, message=message)
        self._logs.close(namespace, pod, name)
        self._write(namespace, pod, podstatus.terminated(obj.get("status") or {}, name, state))

    def succeed(self, namespace: str, pod: str, container: str | None = None) -> None:
        """The container exits 0: phase Succeeded."""
        self._terminate(namespace, pod, 0, "Completed", None, container)

    def fail(
        self,
        namespace: str,
        pod: str,
        exit_code: int = 1,
        reason: str = "Error",
        message: str | None = None,
        container: str | None = None,
    ) -> None:
        """The container exits non-zero: phase Failed."""
        self._terminate(namespace, pod, exit_code, reason, message, container)

    def oom_kill(self, namespace: str, pod: str, container: str | None = None) -> None:
        """The container is killed for exceeding its memory limit: exit 137, ``OOMKilled``."""
        self._terminate(namespace, pod, 137, "OOMKilled", None, container)

    def waiting(
        self,
        namespace: str,
        pod: str,
        reason: str = "ImagePullBackOff",
        message: str | None = None,
        container: str | None = None,
    ) -> None:
        """The container waits: ``ImagePullBackOff``, ``ErrImagePull``, ``CrashLoopBackOff``."""
        obj = self._schedule(namespace, pod)
        name = self._main(obj, container)
        if message is None and reason in ("ImagePullBackOff", "ErrImagePull"):
            image = next(
                (
                    c.get("image", "")
                    for c in obj["spec"].get("containers", [])
                    if c.get("name") == name
                ),
                "",
            )
            message = f'Back-off pulling image "{image}"'
        status = podstatus.waiting(obj.get("status") or {}, name, reason, message)
        if reason == "CrashLoopBackOff":
            entries = status.get("containerStatuses") or []
            for entry in entries:
                if entry.get("name") == name:
                    entry["restartCount"] = int(entry.get("restartCount") or 0) + 1
        self._write(namespace, pod, status)

    def evict(self, namespace: str, pod: str, message: str | None = None) -> None:
        """The eviction API evicts the pod: ``DisruptionTarget``, then Failed/``Evicted``."""
        obj = self._pod(namespace, pod)
        status = podstatus.set_condition(
            obj.get("status") or {},
            "DisruptionTarget",
            "True",
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
        )
        name = self._main(obj, None)
        status["phase"] = "Failed"
        status["reason"] = "Evicted"
        status["message"] = message or "The node was low on resource: memory."
        entries = status.get("containerStatuses") or []
        for entry in entries:
            if "terminated" not in (entry.get("state") or {}):
                entry["state"] = podstatus.terminated_state(
                    137,
                    "Error",
                    started_at=self._started.get((namespace, pod, name)),
                )
                entry["ready"] = False
                entry["started"] = False
        self._logs.close(namespace, pod, name)
        self._write(namespace, pod, status)

    def unschedulable(
        self,
        namespace: str,
        pod: str,
        message: str = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
        "available: 1 No preemption victims found for incoming pod.",
    ) -> None:
        """The scheduler cannot place the pod: ``PodScheduled=False``, ``Unschedulable``."""
        obj = self._pod(namespace, pod)
        status = podstatus.set_condition(
            obj.get("status") or {}, "PodScheduled", "False", "Unschedulable", message
        )
        status["phase"] = "Pending"
        self._write(namespace, pod, status)

    def log(
        self, namespace: str, pod: str, *lines: str | bytes, container: str | None = None
    ) -> None:
        """Append lines (a newline is added to each) to the container's current log."""
        name = self._main(self._pod(namespace, pod), container)
        data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
        self._logs.append(namespace, pod, name, data)

    def failed_create_event(self, namespace: str, job: str, message: str) -> JsonDict:
        """A ``FailedCreate`` Warning Event on Job ``job``, as the job controller records it."""
        obj = self._store.get("jobs", namespace, job)
        event = event_for(obj, "Warning", "FailedCreate", message, time.time_ns())
        return self._store.create("events", namespace, event)
