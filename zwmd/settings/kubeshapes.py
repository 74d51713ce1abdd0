"""Validation of the Kubernetes shapes that operators hand to zwmd as JSON strings.

The seeds' variables carry pieces of a Job spec as JSON (resources, node selector,
tolerations, podFailurePolicy). A mistake there would otherwise surface only when the
API server rejects the first Job, long after start and far from the variable. This
module checks each shape the way the API server does and returns it as plain dicts with
Kubernetes' camelCase keys, ready to put into a Job spec.

Design notes:

- Pure functions over plain data; no import of anything else in zwmd, no I/O. That
  keeps it at the very bottom of the import layers (below :mod:`zwmd.settings`).
- A shape with several mistakes reports all of them: :class:`ShapeError` carries a list
  of faults, each a short phrase such as ``item 0: operator "Equals" is not one of
  Exists, Equal``. The caller adds the variable's name and an example.
- Values in faults are quoted with ``json.dumps`` so empty strings and spaces show.
- Quantities follow ``resource.Quantity``'s grammar (``100m``, ``1.5``, ``400Mi``,
  ``2e3``); they are compared as exact fractions, so ``requests <= limits`` holds
  exactly as the API server checks it.
- Deliberate narrowing: ``FailIndex`` is a known podFailurePolicy action but needs an
  indexed Job with ``backoffLimitPerIndex``, which zwmd never creates, so it is refused
  here with that explanation rather than by the API server at the first run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

__all__ = [
    "ShapeError",
    "check_dns_label",
    "check_dns_subdomain",
    "check_label_value",
    "check_qualified_name",
    "load_json",
    "parse_quantity",
    "quote",
    "validate_node_selector",
    "validate_pod_failure_policy",
    "validate_resources",
    "validate_tolerations",
]


class ShapeError(ValueError):
    """One or more faults found in one value; each fault is a short phrase."""

    def __init__(self, faults: Sequence[str]) -> None:
        self.faults: tuple[str, ...] = tuple(faults)
        super().__init__("; ".join(self.faults))


def quote(value: object) -> str:
    """A value as it should appear in a message: JSON, so that spaces and types show."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def load_json(text: str) -> Any:
    """Parse JSON text, or raise :class:`ShapeError` saying where it breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShapeError(
            [f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]
        ) from None


# --- names ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def check_dns_label(name: str) -> str | None:
    """The fault of a DNS-1123 label (a namespace name), or None."""
    if len(name) > 63:
        return f"{quote(name)} is longer than 63 characters"
    if not _DNS_LABEL.fullmatch(name):
        return f"{quote(name)} must be lower-case letters, digits and '-', starting and ending alphanumeric"
    return None


def check_dns_subdomain(name: str) -> str | None:
    """The fault of a DNS-1123 subdomain (most object names), or None."""
    if len(name) > 253:
        return f"{quote(name)} is longer than 253 characters"
    if not all(_DNS_LABEL.fullmatch(part) for part in name.split(".")):
        return f"{quote(name)} must be lower-case letters, digits, '-' and '.', each part starting and ending alphanumeric"
    return None


def check_qualified_name(key: str) -> str | None:
    """The fault of a label key or resource name (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or check_dns_subdomain(prefix) is not None):
        return (
            f"key {quote(key)} has an invalid prefix (must be a DNS subdomain such as example.com)"
        )
    if not name:
        return f"key {quote(key)} has an empty name"
    if len(name) > 63 or not _QUALIFIED_NAME_PART.fullmatch(name):
        return f"key {quote(key)} must be at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


def check_label_value(value: str) -> str | None:
    """The fault of a label value (empty is allowed), or None."""
    if value and (len(value) > 63 or not _QUALIFIED_NAME_PART.fullmatch(value)):
        return f"value {quote(value)} must be at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


# --- quantities ------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?\d+)|(?P<decimal>m|k|M|G|T|P|E)?)"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity such as ``100m``, ``400Mi`` or ``2e3``."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{quote(text)} is not a Kubernetes quantity (a number with an optional suffix: "
            "m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3)"
        )
    number = Fraction(match["number"])
    if match["binary"]:
        return number * _BINARY[match["binary"]]
    if match["exponent"] is not None:
        return number * Fraction(10) ** int(match["exponent"])
    return number * _DECIMAL[match["decimal"] or ""]


