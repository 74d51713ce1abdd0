"""zwmd.localkube: an in-process Kubernetes API server for tests and local mode.

kubernetes-asyncio and kubectl talk to it, unchanged, over HTTP on 127.0.0.1. It
imports nothing else of zwmd. Start one with ``async with LocalKube() as kube:`` or
``zwmd localkube``.
"""

from zwmd.localkube.cluster import LocalKube
from zwmd.localkube.errors import ApiError
from zwmd.localkube.kubeconfig import ADMIN_TOKEN

#: Request headers that act as the cluster administrator (for raw HTTP clients).
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

__all__ = ["ADMIN_HEADERS", "ADMIN_TOKEN", "ApiError", "LocalKube"]
