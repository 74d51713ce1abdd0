"""What the Kubernetes API refuses for its size or its keys, checked before zwmd writes.

Design notes:

- A run is written as a Job, then its environment Secret (:mod:`zwmd.kube.jobs`). An
  apiserver that refuses the Secret after it took the Job leaves a Job that can never
  start; one that refuses a Job over etcd's request limit fails every retry the same
  way. So the objects zwmd *would* create are built and measured first, and a request
  that cannot fit is refused with the field to change, before any write.
- The limits are Kubernetes': a Secret's or ConfigMap's data at most 1 MiB
  (``MaxSecretSize``, the sum of its decoded values; a build's Dockerfile travels in a
  ConfigMap), its keys ``[-._a-zA-Z0-9]+`` of at most 253 characters, not
  ``.``, ``..`` or starting with ``..`` (``IsConfigMapKey``); all annotations of an
  object at most 256 KiB (``TotalAnnotationSizeLimitB``, keys and values); an object at
  most about 1.5 MiB, etcd's default ``--max-request-bytes``. The object limits are
  settings (:class:`ObjectLimits`) for clusters whose etcd was configured otherwise.
- An object is measured as compact JSON: etcd stores protobuf, which is smaller, so the
  estimate errs on the side of refusing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from zwmd.kube.client import Obj
from zwmd.kube.jobs import environment_secret

__all__ = [
    "MAX_ANNOTATION_BYTES",
    "MAX_OBJECT_BYTES",
    "MAX_SECRET_BYTES",
    "ObjectLimits",
    "ObjectTooLarge",
    "check_data",
    "check_runner_objects",
]

MAX_SECRET_BYTES: Final = 1024 * 1024
MAX_OBJECT_BYTES: Final = 1024 * 1024 * 3 // 2
MAX_ANNOTATION_BYTES: Final = 256 * 1024
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_SECRET_KEY = 253
_UID_SHAPE: Final = "00000000-0000-0000-0000-000000000000"  # a uid's length, for the owner


@dataclass(frozen=True)
class ObjectLimits:
    """How large the objects of one run may be (``ZWMD_MAX_SECRET_BYTES``, ``..._OBJECT_BYTES``)."""

    secret_bytes: int = MAX_SECRET_BYTES
    object_bytes: int = MAX_OBJECT_BYTES


class ObjectTooLarge(ValueError):
    """A run request whose objects Kubernetes would refuse; ``field`` is what to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def object_bytes(obj: object) -> int:
    """The object's size as compact JSON."""
    return len(orjson.dumps(obj))


def _check_environment(environment: Mapping[str, str], limits: ObjectLimits) -> None:
    for key in environment:
        if (
            len(key) > _MAX_SECRET_KEY
            or not _SECRET_KEY.fullmatch(key)
            or key in {".", ".."}
            or key.startswith("..")
        ):
            shown = key if len(key) <= 60 else f"{key[:57]}..."
            raise ObjectTooLarge(
                "environment",
                f"the name {shown!r} cannot be a Secret key: 1-{_MAX_SECRET_KEY} characters "
                "of letters, digits, '-', '_' and '.', not '.' or '..' or starting with '..'",
            )
    check_data("environment", environment.values(), limits)


def check_data(field: str, values: Iterable[str], limits: ObjectLimits) -> None:
    """Raise :class:`ObjectTooLarge` naming ``field`` unless ``values`` fit in one Secret's
    or ConfigMap's data (Kubernetes counts the bytes of the values, the same for both)."""
    size = sum(len(value.encode()) for value in values)
    if size > limits.secret_bytes:
        raise ObjectTooLarge(
            field,
            f"{size} bytes, more than a Secret or ConfigMap holds "
            f"(ZWMD_MAX_SECRET_BYTES={limits.secret_bytes})",
        )


def _largest_part(container: Obj) -> str:
    """The request field that makes the runner container large."""
    sizes = {
        "arguments": object_bytes(container.get("args") or []),
        "command": object_bytes(container.get("command") or []),
        "image": len(str(container.get("image", ""))),
    }
    return max(sizes, key=lambda name: sizes[name])


def check_runner_objects(job: Obj, environment: Mapping[str, str], limits: ObjectLimits) -> None:
    """Raise :class:`ObjectTooLarge` unless the Job and its environment Secret would fit.

    :param job: the runner Job as zwmd would create it (:func:`zwmd.kube.jobs.runner_job`).
    :param environment: the run's environment, which goes into the Job's Secret.
    """
    _check_environment(environment, limits)
    created = {**job, "metadata": {**job["metadata"], "uid": _UID_SHAPE}}  # as the owner
    size = object_bytes(environment_secret(created, environment))
    if size > limits.object_bytes:
        raise ObjectTooLarge(
            "environment",
            f"its Secret would be {size} bytes, more than an object may be "
            f"(ZWMD_MAX_OBJECT_BYTES={limits.object_bytes})",
        )
    container = job["spec"]["template"]["spec"]["containers"][0]
    annotations = job["metadata"].get("annotations") or {}
    noted = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if noted > MAX_ANNOTATION_BYTES:  # the aliases come from the arguments
        raise ObjectTooLarge(
            "arguments",
            f"the Job's annotations would be {noted} bytes (the run and snapshot ids among "
            f"them), more than Kubernetes allows ({MAX_ANNOTATION_BYTES})",
        )
    size = object_bytes(job)
    if size > limits.object_bytes:
        raise ObjectTooLarge(
            _largest_part(container),
            f"the Job would be {size} bytes, more than an object may be "
            f"(ZWMD_MAX_OBJECT_BYTES={limits.object_bytes})",
        )
