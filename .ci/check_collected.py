"""Fail when a test file on disk is not collected by the README's test command.

pytest skips some folders silently (its default ``norecursedirs`` holds ``build``, for
one), so a whole folder of tests can stop running without anyone noticing. This compares
every ``test_*.py`` under the configured test paths with what ``pytest --collect-only``
collects (every marker included), and names each file that is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOTS = ("tests", "plugins")
SKIP = (".venv", "build/lib", "node_modules")


def on_disk() -> set[str]:
    found = set()
    for root in ROOTS:
        for path in Path(root).rglob("test_*.py"):
            text = path.as_posix()
            if not any(part in text for part in SKIP):
                found.add(text)
    return found


def collected() -> set[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "zenml or not zenml",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 5):
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"pytest --collect-only failed with exit code {result.returncode}")
    return {line.split("::", 1)[0] for line in result.stdout.splitlines() if "::" in line}


def main() -> int:
    missing = sorted(on_disk() - collected())
    for path in missing:
        print(f"not collected: {path}", file=sys.stderr)
    if missing:
        print(f"{len(missing)} test file(s) on disk are not collected", file=sys.stderr)
        return 1
    print(f"every test file on disk is collected ({len(on_disk())} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
