"""A Kubernetes version profile: what one apiserver release knows, enables and writes.

Responsibility: answer, for one ``major.minor``, the questions on which the releases
localkube models (:data:`OLDEST` to :data:`NEWEST`) differ in ways a client can see.

Design notes:

* **Fields come in three states**, as in the apiserver's types and feature gates. A field
  the release's Go types do not have yet is *unknown*: its decoder drops it, and from
  1.25 (server-side field validation, beta) the request's ``fieldValidation`` decides
  what happens: ``Ignore`` drops it silently, ``Warn`` (the default) drops it with a
  ``Warning: 299`` header, ``Strict`` refuses the request with 400 (the decoder's
  message: it names the kind on create and update, not on patch). The same holds for a
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

from zwmd.localkube.errors import ApiError, JsonDict
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
    #: a PATCH: its strict decoding error does not name the kind
    patch: bool = False

    def __post_init__(self) -> None:
        self.warnings: list[str] = []

    @classmethod
    def resolve(
        cls, version: KubernetesVersion, asked: str | None, *, patch: bool = False
    ) -> FieldValidation:
        """The mode for a request's ``fieldValidation`` parameter (1.24 ignores it)."""
        if not version.validates_fields:
            return cls(version, "Ignore", patch)
        if asked is None or asked == "":
            return cls(version, "Warn", patch)
        for mode in _MODES:
            if asked == mode:
                return cls(version, mode, patch)
        raise ApiError(
            400,
            "BadRequest",
            f"fieldValidation parameter unsupported: {asked!r}, "
            "must be one of Ignore, Warn or Strict",
        )

    def drop(self, resource: str, obj: JsonDict, old: JsonDict | None = None) -> None:
        """Remove, in place, the fields of ``obj`` this release does not serve.

        Raises 400 (``Strict``) for an unknown field; notes a warning (``Warn``). The
        message of a create or update names the kind, as the decoder's error does
        upstream; a patch's is the strict decoding error alone.
        """
        kind = RESOURCES.get(resource)
        if kind is None:
            return
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
            if not self.patch:
                version = kind.api_version.rpartition("/")[2]
                message = f'{kind.kind} in version "{version}" cannot be handled as a ' + (
                    f"{kind.kind}: {message}"
                )
            raise ApiError(400, "BadRequest", message)
        if self.mode == "Warn":
            self.warnings += [f'unknown field "{path}"' for path in unknown]


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
