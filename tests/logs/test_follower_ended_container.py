"""A follower of a container that ended without a log the kubelet serves gives up at once.

Kubernetes answers 400 for the log of a container that never started. While the
container may still start, the follower asks again; once the pod says it has ended,
asking again cannot help, and a follower that kept trying would hold up the workload's
final flush (and every ``/wait`` on it) until the pipeline's time limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from zwmd.kube.client import KubeClient, load_api_client
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.following import ContainerLogFollower
from zwmd.logs.store import LogKey

pytestmark = pytest.mark.anyio

POD = {
    "metadata": {"name": "never-started"},
    "spec": {"restartPolicy": "Never", "containers": [{"name": "runner", "image": "any"}]},
}


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeClient]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet=None, job_controller=False
    ) as localkube:
        localkube.store.create("pods", "default", POD)
        api = await load_api_client(str(localkube.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield KubeClient(api, "default")
        finally:
            await api.close()


async def test_an_ended_container_without_a_log_ends_its_follower(
    kube: KubeClient, tmp_path: Path
) -> None:
    store = FileLogStore(tmp_path)
    key = LogKey("w", 1)
    follower = ContainerLogFollower(
        kube, store, key, "never-started", "runner", "runner", ended=lambda: True
    )
    with anyio.fail_after(10):  # a hang guard: it used to retry forever
        await follower.run()
    assert await store.checkpoint(key) is None  # nothing was invented


async def test_a_container_that_may_still_start_is_asked_again(
    kube: KubeClient, tmp_path: Path
) -> None:
    asked: list[bool] = []

    def ended() -> bool:
        asked.append(True)
        return len(asked) > 2  # it ends after the follower asked twice

    follower = ContainerLogFollower(
        kube,
        FileLogStore(tmp_path),
        LogKey("w", 1),
        "never-started",
        "runner",
        "runner",
        ended=ended,
        retry_delay=0.01,
    )
    with anyio.fail_after(10):
        await follower.run()
    assert len(asked) == 3
