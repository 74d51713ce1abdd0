"""zwmd.localkube: an in-process Kubernetes API server for tests and local mode.

kubernetes-asyncio and kubectl talk to it, unchanged, over HTTP on 127.0.0.1. It
imports nothing else of zwmd. Start one with ``async with LocalKube() as kube:`` or
``zwmd localkube``.
"""

from zwmd.localkube.cluster import LocalKube
from zwmd.localkube.errors import ApiError

__all__ = ["ApiError", "LocalKube"]
