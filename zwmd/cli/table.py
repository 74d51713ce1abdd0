"""How the client verbs print workloads: a table (``ls``), ``-o json|yaml|wide|name``.

Ids are shown short (8 characters, as docker does) in the table; ``wide`` adds the full
id, kind, attempt and message, ``name`` prints one full id a line (for scripts). Ages and
durations are rounded to kubectl's units (``45s``, ``3m``, ``2h``, ``4d``). ``json`` and
``yaml`` give the daemon's own objects, unchanged (kubernetes-asyncio already needs
PyYAML, so it costs zwmd nothing more).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import yaml

from zwmd.apiclient import Workload

OUTPUTS = ("table", "json", "yaml", "wide", "name")
SHORT_ID = 8


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def span(seconds: float) -> str:
    """``45s``, ``3m``, ``2h``, ``4d``: the largest unit that fits, as kubectl prints."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size * (2 if unit != "m" else 1):
            return f"{whole // size}{unit}"
    return f"{whole}s"


def age(workload: Workload, now: datetime) -> str:
    created = _when(workload.created_at)
    return span((now - created).total_seconds()) if created else "-"


def duration(workload: Workload, now: datetime) -> str:
    """From start to finish (or to now while it runs); ``-`` before it started."""
    started = _when(workload.started_at)
    if started is None:
        return "-"
    finished = _when(workload.finished_at) or now
    return span((finished - started).total_seconds())


def _rows(workloads: Sequence[Workload], wide: bool, now: datetime) -> list[list[str]]:
    header = ["ID", "STATE", "REASON", "IMAGE", "AGE", "DURATION"]
    if wide:
        header = ["ID", "STATE", "REASON", "IMAGE", "AGE", "DURATION", "KIND", "ATTEMPT"]
        header.append("MESSAGE")
    rows = [header]
    for w in workloads:
        row = [
            w.id if wide else w.id[:SHORT_ID],
            w.state,
            w.reason or "",
            w.image or "",
            age(w, now),
            duration(w, now),
        ]
        if wide:
            row += [w.kind or "", "" if w.attempt is None else str(w.attempt), w.message or ""]
        rows.append(row)
    return rows


def render(workloads: Sequence[Workload], output: str, now: datetime | None = None) -> str:
    """The text ``ls`` (or ``show``, with one workload) prints for ``-o output``."""
    if output == "json":
        return json.dumps([dict(w.raw) for w in workloads], indent=2)
    if output == "yaml":
        return yaml.safe_dump([dict(w.raw) for w in workloads], sort_keys=False).rstrip()
    if output == "name":
        return "\n".join(w.id for w in workloads)
    rows = _rows(workloads, output == "wide", now or datetime.now(UTC))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def render_one(workload: Workload, output: str) -> str:
    """``show``: the daemon's JSON object by default, else as ``ls`` prints it."""
    if output in ("table", "json"):
        return json.dumps(dict(workload.raw), indent=2)
    if output == "yaml":
        return yaml.safe_dump(dict(workload.raw), sort_keys=False).rstrip()
    return render([workload], output)
