"""``/healthz`` and ``/readyz`` on the metrics listener, as a kubelet sees them.

Against localkube with its fault injection: failing lists (500), dropped watches, the
apiserver gone and back, a watch whose handler never returns, an event loop that is
blocked. Readiness follows the apiserver; liveness fails only when something is stuck,
never while the daemon merely reconnects.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest

from tests.inprocess import JsonDict
from tests.ops.inprocess import Cluster, Daemon, daemon_on_cluster, until
from zwmd.daemon.operations import DaemonOperations
from zwmd.kube.informer import Change, Informer

pytestmark = pytest.mark.anyio


async def status(daemon: Daemon, path: str) -> int:
    return (await daemon.probes.get(path)).status_code


async def probe(daemon: Daemon, path: str) -> JsonDict:
    response = await daemon.probes.get(path)
    body: JsonDict = response.json()
    body["status"] = response.status_code
    return body


async def test_probe_listener_serves_probes_and_metrics_only(tmp_path: Path) -> None:
    async with daemon_on_cluster(tmp_path) as daemon:
        assert await status(daemon, "/healthz") == 200
        assert await status(daemon, "/readyz") == 200
        assert "zwmd_workloads" in await daemon.scrape()
        for path in ("/v1/workloads", "/docs", "/openapi.json"):
            assert await status(daemon, path) == 404
        # the API keeps its own probes (the CLI and the adapter use them)
        assert (await daemon.http.get("/readyz")).status_code == 200


async def test_readyz_fails_until_both_watches_listed(tmp_path: Path) -> None:
    cluster = Cluster()
    async with anyio.create_task_group() as tg:
        kube = await cluster.start(tg, "ns-listing")
        # every list of pods fails until the faults are reset: the pods watch cannot list
        kube.faults.fail_next(100_000, status=500, match=("list", "pods"))
        async with daemon_on_cluster(
            tmp_path, cluster=cluster, namespace="ns-listing", wait_ready=False
        ) as daemon:
            await until(lambda: kube.faults.pending_failures < 100_000 - 3)
            ready = await probe(daemon, "/readyz")
            assert ready["status"] == 503
            assert "have not listed" in ready["detail"]
            assert await status(daemon, "/healthz") == 200  # retrying is not stuck

            kube.faults.reset()
            await until(lambda: _is(daemon, "/readyz", 200))
            workload = await daemon.run("exit 0")
            assert workload["state"] == "succeeded"
        tg.cancel_scope.cancel()


async def test_readyz_follows_the_apiserver_and_healthz_does_not(tmp_path: Path) -> None:
    cluster = Cluster()
    namespace = "ns-unreachable"
    async with anyio.create_task_group() as tg:
        await cluster.start(tg, namespace)
        async with daemon_on_cluster(tmp_path, cluster=cluster, namespace=namespace) as daemon:
            assert await status(daemon, "/readyz") == 200

            cluster.stop()
            await until(lambda: _is(daemon, "/readyz", 503))
            assert (await probe(daemon, "/readyz"))["detail"].endswith("unreachable")
            assert await status(daemon, "/healthz") == 200  # reconnecting is not stuck

            await cluster.start(tg, namespace)  # the apiserver is back
            await until(lambda: _is(daemon, "/readyz", 200))
            assert await status(daemon, "/healthz") == 200
            workload = await daemon.run("exit 0")
            assert workload["state"] == "succeeded"
        tg.cancel_scope.cancel()


async def test_dropped_watches_and_server_errors_keep_the_daemon_healthy(tmp_path: Path) -> None:
    async with daemon_on_cluster(tmp_path) as daemon:
        before = daemon.metrics.last_event_age("Job")
        for _ in range(3):
            await until(lambda: _open_watches(daemon) == 2)  # one per kind, never more
            daemon.kube.faults.drop_watches()
        daemon.kube.faults.fail_next(3, status=500, match=("watch", None))
        daemon.kube.faults.drop_watches()
        await until(lambda: daemon.kube.faults.pending_failures == 0)
        await until(lambda: _is(daemon, "/readyz", 200))
        assert await status(daemon, "/healthz") == 200

        workload = await daemon.run("exit 0")  # the watches still deliver
        assert workload["state"] == "succeeded"
        assert daemon.metrics.last_event_age("Job") < before + 60
        text = await daemon.scrape()
        assert _value(text, 'zwmd_watch_restarts_total{cause="error",kind="Job"}') >= 1


async def test_healthz_fails_while_a_watch_is_stuck(tmp_path: Path) -> None:
    async with daemon_on_cluster(tmp_path) as daemon:
        release = anyio.Event()
        daemon.ops.informer.subscribers.append(_Blocking(release))
        submit = await daemon.http.post(
            "/v1/workloads/6a1c1b9e-0000-4000-8000-000000000001/run",
            json={"image": "runner:1", "command": ["sh", "-c", "exit 0"]},
        )
        assert submit.status_code == 202
        await until(lambda: _is(daemon, "/healthz", 503))
        assert "watch is stuck" in (await probe(daemon, "/healthz"))["detail"]

        release.set()  # the handler returns: the watch moves on, the daemon is healthy
        await until(lambda: _is(daemon, "/healthz", 200))


async def test_healthz_cannot_answer_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    async with daemon_on_cluster(tmp_path) as daemon:
        url = str(daemon.probes.base_url.join("/healthz"))
        outcome: list[object] = []

        def kubelet_probe() -> None:  # a probe with the kubelet's kind of timeout
            try:
                outcome.append(httpx.get(url, timeout=0.5).status_code)
            except httpx.TimeoutException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=kubelet_probe)
        thread.start()
        time.sleep(2.0)  # noqa: ASYNC251 - the point: the event loop is blocked
        thread.join()
        assert isinstance(outcome[0], httpx.TimeoutException)
        assert await status(daemon, "/healthz") == 200  # and it answers again after


def test_a_lagging_event_loop_is_unhealthy() -> None:
    ops = DaemonOperations.__new__(DaemonOperations)
    ops.informer = Informer.__new__(Informer)
    ops.informer.watchers = ()
    ops.max_loop_lag = 5.0
    ops.loop_lag = lambda: 7.5
    assert ops.healthy() == (False, "the event loop is 7.5s late")
    ops.loop_lag = lambda: 0.1
    assert ops.healthy() == (True, "ok")


class _Blocking:
    """A subscriber whose handler does not return until released (a stuck watch)."""

    def __init__(self, release: anyio.Event):
        self.release = release

    async def on_listed(self, resource: str) -> None:
        await self.release.wait()

    async def on_changed(self, change: Change) -> None:
        await self.release.wait()


async def _is(daemon: Daemon, path: str, code: int) -> bool:
    try:
        return await status(daemon, path) == code
    except httpx.TransportError:
        return False


def _open_watches(daemon: Daemon) -> int:
    """Watch streams localkube serves (its store keeps them per resource)."""
    return sum(len(streams) for streams in daemon.kube.store._watchers.values())


def _value(exposition: str, series: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in the exposition")