def _quantity_text(value: object) -> str | None:
    """A quantity as the string Kubernetes stores; JSON numbers are accepted too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value != int(value) else str(int(value))
    if isinstance(value, str):
        return value
    return None


# --- resources ------------------------------------------------------------------------


def validate_resources(data: object) -> dict[str, dict[str, str]]:
    """Check ``{"requests": {...}, "limits": {...}}``; return it with quantities as strings."""
    if not isinstance(data, dict):
        raise ShapeError([f"must be a JSON object with requests and/or limits, not {quote(data)}"])
    faults: list[str] = []
    parsed: dict[str, dict[str, str]] = {}
    values: dict[str, dict[str, Fraction]] = {}
    for section, entries in data.items():
        if section not in ("requests", "limits"):
            faults.append(f"unknown key {quote(section)} (only requests and limits)")
            continue
        if not isinstance(entries, dict):
            faults.append(f"{section} must be an object of resource name to quantity")
            continue
        parsed[section], values[section] = {}, {}
        for name, raw in entries.items():
            fault = check_qualified_name(str(name))
            if fault is not None:
                faults.append(f"{section}: resource {fault}")
                continue
            text = _quantity_text(raw)
            if text is None:
                faults.append(f"{section}.{name}: {quote(raw)} is not a quantity")
                continue
            try:
                amount = parse_quantity(text)
            except ValueError as exc:
                faults.append(f"{section}.{name}: {exc}")
                continue
            if amount < 0:
                faults.append(f"{section}.{name}: {quote(text)} must not be negative")
                continue
            parsed[section][name] = text
            values[section][name] = amount
    for name, request in values.get("requests", {}).items():
        limit = values.get("limits", {}).get(name)
        if limit is not None and request > limit:
            faults.append(
                f"requests.{name} {quote(parsed['requests'][name])} is more than "
                f"limits.{name} {quote(parsed['limits'][name])}"
            )
    if faults:
        raise ShapeError(faults)
    return {section: entries for section, entries in parsed.items() if entries}


# --- node selector ----------------------------------------------------------------------


def validate_node_selector(data: object) -> dict[str, str]:
    """Check a node selector: an object of label key to label value (both strings)."""
    if not isinstance(data, dict):
        raise ShapeError([f"must be a JSON object of label key to value, not {quote(data)}"])
    faults: list[str] = []
    for key, value in data.items():
        if not isinstance(value, str):
            faults.append(f"key {quote(key)}: value {quote(value)} must be a string")
            continue
        fault = check_qualified_name(key) or check_label_value(value)
        if fault is not None:
            faults.append(fault)
    if faults:
        raise ShapeError(faults)
    return dict(data)


# --- tolerations ------------------------------------------------------------------------

_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_TOLERATION_FIELDS = ("key", "operator", "value", "effect", "tolerationSeconds")


def _toleration_faults(item: object) -> list[str]:
    if not isinstance(item, dict):
        return [f"{quote(item)} is not an object"]
    faults = [
        f"unknown field {quote(name)} (known: {', '.join(_TOLERATION_FIELDS)})"
        for name in item
        if name not in _TOLERATION_FIELDS
    ]
    for name in ("key", "operator", "value", "effect"):
        if name in item and not isinstance(item[name], str):
            faults.append(f"{name} {quote(item[name])} must be a string")
    if faults:
        return faults
    key, value = item.get("key", ""), item.get("value", "")
    operator, effect = item.get("operator", "Equal"), item.get("effect", "")
    if key:
        fault = check_qualified_name(key)
        if fault is not None:
            faults.append(fault)
    if operator not in _OPERATORS:
        faults.append(f"operator {quote(operator)} is not one of {', '.join(_OPERATORS)}")
    elif operator == "Exists" and value:
        faults.append(f'operator "Exists" must not have a value (got {quote(value)})')
    elif operator == "Equal":
        if not key:
            faults.append('an empty key needs operator "Exists" (it matches every taint)')
        fault = check_label_value(value)
        if fault is not None:
            faults.append(fault)
    if effect and effect not in _EFFECTS:
        faults.append(f"effect {quote(effect)} is not one of {', '.join(_EFFECTS)}")
    if "tolerationSeconds" in item:
        seconds = item["tolerationSeconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            faults.append(f"tolerationSeconds {quote(seconds)} must be a whole number")
        elif effect != "NoExecute":
            faults.append('tolerationSeconds is only allowed with effect "NoExecute"')
    return faults


def validate_tolerations(data: object) -> list[dict[str, object]]:
    """Check a list of tolerations with the API server's rules; return copies."""
    if not isinstance(data, list):
        raise ShapeError([f"must be a JSON list of toleration objects, not {quote(data)}"])
    faults = [
        f"item {index}: {fault}"
        for index, item in enumerate(data)
        for fault in _toleration_faults(item)
    ]
    if faults:
        raise ShapeError(faults)
    return [dict(item) for item in data]


# --- podFailurePolicy -------------------------------------------------------------------

_ACTIONS = ("FailJob", "Ignore", "Count", "FailIndex")
_EXIT_CODE_OPERATORS = ("In", "NotIn")
_CONDITION_STATUSES = ("True", "False", "Unknown")


