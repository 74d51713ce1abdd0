"""Long-lived streams never starve short calls of connections.

A daemon with 500 running workloads holds 500 pod log follows open. They go through a
connection pool of their own: on the short calls' pool they would take every
connection, and every Job patch would wait until it timed out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from zwmd.kube.client import KubeClient, WatchStream, load_api_client
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

FOLLOWS = 6


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeClient]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="scripted", job_controller=False
    ) as localkube:
        for n in range(FOLLOWS):
            localkube.store.create(
                "pods",
                "default",
                {
                    "metadata": {"name": f"quiet-{n}"},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            )
            localkube.kubelet.set_running("default", f"quiet-{n}")
        kubeconfig = str(localkube.write_kubeconfig(tmp_path / "kubeconfig"))
        short = await load_api_client(kubeconfig, max_connections=2)
        streams = await load_api_client(kubeconfig, max_connections=0)
        try:
            yield KubeClient(short, "default", stream_api=streams, request_timeout=5)
        finally:
            await short.close()
            await streams.close()


async def test_short_calls_get_through_while_many_logs_are_followed(kube: KubeClient) -> None:
    open_streams: list[WatchStream] = []
    try:
        with anyio.fail_after(10):
            for n in range(FOLLOWS):  # more follows than the short calls' pool has room for
                open_streams.append(await kube.pod_log(f"quiet-{n}", follow=True))
            pod = await kube.get("pods", "quiet-0")
            await kube.patch("pods", "quiet-0", {"metadata": {"labels": {"seen": "yes"}}})
        assert pod["metadata"]["name"] == "quiet-0"
        assert (await kube.get("pods", "quiet-0"))["metadata"]["labels"] == {"seen": "yes"}
    finally:
        for stream in open_streams:
            await stream.__aexit__(None, None, None)
