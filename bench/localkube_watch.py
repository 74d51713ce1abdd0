"""How many watch events per second localkube sustains to one client.

localkube runs as its own process (``zwmd localkube``), as it would beside a daemon
under test. The benchmark creates N Jobs (~2.5 KB each, like zwmd's runner Jobs), then
times a watch from resourceVersion "0" through kubernetes-asyncio's own transport with
``_preload_content=False``, reading raw lines (and, separately, parsing each with
orjson, which is what a consumer does). Prints the median of several runs.

    python bench/localkube_watch.py [--objects 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from kubernetes_asyncio import client, config


def job_body(index: int) -> dict[str, Any]:
    environment = [{"name": f"VAR_{n}", "value": "x" * 40} for n in range(20)]
    return {
        "metadata": {
            "name": f"bench-{index:06d}",
            "labels": {"zwmd.zenml.io/workload-id": f"w{index}", "zwmd.zenml.io/kind": "runner"},
            "annotations": {"zwmd.zenml.io/state": "running", "zwmd.zenml.io/reason": ""},
        },
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "runner",
                            "image": "zenml-runner:0123456789abcdef",
                            "command": ["python", "-m", "zenml.entrypoints.entrypoint"],
                            "args": ["--snapshot_id", "s" * 36, "--run_id", "r" * 36],
                            "env": environment,
                        }
                    ],
                }
            },
        },
    }


async def create_objects(batch: Any, count: int) -> None:
    semaphore = asyncio.Semaphore(64)

    async def create(index: int) -> None:
        async with semaphore:
            await batch.create_namespaced_job("default", job_body(index), _preload_content=False)

    await asyncio.gather(*(create(i) for i in range(count)))


async def timed_watch(batch: Any, count: int, parse: bool) -> float:
    started = time.perf_counter()
    response = await batch.list_namespaced_job(
        "default", watch=True, resource_version="0", _preload_content=False
    )
    readline = response.content.readline
    for _ in range(count):
        line = await readline()
        if parse:
            orjson.loads(line)
    elapsed = time.perf_counter() - started
    response.release()
    return count / elapsed


async def measure(kubeconfig: Path, objects: int, runs: int) -> None:
    api = await config.new_client_from_config(config_file=str(kubeconfig))
    async with api:
        batch = client.BatchV1Api(api)
        started = time.perf_counter()
        await create_objects(batch, objects)
        print(f"created {objects} Jobs in {time.perf_counter() - started:.1f} s")
        for parse in (False, True):
            rates = [await timed_watch(batch, objects, parse) for _ in range(runs)]
            label = "raw lines + orjson.loads" if parse else "raw lines"
            print(
                f"watch from rv 0, {label}: median {statistics.median(rates):,.0f} events/s"
                f" (runs: {', '.join(f'{r:,.0f}' for r in rates)})"
            )


def main(objects: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        kubeconfig = Path(scratch) / "kubeconfig"
        command = [sys.executable, "-m", "zwmd.localkube", "--kubelet", "none"]
        command += ["--no-job-controller", "--kubeconfig", str(kubeconfig)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            for _ in range(3):  # URL, port, kubeconfig: the server is listening
                server.stdout.readline()
            asyncio.run(measure(kubeconfig, objects, runs))
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.objects, arguments.runs)
