"""``python -m zwmd.localkube``: the same as ``zwmd localkube``."""

import sys

from zwmd.localkube.cli import run_cli

sys.exit(run_cli())
