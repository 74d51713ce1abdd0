"""A third-party zwmd plugin, as an outside author would write it (public API only).

It adds an implementation ``example``, a log store ``memory`` (the core's object-store
machinery over an in-memory backend: the path for any object store), a builder that
replaces kaniko with buildah, and a listener for state changes. A real plugin would be
published with ``[project.entry-points.zwmd] example = "zwmd_example"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zwmd.hookspecs import hookimpl
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.testing.memorybackend import MemoryBackend

changes: list[tuple[str, str, str]] = []


@hookimpl
def zwmd_implementations() -> list[str]:
    return ["example"]


@hookimpl
def zwmd_log_store(settings: Any, name: str) -> ObjectLogStore | None:
    if name != "memory":
        return None
    spool = Path(settings.state_dir) / "spool" / "memory"
    return ObjectLogStore(MemoryBackend(), name="memory", prefix="logs", spool_dir=spool)


@hookimpl
def zwmd_builder_job(settings: Any, plan: Any) -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "buildah",
                "image": "quay.example/buildah/stable:v1",
                "args": ["bud", "--file", "/workspace/Dockerfile", "--tag", plan.image],
            }
        ]
    }


@hookimpl
def zwmd_workload_state_changed(workload: dict[str, Any], old: str, new: str) -> None:
    changes.append((str(workload.get("id")), old, new))
