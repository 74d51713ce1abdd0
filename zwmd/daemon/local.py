"""Local mode: the daemon and an embedded localkube in one process.

``zwmd serve --local`` is what a newcomer runs first and what ZenML OSS users run on one
machine. It is the production code path unchanged; only the Kubernetes API is
:class:`zwmd.localkube.LocalKube` on a free loopback port, whose kubelet runs each pod's
command as a host process (the image is ignored). The namespace and the runner service
account are created in it, so no other set-up is needed. Its Job controller waits
before replacing a failed pod as a cluster's does (10 s, doubling up to 6 min), not at
the fast scale ``LocalKube()`` uses in tests: with ``JOB_BACKOFF_LIMIT`` above 0, a
retried run is paced here as it will be in production.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from zwmd.localkube import ApiError, LocalKube
from zwmd.localkube.podbackoff import UPSTREAM_SCALE

#: where, in ``ZWMD_STATE_DIR``, the running local daemon writes its cluster's kubeconfig
LOCAL_KUBECONFIG = "localkube.kubeconfig"


@contextlib.asynccontextmanager
async def local_cluster(
    state_dir: Path, namespace: str, service_account: str
) -> AsyncIterator[Path]:
    """Run localkube for the duration; yields the kubeconfig that reaches it."""
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at start-up
    kube = LocalKube(host="127.0.0.1", port=0, kubelet="process", pod_backoff_scale=UPSTREAM_SCALE)
    async with anyio.create_task_group() as tg:
        await tg.start(kube.serve)
        for resource, ns, obj in (
            ("namespaces", None, {"metadata": {"name": namespace}}),
            ("serviceaccounts", namespace, {"metadata": {"name": service_account}}),
        ):
            try:
                kube.store.create(resource, ns, obj)
            except ApiError as exc:
                if exc.code != 409:
                    raise
        yield kube.write_kubeconfig(state_dir / LOCAL_KUBECONFIG)
        tg.cancel_scope.cancel()
