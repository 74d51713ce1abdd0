"""Label and field selectors: parse a query-string selector once into a predicate.

Design notes:

* The grammar is the apiserver's: comma-separated requirements, all of which must hold.
  Label requirements are ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``,
  ``k`` (exists) and ``!k`` (does not exist). ``!=`` and ``notin`` also match objects
  without the label, as on a real cluster. Field requirements are ``f=v``, ``f==v``,
  ``f!=v`` over a small per-resource set of fields; anything else is a 400.
* Parsed selectors are cached by their text: a watcher or a controller asks with the
  same selector again and again, and matching then costs only dict lookups.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from zwmd.localkube.errors import ApiError, bad_request

Predicate = Callable[[dict[str, Any]], bool]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_EQUALITY_RE = re.compile(r"^([^=!\s]+)\s*(==|=|!=)\s*(.*)$")

_COMMON_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
}
_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "pods": {
        "status.phase": ("status", "phase"),
        "status.podIP": ("status", "podIP"),
        "spec.nodeName": ("spec", "nodeName"),
        "spec.restartPolicy": ("spec", "restartPolicy"),
        "spec.serviceAccountName": ("spec", "serviceAccountName"),
    },
    "events": {
        "involvedObject.kind": ("involvedObject", "kind"),
        "involvedObject.name": ("involvedObject", "name"),
        "involvedObject.namespace": ("involvedObject", "namespace"),
        "involvedObject.uid": ("involvedObject", "uid"),
        "involvedObject.apiVersion": ("involvedObject", "apiVersion"),
        "reason": ("reason",),
        "type": ("type",),
    },
    "secrets": {"type": ("type",)},
    "namespaces": {"status.phase": ("status", "phase")},
    "jobs": {"status.successful": ("status", "successful")},
}


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise bad_request(f"unable to parse requirement: unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise bad_request(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append("".join(current).strip())
    return parts


def _check_key(key: str, selector: str) -> None:
    if not _KEY_RE.match(key):
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}"
        )


def _check_value(value: str, selector: str) -> None:
    if not _VALUE_RE.match(value):
        raise bad_request(
            f"unable to parse requirement: invalid label value {value!r} in selector {selector!r}"
        )


def _label_requirement(part: str, selector: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET_RE.match(part):
        key, operator, raw_values = match.groups()
        _check_key(key, selector)
        values = frozenset(v.strip() for v in raw_values.split(","))
        for value in values:
            _check_value(value, selector)
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if part.startswith("!"):
        key = part[1:].strip()
        _check_key(key, selector)
        return lambda labels: key not in labels
    if match := _EQUALITY_RE.match(part):
        key, operator, value = match.group(1), match.group(2), match.group(3).strip()
        _check_key(key, selector)
        _check_value(value, selector)
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    _check_key(part, selector)
    return lambda labels: part in labels


@functools.lru_cache(maxsize=256)
def label_predicate(selector: str) -> Predicate | None:
    """A predicate over whole objects, or None when the selector selects everything."""
    if not selector.strip():
        return None
    requirements = []
    for part in _split_top_level(selector):
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {selector!r}")
        requirements.append(_label_requirement(part, selector))

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)

    return matches


def _field_value(obj: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = obj
    for step in path:
        if not isinstance(value, dict):
            return ""
        value = value.get(step)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@functools.lru_cache(maxsize=256)
def field_predicate(resource: str, selector: str) -> Predicate | None:
    """A predicate for a field selector on ``resource``, or None when it selects everything."""
    if not selector.strip():
        return None
    known = {**_COMMON_FIELDS, **_FIELDS.get(resource, {})}
    requirements: list[tuple[tuple[str, ...], bool, str]] = []
    for part in _split_top_level(selector):
        match = _EQUALITY_RE.match(part)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, operator, value = match.group(1), match.group(2), match.group(3).strip()
        if field not in known:
            raise ApiError(
                400,
                "BadRequest",
                f'Unable to find "{resource}" that match label selector "", field selector '
                f'"{selector}": "{field}" is not a known field selector: only '
                f'"{", ".join(sorted(known))}"',
            )
        requirements.append((known[field], operator == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        for path, negate, value in requirements:
            if (_field_value(obj, path) == value) == negate:
                return False
        return True

    return matches


def combined_predicate(
    resource: str, label_selector: str | None, field_selector: str | None
) -> Predicate | None:
    """One predicate for both selectors (None when neither restricts anything)."""
    labels = label_predicate(label_selector) if label_selector else None
    fields = field_predicate(resource, field_selector) if field_selector else None
    if labels and fields:
        return lambda obj: labels(obj) and fields(obj)
    return labels or fields
