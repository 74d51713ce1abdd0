"""Every Kubernetes call is bounded in time, and a stall is told to the readiness probe.

Against localkube's ``stall`` fault (old connections stop moving bytes, nothing closes,
new connections work): a short call on a stalled kept-alive connection fails after the
client's request timeout, and a watch or pod log that moves no byte fails after its
inactivity timeout instead of hanging. What :class:`Connectivity` then reports is what
``/readyz`` shows: a trouble until a request is answered again, and nothing for a log
that is merely quiet.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from zwmd.kube.client import KubeClient, KubeError, StreamStalled, load_api_client
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[LocalKube, KubeClient]]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="scripted", job_controller=False
    ) as localkube:
        localkube.store.create(
            "pods",
            "default",
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        )
        localkube.kubelet.set_running("default", "p")
        kubeconfig = str(localkube.write_kubeconfig(tmp_path / "kubeconfig"))
        short = await load_api_client(kubeconfig)
        streams = await load_api_client(kubeconfig, max_connections=0)
        try:
            yield (
                localkube,
                KubeClient(short, "default", stream_api=streams, request_timeout=TIMEOUT),
            )
        finally:
            await short.close()
            await streams.close()


async def test_a_short_call_on_a_stalled_connection_times_out_then_recovers(
    cluster: tuple[LocalKube, KubeClient],
) -> None:
    localkube, kube = cluster
    await kube.get("pods", "p")  # its connection stays in the pool, kept alive
    localkube.faults.stall()
    started = time.monotonic()
    with pytest.raises(KubeError) as failed, anyio.fail_after(10 * TIMEOUT):
        await kube.get("pods", "p")
    assert failed.value.code == 0
    assert "timed out" in failed.value.message
    assert time.monotonic() - started < 5 * TIMEOUT
    problem = kube.connectivity.problem()
    assert problem is not None
    assert "got no answer" in problem
    # the timed-out connection is closed; the next call opens a new one, which works
    assert (await kube.get("pods", "p"))["metadata"]["name"] == "p"
    assert kube.connectivity.problem() is None


async def test_a_stalled_watch_is_given_up_and_reported_until_reopened(
    cluster: tuple[LocalKube, KubeClient],
) -> None:
    localkube, kube = cluster
    _, version = await kube.list("pods")
    stream = await kube.watch("pods", resource_version=version, inactivity_timeout=TIMEOUT)
    localkube.faults.stall(match=("watch", "pods"))
    localkube.kubelet.succeed("default", "p")  # an event that is held back
    async with stream:
        with pytest.raises(StreamStalled), anyio.fail_after(10 * TIMEOUT):
            async for _ in stream.lines():
                pass
    problem = kube.connectivity.problem()
    assert problem is not None
    assert "watch pods stream stalled" in problem
    reopened = await kube.watch("pods", resource_version=version, inactivity_timeout=5.0)
    async with reopened:
        assert kube.connectivity.problem() is None
        with anyio.fail_after(5):
            line = await reopened.lines().__anext__()
        assert b'"MODIFIED"' in line  # what the stalled stream held back comes on the new one


async def test_a_quiet_log_is_renewed_without_a_word_to_readiness(
    cluster: tuple[LocalKube, KubeClient],
) -> None:
    _, kube = cluster
    stream = await kube.pod_log("p", follow=True, inactivity_timeout=TIMEOUT)
    async with stream:
        with pytest.raises(StreamStalled), anyio.fail_after(10 * TIMEOUT):
            async for _ in stream.chunks():
                pass
    assert kube.connectivity.problem() is None  # a container may print nothing for hours


async def test_a_log_whose_answer_never_comes_is_reported(
    cluster: tuple[LocalKube, KubeClient],
) -> None:
    localkube, kube = cluster
    localkube.faults.stall(everything=True)  # new connections get no answer either
    with pytest.raises(StreamStalled), anyio.fail_after(10 * TIMEOUT):
        await kube.pod_log("p", follow=True, inactivity_timeout=TIMEOUT)
    problem = kube.connectivity.problem()
    assert problem is not None
    assert "log of pod p" in problem
    localkube.faults.end_stall()
    stream = await kube.pod_log("p", follow=True, inactivity_timeout=TIMEOUT)
    async with stream:
        assert kube.connectivity.problem() is None
