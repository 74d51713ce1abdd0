"""Text for people: the effective configuration table and the list of problems.

``zwmd config`` prints :func:`format_configuration` (exit 0) or :func:`format_problems`
(exit 2); ``zwmd serve`` prints the latter before touching the cluster. Secrets are
already masked by :meth:`~zwmd.settings.Settings.describe`; nothing here sees them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from zwmd.settings.envvalues import BucketLocation
from zwmd.settings.resolving import SettingsError

__all__ = ["format_configuration", "format_problems", "format_value"]


def format_problems(err: SettingsError) -> str:
    """A header and one indented line per problem: variable, fault, example."""
    count = len(err.problems)
    header = f"zwmd: invalid configuration ({count} problem{'s' if count != 1 else ''}):"
    return "\n".join([header, *(f"  {problem}" for problem in err.problems)])


def format_configuration(rows: Sequence[tuple[str, str, str]], notes: Sequence[str] = ()) -> str:
    """``describe()`` rows as aligned columns, then the notes."""
    width = max((len(variable) for variable, _, _ in rows), default=0)
    value_width = min(max((len(value) for _, value, _ in rows), default=0), 60)
    lines = [
        f"{variable:<{width}}  {value:<{value_width}}  [{source}]"
        for variable, value, source in rows
    ]
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def format_value(value: object) -> str:
    """A setting's value as ``zwmd config`` shows it (JSON for shapes and lists)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, BucketLocation):
        return value.url
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, tuple) and all(isinstance(item, Path) for item in value):
        return os.pathsep.join(str(item) for item in value) or "(not set)"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)
