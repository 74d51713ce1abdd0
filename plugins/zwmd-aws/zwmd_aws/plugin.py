"""Hook implementations of the `aws` plugin, discovered through the `zwmd` entry points.

A skeleton for now: it only claims its implementation name.
"""

from __future__ import annotations

IMPLEMENTATION = "aws"