def _exit_codes_faults(spec: object) -> tuple[list[str], dict[str, object]]:
    if not isinstance(spec, dict):
        return [f"onExitCodes {quote(spec)} is not an object"], {}
    faults = [
        f"onExitCodes: unknown field {quote(name)}"
        for name in spec
        if name not in ("containerName", "operator", "values")
    ]
    operator, values = spec.get("operator"), spec.get("values")
    if operator not in _EXIT_CODE_OPERATORS:
        faults.append(
            f"onExitCodes.operator {quote(operator)} is not one of {', '.join(_EXIT_CODE_OPERATORS)}"
        )
    if not isinstance(values, list) or not values:
        faults.append("onExitCodes.values must be a non-empty list of exit codes")
        return faults, {}
    if len(values) > 255:
        faults.append("onExitCodes.values has more than 255 items")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        faults.append(f"onExitCodes.values {quote(values)} must all be whole numbers")
        return faults, {}
    if len(set(values)) != len(values):
        faults.append(f"onExitCodes.values {quote(values)} has duplicates")
    if operator == "In" and 0 in values:
        faults.append('onExitCodes.values must not contain 0 with operator "In"')
    if "containerName" in spec:
        name = spec["containerName"]
        fault = check_dns_label(name) if isinstance(name, str) else f"{quote(name)} is not a string"
        if fault is not None:
            faults.append(f"onExitCodes.containerName: {fault}")
    return faults, {**spec, "values": sorted(values)}


def _pod_conditions_faults(spec: object) -> tuple[list[str], list[dict[str, str]]]:
    if not isinstance(spec, list) or not spec:
        return ["onPodConditions must be a non-empty list of {type, status}"], []
    faults: list[str] = []
    patterns: list[dict[str, str]] = []
    for index, pattern in enumerate(spec):
        where = f"onPodConditions[{index}]"
        if not isinstance(pattern, dict):
            faults.append(f"{where} {quote(pattern)} is not an object")
            continue
        faults += [
            f"{where}: unknown field {quote(name)}"
            for name in pattern
            if name not in ("type", "status")
        ]
        kind, status = pattern.get("type"), pattern.get("status", "True")
        if not isinstance(kind, str) or not kind:
            faults.append(f"{where}.type is required, such as DisruptionTarget")
        elif (fault := check_qualified_name(kind)) is not None:
            faults.append(f"{where}.type: {fault}")
        if status not in _CONDITION_STATUSES:
            faults.append(
                f"{where}.status {quote(status)} is not one of {', '.join(_CONDITION_STATUSES)}"
            )
        patterns.append({"type": str(kind), "status": str(status)})
    return faults, patterns


def _rule_faults(rule: object) -> tuple[list[str], dict[str, object]]:
    if not isinstance(rule, dict):
        return [f"{quote(rule)} is not an object"], {}
    faults = [
        f"unknown field {quote(name)}"
        for name in rule
        if name not in ("action", "onExitCodes", "onPodConditions")
    ]
    action = rule.get("action")
    if action not in _ACTIONS:
        faults.append(f"action {quote(action)} is not one of {', '.join(_ACTIONS)}")
    elif action == "FailIndex":
        faults.append(
            'action "FailIndex" needs an indexed Job with backoffLimitPerIndex, '
            "which zwmd does not create; use FailJob"
        )
    has_codes, has_conditions = "onExitCodes" in rule, "onPodConditions" in rule
    if has_codes == has_conditions:
        faults.append("needs exactly one of onExitCodes and onPodConditions")
        return faults, {}
    normalised: dict[str, object] = {"action": action}
    if has_codes:
        more, codes = _exit_codes_faults(rule["onExitCodes"])
        faults += more
        normalised["onExitCodes"] = codes
    else:
        more_conditions, patterns = _pod_conditions_faults(rule["onPodConditions"])
        faults += more_conditions
        normalised["onPodConditions"] = patterns
    return faults, normalised


def validate_pod_failure_policy(data: object) -> dict[str, object]:
    """Check a batch/v1 podFailurePolicy ``{"rules": [...]}``; exit codes come back sorted."""
    if not isinstance(data, dict):
        raise ShapeError([f'must be a JSON object {{"rules": [...]}}, not {quote(data)}'])
    faults = [f"unknown field {quote(name)} (only rules)" for name in data if name != "rules"]
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ShapeError([*faults, "rules must be a non-empty list"])
    if len(rules) > 20:
        faults.append(f"has {len(rules)} rules; Kubernetes allows at most 20")
    normalised: list[dict[str, object]] = []
    for index, rule in enumerate(rules):
        rule_faults, rule_spec = _rule_faults(rule)
        faults += [f"rule {index}: {fault}" for fault in rule_faults]
        normalised.append(rule_spec)
    if faults:
        raise ShapeError(faults)
    return {"rules": normalised}
