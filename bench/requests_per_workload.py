"""What one workload costs the apiserver, and how many watches 500 active workloads need.

Both figures are measured on localkube with the real daemon (``serve()``, as ``zwmd
serve`` runs it) in this process:

1. **Requests per workload**: ``--runs`` runs of ``python -c "print(42)"`` on the process
   kubelet, one after another; the Kubernetes API requests the daemon made from the
   submission to the end of each (the workload terminal, the logs stored, the TTL set),
   counted by the daemon's ``zwmd_kube_requests_total`` and broken down by verb and
   resource. Watch streams that were already open are not requests of the workload.
2. **Open watches at 500 active workloads**: ``--active`` runs admitted at once
   (``ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS`` = ``--active``), every pod running
   (scripted kubelet), then the watches open on localkube, by resource. Pod log follows
   are streams of ``pods/log``, not watches; their number is printed beside.

    python bench/requests_per_workload.py [--runs 5] [--active 500]
"""

from __future__ import annotations

import argparse
import collections
import functools
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx

from zwmd.daemon.operations import DaemonOperations
from zwmd.daemon.serving import serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.metrics import Metrics
from zwmd.settings import load_settings

NS = "zenml"
SA = "zenml-runner"
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(check: Callable[[], bool], timeout: float) -> None:
    with anyio.fail_after(timeout):
        while True:
            if check():
                return
            await anyio.sleep(0.01)


def kube_requests(metrics: Metrics) -> collections.Counter[str]:
    """``verb resource`` -> requests so far, from the daemon's own exposition."""
    counts: collections.Counter[str] = collections.Counter()
    body, _ = metrics.exposition()
    for line in body.decode().splitlines():
        if not line.startswith("zwmd_kube_requests_total{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
        )
        key = f"{labels['verb'].strip(chr(34))} {labels['resource'].strip(chr(34))}"
        counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return counts


@asynccontextmanager
async def daemon(
    kube: LocalKube, workdir: Path, max_active: int
) -> AsyncIterator[tuple[httpx.AsyncClient, DaemonOperations, Metrics]]:
    kube.store.create("namespaces", None, {"metadata": {"name": NS}})
    kube.store.create("serviceaccounts", NS, {"metadata": {"name": SA}})
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    token = secrets.token_hex(16)
    settings = load_settings(
        {
            f"{K}NAMESPACE": NS,
            f"{K}SERVICE_ACCOUNT": SA,
            "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": str(max_active),
            "ZWMD_API_PORT": str(free_port()),
            "ZWMD_API_TOKEN": token,
            "ZWMD_STATE_DIR": str(workdir),
            "KUBECONFIG": str(kubeconfig),
        }
    )
    config = daemon_config(settings, kubeconfig=str(kubeconfig))
    metrics = Metrics()
    async with anyio.create_task_group() as tg:
        ops = await tg.start(
            functools.partial(serve, metrics=metrics), config, FileLogStore(workdir)
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{config.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as http:
            yield http, ops, metrics
        tg.cancel_scope.cancel()


async def requests_per_workload(runs: int, workdir: Path) -> None:
    async with LocalKube(kubelet="process") as kube, daemon(kube, workdir, 2) as (http, ops, m):
        totals: list[int] = []
        by_call: collections.Counter[str] = collections.Counter()
        for _ in range(runs):
            await anyio.sleep(0.5)  # let the previous workload's stragglers settle
            before = kube_requests(m)
            wid = str(uuid.uuid4())
            body = {"image": "any", "command": [sys.executable, "-c", "print(42)"]}
            assert (await http.post(f"/v1/workloads/{wid}/run", json=body)).status_code == 202
            done = (await http.get(f"/v1/workloads/{wid}/wait", params={"timeout": 60})).json()
            assert done["state"] == "succeeded", done
            job = done["job_name"]
            # the end of the workload: logs stored, TTL set
            await until(
                lambda job=job: (  # type: ignore[misc]
                    kube.store.get("jobs", NS, job)["spec"].get("ttlSecondsAfterFinished")
                    is not None
                ),
                30,
            )
            await anyio.sleep(0.5)
            delta = kube_requests(m) - before
            totals.append(sum(delta.values()))
            by_call += delta
        print(
            f"Kubernetes API requests per workload (submit -> succeeded, logs, TTL), {runs} runs:"
        )
        print(f"  per run: {totals}")
        for call, count in sorted(by_call.items()):
            print(f"    {call:24} {count / runs:5.1f}")
        _ = ops


async def watches_at(active: int, workdir: Path) -> None:
    async with (
        LocalKube(kubelet="scripted") as kube,
        daemon(kube, workdir, active) as (http, ops, m),
    ):
        started = time.monotonic()
        for _ in range(active):
            wid = str(uuid.uuid4())
            response = await http.post(f"/v1/workloads/{wid}/run", json={"image": "any"})
            assert response.status_code == 202
        for _ in range(active):
            pod = await kube.kubelet.wait_for_pod(NS, timeout=60)
            kube.kubelet.set_running(NS, pod)
        await until(lambda: len(ops.list("running")) >= active, 300)
        await anyio.sleep(1.0)
        watches = kube.store.open_watches()
        print(f"{active} workloads running after {time.monotonic() - started:.1f} s:")
        print(f"  open watches on localkube: {sum(watches.values())} {watches}")
        print(
            f"  Jobs: {len(kube.store.list('jobs', NS)[0])}, pods: {len(kube.store.list('pods', NS)[0])}"
        )
        counts = kube_requests(m)
        print(f"  watch requests so far: {counts['watch jobs'] + counts['watch pods']}")
        print(f"  pod log streams opened so far: {counts['get pods/log']}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        await requests_per_workload(args.runs, Path(tmp) / "a")
        await watches_at(args.active, Path(tmp) / "b")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--active", type=int, default=500)
    anyio.run(main, parser.parse_args())
