"""A kubeconfig pointing at a localkube, accepted by kubernetes-asyncio and kubectl.

Design notes: plain ``http://`` to 127.0.0.1 with a bearer token: the administrator's
(:data:`ADMIN_TOKEN`, in ``system:masters``) unless a service account's token is given. Written as JSON, a subset of YAML that
kubectl and ``config.load_kube_config`` both read. The file is created ``0600``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

CONTEXT = "localkube"
#: The cluster administrator's token (user ``localkube-admin`` in ``system:masters``).
ADMIN_TOKEN = "localkube-admin-token"


def kubeconfig(url: str, *, namespace: str = "default", token: str = ADMIN_TOKEN) -> dict[str, Any]:
    """The kubeconfig document for a localkube at ``url``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | os.PathLike[str], url: str, *, namespace: str = "default", token: str = ADMIN_TOKEN
) -> Path:
    """Write the kubeconfig for ``url`` to ``path`` (parents created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = kubeconfig(url, namespace=namespace, token=token)
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return target
