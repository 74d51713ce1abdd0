"""Hook implementations of the `gcp` plugin, discovered through the `zwmd` entry points.

A skeleton for now: it only claims its implementation name.
"""

from __future__ import annotations

IMPLEMENTATION = "gcp"
