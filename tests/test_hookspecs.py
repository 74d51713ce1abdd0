"""Every hookspec is documented and has a test that calls or implements it (datasette's rule)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from zwmd import hookspecs

ROOT = Path(__file__).resolve().parent.parent
TEST_SOURCES = [
    p
    for p in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
    if p.name != "test_hookspecs.py"
]
SPECS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if name.startswith("zwmd_") and callable(fn) and hasattr(fn, "zwmd_spec")
)


def test_there_are_hookspecs() -> None:
    assert {"zwmd_implementations", "zwmd_log_store", "zwmd_prepare_push"} <= set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_is_documented(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert doc, f"{name} has no docstring"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{name}: :param {param}: is not documented"
    firstresult = bool(getattr(fn, "zwmd_spec", {}).get("firstresult"))
    # A firstresult hook says so ("firstresult: the first ... wins"), others do not claim it.
    assert ("firstresult:" in doc) == firstresult, f"{name}: say whether it is firstresult"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_has_an_implementation_test(name: str) -> None:
    called = re.compile(rf"hook\.{name}\(|def {name}\(")
    users = [p for p in TEST_SOURCES if called.search(p.read_text(encoding="utf-8"))]
    assert users, f"no test calls hook.{name}(...) or implements {name}"
