"""Server-side printing: ``meta.k8s.io/v1`` Table answers for ``kubectl get``.

Design notes
------------
kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` (with plain JSON as a
fallback) and prints whatever columns the server returns. The apiserver builds the Table
from per-kind column definitions (pods, jobs, configmaps, ... in upstream's printers) and
falls back, for every other kind, to a default convertor with NAME and AGE. This module
models that for the kinds localkube serves most: pods (READY STATUS RESTARTS AGE, with IP
and NODE at priority 1 so that only ``-o wide`` shows them), jobs (STATUS COMPLETIONS
DURATION AGE), configmaps (DATA), secrets (TYPE DATA) and
namespaces (STATUS); others get NAME AGE.

``includeObject`` follows upstream: ``Metadata`` (kubectl's default) fills each row's
``object`` with a ``PartialObjectMetadata``, ``Object`` with the whole object, ``None``
leaves it out. Times print as kubectl's short durations (``5s``, ``3m``, ``2h``, ``4d``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from typing import Any

JsonDict = dict[str, Any]
_TABLE_MEDIA = "as=table"


def wants_table(accept: str) -> bool:
    """Whether the first media type the client accepts is a meta.k8s.io/v1 Table."""
    first = accept.split(",")[0].replace(" ", "").lower()
    return _TABLE_MEDIA in first.split(";") and "g=meta.k8s.io" in first


def _since(stamp: str | None, now: datetime.datetime) -> str:
    if not stamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    return _short(seconds)


def _short(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 3:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _age(item: JsonDict, now: datetime.datetime) -> str:
    return _since(item["metadata"].get("creationTimestamp"), now)


def _pod_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for container in statuses:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated:
            reason = terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}"
    if item["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    total = len(spec.get("containers") or [])
    return [
        item["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts,
        _age(item, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


def _job_status(status: JsonDict) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        kind = condition.get("type")
        if kind == "Complete":
            return "Complete"
        if kind == "Failed":
            return "Failed"
        if kind == "Suspended":
            return "Suspended"
        if kind == "FailureTarget":
            return "FailureTarget"
    return "Running"


def _job_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    spec, status = item.get("spec") or {}, item.get("status") or {}
    completions = spec.get("completions")
    succeeded = int(status.get("succeeded") or 0)
    shown = f"{succeeded}/{completions if completions is not None else 1}"
    start, end = status.get("startTime"), status.get("completionTime")
    duration = ""
    if start:
        finished = datetime.datetime.fromisoformat(end.replace("Z", "+00:00")) if end else now
        duration = _since(start, finished)
    return [item["metadata"]["name"], _job_status(status), shown, duration, _age(item, now)]


def _configmap_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    count = len(item.get("data") or {}) + len(item.get("binaryData") or {})
    return [item["metadata"]["name"], count, _age(item, now)]


def _secret_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    count = len(item.get("data") or {}) + len(item.get("stringData") or {})
    return [item["metadata"]["name"], item.get("type") or "Opaque", count, _age(item, now)]


def _namespace_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    phase = (item.get("status") or {}).get("phase") or "Active"
    return [item["metadata"]["name"], phase, _age(item, now)]


def _default_cells(item: JsonDict, now: datetime.datetime) -> list[Any]:
    return [item["metadata"]["name"], _age(item, now)]


def _column(name: str, kind: str = "string", priority: int = 0) -> JsonDict:
    return {
        "name": name,
        "type": kind,
        "format": "name" if name == "Name" else "",
        "description": "",
        "priority": priority,
    }


_Cells = Callable[[JsonDict, datetime.datetime], list[Any]]
_NAME_AGE = [_column("Name"), _column("Age")]
_PRINTERS: dict[str, tuple[list[JsonDict], _Cells]] = {
    "pods": (
        [
            _column("Name"),
            _column("Ready"),
            _column("Status"),
            _column("Restarts", "string"),
            _column("Age"),
            _column("IP", priority=1),
            _column("Node", priority=1),
        ],
        _pod_cells,
    ),
    "jobs": (
        [
            _column("Name"),
            _column("Status"),
            _column("Completions"),
            _column("Duration"),
            _column("Age"),
        ],
        _job_cells,
    ),
    "configmaps": ([_column("Name"), _column("Data", "integer"), _column("Age")], _configmap_cells),
    "namespaces": ([_column("Name"), _column("Status"), _column("Age")], _namespace_cells),
    "secrets": (
        [_column("Name"), _column("Type"), _column("Data", "integer"), _column("Age")],
        _secret_cells,
    ),
}


def _row_object(item: JsonDict, include: str) -> JsonDict | None:
    if include == "None":
        return None
    if include == "Object":
        return item
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": item["metadata"],
    }


def table(
    resource: str,
    items: Iterable[JsonDict],
    include: str,
    list_metadata: JsonDict,
    now: datetime.datetime | None = None,
) -> JsonDict:
    """A Table of ``items`` with the columns kubectl shows for ``resource``."""
    moment = now or datetime.datetime.now(datetime.UTC)
    columns, cells = _PRINTERS.get(resource, (_NAME_AGE, _default_cells))
    rows = []
    for item in items:
        row: JsonDict = {"cells": cells(item, moment)}
        shown = _row_object(item, include or "Metadata")
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": columns,
        "rows": rows,
    }
