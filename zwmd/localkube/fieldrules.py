"""Field rules the apiserver checks on every object, and on Jobs' and pods' own fields.

Responsibility: the causes (``(field, reason, message)``, as :func:`errors.invalid`
takes them) for what a real apiserver refuses and :mod:`zwmd.localkube.admission` would
otherwise let through, with upstream's limits and wording:

* ObjectMeta (every kind): label keys are qualified names (an optional DNS-subdomain
  prefix of at most 253 characters and ``/``, then a name of at most 63 characters of
  ``[A-Za-z0-9_.-]`` starting and ending alphanumeric); label values are empty or such a
  name; annotation keys are qualified names, and all annotations together (keys plus
  values) hold at most 256 KiB (``TotalAnnotationSizeLimitB``). A Job's pod template
  metadata is checked the same way.
* Secret ``data`` is base64: a value that is not is a decoding error (400, before any
  validation), as the apiserver's JSON decoder reports it for a ``[]byte`` field.
* Jobs: a pod failure policy needs ``restartPolicy: Never`` and, where
  ``podReplacementPolicy`` is set, ``Failed``; ``parallelism``, ``completions``,
  ``activeDeadlineSeconds``, ``backoffLimit`` and ``ttlSecondsAfterFinished`` are not
  negative (0 is valid at the Job level: upstream's minimum is 0).
* Pods (and Job templates): ``activeDeadlineSeconds`` is between 1 and 2^31-1.

Design notes: plain functions of plain dicts, no state; each returns a list of causes
so that admission reports every problem of an object in one 422, as upstream does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from zwmd.localkube.errors import ApiError, bad_request

__all__ = ["data_decoding_error", "job_causes", "meta_causes", "pod_deadline_causes"]

Cause = tuple[str, str, str]

#: All annotations of one object, keys plus values, in bytes (upstream's limit).
MAX_ANNOTATION_BYTES = 256 * 1024
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_RULE = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_PREFIX_RULE = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', "
    "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
    "or 'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_MAX_INT32 = 2**31 - 1


def _qualified_name_problems(key: str) -> list[str]:
    """What is wrong with ``key`` as a qualified name (label or annotation key)."""
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash:
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif len(prefix) > 253:
            problems.append("prefix part must be no more than 253 characters")
        elif not _PREFIX.match(prefix):
            problems.append(_PREFIX_RULE)
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _NAME.match(name):
        problems.append(_NAME_RULE)
    if slash and "/" in prefix:
        problems = [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character, with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    return problems


def meta_causes(meta: Any, path: str = "metadata") -> list[Cause]:
    """Labels and annotations of one ObjectMeta (``path``: where it sits)."""
    if not isinstance(meta, dict):
        return []
    causes: list[Cause] = []
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        for key, value in labels.items():
            for problem in _qualified_name_problems(str(key)):
                causes.append(
                    (f"{path}.labels", "FieldValueInvalid", f'Invalid value: "{key}": {problem}')
                )
            text = "" if value is None else str(value)
            if len(text) > 63:
                message = f'Invalid value: "{text}": must be no more than 63 characters'
                causes.append((f"{path}.labels", "FieldValueInvalid", message))
            elif text and not _NAME.match(text):
                causes.append(
                    (
                        f"{path}.labels",
                        "FieldValueInvalid",
                        f'Invalid value: "{text}": {_VALUE_RULE}',
                    )
                )
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        total = 0
        for key, value in annotations.items():
            for problem in _qualified_name_problems(str(key).lower()):
                causes.append(
                    (
                        f"{path}.annotations",
                        "FieldValueInvalid",
                        f'Invalid value: "{key}": {problem}',
                    )
                )
            total += len(str(key)) + len("" if value is None else str(value))
        if total > MAX_ANNOTATION_BYTES:
            causes.append(
                (
                    f"{path}.annotations",
                    "FieldValueTooLong",
                    f"Too long: must have at most {MAX_ANNOTATION_BYTES} bytes",
                )
            )
    return causes


def data_decoding_error(resource: str, obj: dict[str, Any]) -> ApiError | None:
    """The 400 for a Secret whose ``data`` is not base64 (or not strings), else None."""
    if resource != "secrets":
        return None
    for value in (obj.get("data") or {}).values():
        if not isinstance(value, str):
            problem = "json: cannot unmarshal value into Go value of type []uint8"
        else:
            try:
                base64.b64decode(value, validate=True)
                continue
            except (binascii.Error, ValueError):
                problem = f"illegal base64 data at input byte {_bad_byte(value)}"
        return bad_request(f'Secret in version "v1" cannot be handled as a Secret: {problem}')
    return None


def _bad_byte(value: str) -> int:
    """Where base64 decoding stops making sense (as Go's decoder reports it)."""
    alphabet = re.compile(r"[A-Za-z0-9+/]")
    for index, char in enumerate(value):
        if char == "=":
            return index if len(value) % 4 else len(value) - 1
        if not alphabet.match(char):
            return index
    return max(len(value) - len(value) % 4, 0)


def _negative(spec: dict[str, Any], field: str, path: str) -> list[Cause]:
    value = spec.get(field)
    if isinstance(value, int) and value < 0:
        return [
            (
                f"{path}.{field}",
                "FieldValueInvalid",
                f"Invalid value: {value}: must be greater than or equal to 0",
            )
        ]
    return []


def pod_deadline_causes(pod_spec: Any, path: str) -> list[Cause]:
    """A pod's ``activeDeadlineSeconds``: 1 to 2^31-1 seconds."""
    if not isinstance(pod_spec, dict):
        return []
    value = pod_spec.get("activeDeadlineSeconds")
    if isinstance(value, int) and not 1 <= value <= _MAX_INT32:
        return [
            (
                f"{path}.activeDeadlineSeconds",
                "FieldValueInvalid",
                f"Invalid value: {value}: must be between 1 and {_MAX_INT32}, inclusive",
            )
        ]
    return []


def job_causes(job: dict[str, Any]) -> list[Cause]:
    """A Job's spec: counts and deadlines, and what a pod failure policy requires."""
    spec = job.get("spec") or {}
    if not isinstance(spec, dict):
        return []
    causes: list[Cause] = []
    for field in (
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ):
        causes += _negative(spec, field, "spec")
    template = spec.get("template")
    if not isinstance(template, dict):
        return causes  # admission reports the missing template
    causes += meta_causes(template.get("metadata"), "spec.template.metadata")
    pod_spec = template.get("spec")
    causes += pod_deadline_causes(pod_spec, "spec.template.spec")
    if spec.get("podFailurePolicy") is not None:
        restart = (pod_spec or {}).get("restartPolicy") if isinstance(pod_spec, dict) else None
        if restart != "Never":
            causes.append(
                (
                    "spec.template.spec.restartPolicy",
                    "FieldValueInvalid",
                    f'Invalid value: "{restart or ""}": only "Never" is supported when '
                    "podFailurePolicy is specified",
                )
            )
        replacement = spec.get("podReplacementPolicy")
        if replacement is not None and replacement != "Failed":
            causes.append(
                (
                    "spec.podReplacementPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{replacement}": supported values: "Failed"',
                )
            )
    return causes
