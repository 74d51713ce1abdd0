"""A Kubernetes version profile: what one apiserver release knows, enables and writes.

Responsibility: answer, for one ``major.minor``, the questions on which the releases
localkube models (:data:`OLDEST` to :data:`NEWEST`) differ in ways a client can see.

Design notes:

* **Fields come in three states**, as in the apiserver's types and feature gates. A field
  the release's Go types do not have yet is *unknown*: its decoder drops it, and from
  1.25 (server-side field validation, beta) the request's ``fieldValidation`` decides
  what happens: ``Ignore`` drops it silently, ``Warn`` (the default) drops it with a
  ``Warning: 299`` header, ``Strict`` refuses the request: 400 on create and update
  (the decoder's error, naming the kind), 422 ``Invalid`` on the field ``patch`` for a
  patch (whose value is the strategic merge patch as Go prints it, or the patched
  object's JSON for a merge or JSON patch: key order may differ from Go's). The same holds for a
  field no type of :mod:`zwmd.localkube.schemas` declares (a typo). 1.24 has no field
  validation: the parameter is ignored and unknown fields vanish without a word. A field
  the types have but whose feature gate is off by default is *disabled*: the strategy's
  ``dropDisabledFields`` removes it on create, and on update unless the stored object
  already used it, never with a warning. Otherwise the field is *enabled*.
* **Only the fields listed in** :data:`JOB_FIELDS` **are versioned**: the Job fields
  added since 1.24, where a client's request differs between releases. Every other field
  is taken as known to every release modelled (it is, for what zwmd writes; the
  ``kubernetes-validate`` schemas check that in the tests).
* **Pod labels and the selector.** Before 1.27 the Job's default selector and its pods
  carry ``controller-uid`` and ``job-name``; from 1.27 the ``batch.kubernetes.io/``
  labels are added (the legacy pair stays) and the selector uses the prefixed uid label.
* **Terminal conditions.** From 1.31 the Job controller first writes ``FailureTarget`` or
  ``SuccessCriteriaMet`` and adds ``Failed`` or ``Complete`` only once the Job's pods are
  gone. Before 1.31 ``Failed`` and ``Complete`` come at once; ``FailureTarget`` is
  written only for a pod failure policy's ``FailJob`` rule (1.26 to 1.30), in the same
  status write as ``Failed``.
* **Status fields.** ``status.terminating`` is written from 1.29 (the
  ``JobPodReplacementPolicy`` gate, beta), ``status.uncountedTerminatedPods`` from 1.25
  (job tracking with finalizers, on by default again from 1.25).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from zwmd.localkube.errors import ApiError, JsonDict, bad_request
from zwmd.localkube.resources import RESOURCES
from zwmd.localkube.schemas import drop_unknown_fields

__all__ = [
    "JOB_FIELDS",
    "NEWEST",
    "OLDEST",
    "FieldValidation",
    "KubernetesVersion",
    "VersionedField",
    "warning_header",
]


@dataclass(frozen=True, order=True)
class KubernetesVersion:
    """A Kubernetes minor release, ``1.24`` to ``1.34``."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> KubernetesVersion:
        """``"1.24"``, ``"v1.24"`` or ``"1.24.3"``; ValueError naming the range otherwise."""
        found = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
        if found is None:
            raise ValueError(f"not a Kubernetes version: {text!r} (expected e.g. 1.24)")
        version = cls(int(found.group(1)), int(found.group(2)))
        if not OLDEST <= version <= NEWEST:
            raise ValueError(f"Kubernetes {version} is not modelled: choose {OLDEST} to {NEWEST}")
        return version

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def since(self, minor: int) -> bool:
        return (self.major, self.minor) >= (1, minor)

    # --- what this release does ---------------------------------------------------------

    @property
    def validates_fields(self) -> bool:
        """Server-side field validation (the ``fieldValidation`` parameter), from 1.25."""
        return self.since(25)

    @property
    def prefixed_job_labels(self) -> bool:
        """``batch.kubernetes.io/job-name`` and ``/controller-uid`` on pods, from 1.27."""
        return self.since(27)

    @property
    def selector_label(self) -> str:
        """The label of a Job's default selector."""
        return (
            "batch.kubernetes.io/controller-uid" if self.prefixed_job_labels else "controller-uid"
        )

    def job_labels(self, uid: str, name: str) -> dict[str, str]:
        """The labels the apiserver adds to a Job's pod template."""
        labels = {"controller-uid": uid, "job-name": name}
        if self.prefixed_job_labels:
            labels["batch.kubernetes.io/controller-uid"] = uid
            labels["batch.kubernetes.io/job-name"] = name
        return labels

    @property
    def delays_terminal_conditions(self) -> bool:
        """FailureTarget / SuccessCriteriaMet first, Failed / Complete once pods are gone."""
        return self.since(31)

    @property
    def writes_terminating(self) -> bool:
        """The Job controller counts terminating pods in ``status.terminating``."""
        return self.since(29)

    @property
    def writes_uncounted(self) -> bool:
        """The Job controller writes ``status.uncountedTerminatedPods``."""
        return self.since(25)

    def field_state(self, field: VersionedField) -> Literal["unknown", "disabled", "enabled"]:
        if not self.since(field.known):
            return "unknown"
        return "enabled" if self.since(field.enabled) else "disabled"

    def enables(self, path: str) -> bool:
        """Whether the Job field at ``path`` (``spec.podFailurePolicy``) is served."""
        for field in JOB_FIELDS:
            if field.path == path:
                return self.field_state(field) == "enabled"
        return True

    def version_info(self) -> JsonDict:
        """The ``/version`` answer of this release."""
        return {
            "major": str(self.major),
            "minor": str(self.minor),
            "gitVersion": f"v{self}.0-localkube",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }


