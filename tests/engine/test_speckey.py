"""The key of the spec hash: created once per namespace, shared, kept, never replaced.

Against localkube's API through the daemon's own Kubernetes client.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from zwmd.engine.speckey import SECRET_NAME, SpecKey, SpecKeyError
from zwmd.kube.client import KubeClient, load_api_client
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[LocalKube, KubeClient]]:
    async with LocalKube(kubernetes_version=KUBERNETES_VERSION, kubelet="scripted") as localkube:
        api = await load_api_client(str(localkube.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield localkube, KubeClient(api, "default")
        finally:
            await api.close()


async def test_the_key_is_created_once_and_shared_by_every_daemon_of_the_namespace(
    kube: tuple[LocalKube, KubeClient],
) -> None:
    localkube, client = kube
    keys: list[bytes] = []

    async def one_daemon() -> None:
        keys.append(await SpecKey(client).get())

    async with anyio.create_task_group() as tg:  # two daemons starting at once
        tg.start_soon(one_daemon)
        tg.start_soon(one_daemon)
    stored = localkube.store.get("secrets", "default", SECRET_NAME)
    assert keys == [base64.b64decode(stored["data"]["key"])] * 2
    assert len(keys[0]) == 32
    assert await SpecKey(client).get() == keys[0]  # a restarted daemon reads the same


async def test_a_secret_without_a_usable_key_is_an_error_naming_it_and_left_alone(
    kube: tuple[LocalKube, KubeClient],
) -> None:
    localkube, client = kube
    broken = {
        "metadata": {"name": SECRET_NAME},
        "data": {"key": base64.b64encode(b"short").decode()},
    }
    localkube.store.create("secrets", "default", broken)
    with pytest.raises(SpecKeyError, match=SECRET_NAME):
        await SpecKey(client).get()
    stored = localkube.store.get("secrets", "default", SECRET_NAME)
    assert stored["data"] == broken["data"]
