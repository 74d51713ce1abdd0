"""Pod status as a kubelet reports it: phases, conditions and container states.

Both kubelets (the process one and the scripted one) describe a pod's life with the
same few transitions, so they share these builders and every status they write has the
shape clients expect from a real node.

Design notes:

* Functions take the current ``status`` dict and return a new one (never mutating the
  argument), so a kubelet can keep its last written status and compare before writing.
  Each transition copies once and then edits its copy in place: a kubelet driving
  thousands of pods must not spend its time copying dicts.
* Conditions keep their ``lastTransitionTime`` unless their status changes, and come in
  the kubelet's order: PodReadyToStartContainers, Initialized, Ready, ContainersReady,
  PodScheduled (with DisruptionTarget appended when a pod is evicted).
* Container states are one of ``waiting`` / ``running`` / ``terminated``; a terminated
  state carries ``exitCode``, ``reason``, ``message`` (when there is one),
  ``startedAt``, ``finishedAt`` and ``containerID``. A restarted container moves its last
  state to ``lastState`` and counts ``restartCount`` up.
"""

from __future__ import annotations

import copy
import datetime
import functools
import time
from typing import Any

JsonDict = dict[str, Any]

NODE_NAME = "localkube"
HOST_IP = "127.0.0.1"
_CONDITION_ORDER = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
    "DisruptionTarget",
)


def now() -> str:
    """The current time as a ``metav1.Time``."""
    return _format_second(int(time.time()))


@functools.lru_cache(maxsize=8)
def _format_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    status: JsonDict,
    kind: str,
    value: str,
    reason: str | None = None,
    message: str | None = None,
) -> JsonDict:
    """A copy of ``status`` with one pod condition set."""
    return _condition(copy.deepcopy(status), kind, value, reason, message)


def _condition(
    status: JsonDict,
    kind: str,
    value: str,
    reason: str | None = None,
    message: str | None = None,
) -> JsonDict:
    """Set one condition in ``status`` itself (a copy the caller owns)."""
    conditions: list[JsonDict] = status.get("conditions") or []
    stamp = now()
    entry: JsonDict = {"type": kind, "status": value, "lastProbeTime": None}
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    for existing in conditions:
        if existing.get("type") == kind:
            same = existing.get("status") == value
            entry["lastTransitionTime"] = existing.get("lastTransitionTime") if same else stamp
            existing.clear()
            existing.update(entry)
            break
    else:
        entry["lastTransitionTime"] = stamp
        conditions.append(entry)
    order = {name: index for index, name in enumerate(_CONDITION_ORDER)}
    conditions.sort(key=lambda c: order.get(str(c.get("type")), len(order)))
    status["conditions"] = conditions
    return status


def _containers(pod: JsonDict) -> list[JsonDict]:
    return list((pod.get("spec") or {}).get("containers") or [])


def container_entry(
    container: JsonDict, state: JsonDict, *, ready: bool = False, restart_count: int = 0
) -> JsonDict:
    return {
        "name": container.get("name"),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restart_count,
        "state": state,
        "lastState": {},
    }


def scheduled(pod: JsonDict) -> JsonDict:
    """A newly scheduled pod: Pending, every container waiting in ``ContainerCreating``."""
    status = copy.deepcopy(pod.get("status") or {})
    status["phase"] = "Pending"
    status.setdefault("hostIP", HOST_IP)
    status.setdefault("hostIPs", [{"ip": HOST_IP}])
    status.setdefault("startTime", now())
    status.setdefault("qosClass", "BestEffort")
    status["containerStatuses"] = [
        container_entry(c, {"waiting": {"reason": "ContainerCreating"}}) for c in _containers(pod)
    ]
    status = _condition(status, "PodScheduled", "True")
    status = _condition(status, "Initialized", "True")
    status = _condition(status, "PodReadyToStartContainers", "True")
    status = _condition(status, "Ready", "False", "ContainersNotReady", _not_ready(pod))
    return _condition(status, "ContainersReady", "False", "ContainersNotReady", _not_ready(pod))


def _not_ready(pod: JsonDict) -> str:
    names = " ".join(str(c.get("name")) for c in _containers(pod))
    return f"containers with unready status: [{names}]"