OLDEST = KubernetesVersion(1, 24)
NEWEST = KubernetesVersion(1, 34)


@dataclass(frozen=True)
class VersionedField:
    """A Job field added after 1.24: the minor that knew it, and the one that enabled it."""

    path: str
    known: int
    enabled: int


JOB_FIELDS = (
    VersionedField("spec.podFailurePolicy", known=25, enabled=26),
    VersionedField("spec.podReplacementPolicy", known=28, enabled=29),
    VersionedField("spec.backoffLimitPerIndex", known=28, enabled=29),
    VersionedField("spec.maxFailedIndexes", known=28, enabled=29),
    VersionedField("spec.successPolicy", known=30, enabled=31),
    VersionedField("spec.managedBy", known=30, enabled=32),
)

Mode = Literal["Ignore", "Warn", "Strict"]
_MODES: tuple[Mode, ...] = ("Ignore", "Warn", "Strict")


@dataclass
class FieldValidation:
    """How one write treats the fields its release does not serve, and what it found."""

    version: KubernetesVersion
    mode: Mode = "Ignore"
    #: a PATCH's Content-Type and body: its strict decoding error is a 422 on ``patch``
    patch_type: str | None = None
    patch_body: Any = None

    def __post_init__(self) -> None:
        self.warnings: list[str] = []

    @classmethod
    def resolve(cls, version: KubernetesVersion, asked: str | None) -> FieldValidation:
        """The mode for a request's ``fieldValidation`` parameter (1.24 ignores it)."""
        if not version.validates_fields:
            return cls(version, "Ignore")
        if asked is None or asked == "":
            return cls(version, "Warn")
        for mode in _MODES:
            if asked == mode:
                return cls(version, mode)
        raise ApiError(
            400,
            "BadRequest",
            f"fieldValidation parameter unsupported: {asked!r}, "
            "must be one of Ignore, Warn or Strict",
        )

    def drop(self, resource: str, obj: JsonDict, old: JsonDict | None = None) -> None:
        """Remove, in place, the fields of ``obj`` this release does not serve.

        Refuses an unknown field (``Strict``): 400 naming the kind on create and update,
        as the decoder's error is worded upstream, 422 on ``patch`` for a patch, as the
        patch handler words it; notes a warning (``Warn``).
        """
        kind = RESOURCES.get(resource)
        if kind is None:
            return
        patched = orjson.dumps(obj).decode() if self.patch_type is not None else ""
        unknown: list[str] = []
        for field in JOB_FIELDS if resource == "jobs" else ():
            state = self.version.field_state(field)
            if state == "enabled" or not _has(obj, field.path):
                continue
            if state == "disabled" and old is not None and _has(old, field.path):
                continue  # a field already in use is kept on update
            _remove(obj, field.path)
            if state == "unknown":
                unknown.append(field.path)
        unknown += drop_unknown_fields(kind.kind, obj)
        if not unknown:
            return
        if self.mode == "Strict":
            found = ", ".join(f'unknown field "{path}"' for path in unknown)
            message = f"strict decoding error: {found}"
            if self.patch_type is None:  # the decoder's error, as transformDecodeError words it
                version = kind.api_version.rpartition("/")[2]
                raise bad_request(
                    f'{kind.kind} in version "{version}" cannot be handled as a '
                    f"{kind.kind}: {message}"
                )
            raise self._patch_error(patched, message)
        if self.mode == "Warn":
            self.warnings += [f'unknown field "{path}"' for path in unknown]

    def _patch_error(self, patched: str, message: str) -> ApiError:
        """A patch's strict decoding error: 422 on the field ``patch``, whose value is the
        strategic merge patch as Go prints a map, or else the patched object's JSON."""
        strategic = self.patch_type == "application/strategic-merge-patch+json"
        value = _go_value(self.patch_body) if strategic else patched
        detail = f"Invalid value: {orjson.dumps(value).decode()}: {message}"
        return ApiError(
            422,
            "Invalid",
            f' "" is invalid: patch: {detail}',
            causes=[{"reason": "FieldValueInvalid", "message": detail, "field": "patch"}],
        )


def _go_value(value: Any) -> str:
    """``value`` as Go's ``%+v`` prints a decoded JSON value (maps with sorted keys)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _has(obj: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return False
        obj = obj[part]
    return True


def _remove(obj: Any, path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = obj[part]
    del obj[last]


def warning_header(text: str) -> str:
    """One ``Warning`` header value, as the apiserver writes it (code 299, agent ``-``)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'
