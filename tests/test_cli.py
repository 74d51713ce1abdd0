"""The command line parses and reports its version."""

import subprocess
import sys

from zwmd import __version__


def test_version_is_printed() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zwmd", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"zwmd {__version__}"