def _entry(status: JsonDict, name: str) -> JsonDict:
    for entry in status.get("containerStatuses") or []:
        if entry.get("name") == name:
            return dict(entry)
    return {"name": name, "image": "", "imageID": "", "restartCount": 0, "lastState": {}}


def _put(status: JsonDict, entry: JsonDict) -> JsonDict:
    status = copy.deepcopy(status)
    entries = list(status.get("containerStatuses") or [])
    for index, existing in enumerate(entries):
        if existing.get("name") == entry["name"]:
            entries[index] = entry
            break
    else:
        entries.append(entry)
    status["containerStatuses"] = entries
    return status


def running(status: JsonDict, name: str, started_at: str, container_id: str = "") -> JsonDict:
    """Container ``name`` runs (and is ready): phase Running, Ready conditions True."""
    entry = _entry(status, name)
    entry.update(state={"running": {"startedAt": started_at}}, ready=True, started=True)
    if container_id:
        entry["containerID"] = container_id
    status = _put(status, entry)
    status["phase"] = "Running"
    status.setdefault("podIP", HOST_IP)
    status.setdefault("podIPs", [{"ip": HOST_IP}])
    status = _condition(status, "PodScheduled", "True")
    status = _condition(status, "Initialized", "True")
    status = _condition(status, "PodReadyToStartContainers", "True")
    if all(e.get("ready") for e in status["containerStatuses"]):
        status = _condition(status, "Ready", "True")
        status = _condition(status, "ContainersReady", "True")
    return status


def waiting(status: JsonDict, name: str, reason: str, message: str | None = None) -> JsonDict:
    """Container ``name`` waits (``ImagePullBackOff``, ``CrashLoopBackOff``, ...)."""
    entry = _entry(status, name)
    state: JsonDict = {"reason": reason}
    if message:
        state["message"] = message
    entry.update(state={"waiting": state}, ready=False, started=False)
    status = _put(status, entry)
    status = _condition(
        status, "Ready", "False", "ContainersNotReady", f"containers with unready status: [{name}]"
    )
    return _condition(
        status,
        "ContainersReady",
        "False",
        "ContainersNotReady",
        f"containers with unready status: [{name}]",
    )


def terminated_state(
    exit_code: int,
    reason: str,
    *,
    started_at: str | None,
    message: str | None = None,
    container_id: str = "",
) -> JsonDict:
    state: JsonDict = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": now(),
    }
    if message:
        state["message"] = message
    if container_id:
        state["containerID"] = container_id
    return {"terminated": state}


def terminated(status: JsonDict, name: str, state: JsonDict) -> JsonDict:
    """Container ``name`` ended with ``state`` and will not restart: the pod's final phase."""
    entry = _entry(status, name)
    entry.update(state=state, ready=False, started=False)
    status = _put(status, entry)
    codes = [
        (e.get("state") or {}).get("terminated", {}).get("exitCode")
        for e in status["containerStatuses"]
    ]
    if all(code is not None for code in codes):
        status["phase"] = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        status = _condition(status, "PodReadyToStartContainers", "False")
        status = _condition(status, "Ready", "False", "PodCompleted")
        status = _condition(status, "ContainersReady", "False", "PodCompleted")
    else:
        status = _condition(
            status,
            "Ready",
            "False",
            "ContainersNotReady",
            f"containers with unready status: [{name}]",
        )
        status = _condition(
            status,
            "ContainersReady",
            "False",
            "ContainersNotReady",
            f"containers with unready status: [{name}]",
        )
    return status


def restarting(status: JsonDict, name: str, state: JsonDict, message: str) -> JsonDict:
    """Container ``name`` ended with ``state`` and will restart after a back-off."""
    entry = _entry(status, name)
    entry.update(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": message}},
        lastState=state,
        ready=False,
        started=False,
        restartCount=int(entry.get("restartCount") or 0) + 1,
    )
    status = _put(status, entry)
    reason = f"containers with unready status: [{name}]"
    status = _condition(status, "Ready", "False", "ContainersNotReady", reason)
    return _condition(status, "ContainersReady", "False", "ContainersNotReady", reason)


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"
