"""Time from ``build_and_push_image`` to its return when the image already exists.

ZenML calls ``build_and_push_image`` on every run; in the build mode the common case is
a tag that is already in the registry. This measures that path end to end, as ZenML
sees it: the adapter (``zwmd.zenml.WorkloadManager``, synchronous, in this thread) →
HTTP → the daemon (``serve()`` on a localkube, in a background thread) → credentials
(a docker ``config.json``) → ``HEAD /v2/<repo>/manifests/<tag>`` against Debian's
``docker-registry`` with htpasswd Basic auth, all on 127.0.0.1. Each call uses a new
workload id. The figure is the median (and p90) of ``--calls`` calls after a warm-up.

    python bench/build_cache_hit.py [--calls 100] [--socket]

``--socket`` puts the daemon's API on a Unix socket (the sidecar set-up with a shared
volume) instead of TCP on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import anyio.to_thread

from tests.daemon_process import free_port
from tests.images.registries import push_image, start_registry
from zwmd.apiclient import Client, ClientConfig
from zwmd.daemon.serving import serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.settings import load_settings
from zwmd.zenml import WorkloadManager

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"


def measure(adapter: WorkloadManager, expected: str, calls: int, warmup: int) -> list[float]:
    """Call ``build_and_push_image`` as ZenML does (a worker thread); seconds per call."""
    took = []
    for index in range(warmup + calls):
        start = time.perf_counter()
        image = adapter.build_and_push_image(
            workload_id=uuid.uuid4(),
            workload_type="snapshot",
            dockerfile="FROM python:3.11-slim\n",
            image_name="zenml-runner:cached",
        )
        elapsed = time.perf_counter() - start
        assert image == expected, image
        if index >= warmup:
            took.append(elapsed)
    return took


async def bench(args: argparse.Namespace, work: Path) -> list[float]:
    with start_registry(work / "registry", "basic") as registry:
        push_image(registry, "team/zenml-runner", "cached")
        token = secrets.token_hex(16)
        env = {
            f"{K}NAMESPACE": "default",
            f"{K}SERVICE_ACCOUNT": "default",
            f"{K}BUILD_RUNNER_IMAGE": "true",
            f"{K}DOCKER_REGISTRY": f"{registry.host}/team",
            "ZWMD_INSECURE_REGISTRIES": registry.host,
            "ZWMD_REGISTRY_CONFIG": str(registry.docker_config(work / "config.json")),
            "ZWMD_API_HOST": "127.0.0.1",
            "ZWMD_API_PORT": str(free_port()),
            "ZWMD_API_TOKEN": token,
            "ZWMD_STATE_DIR": str(work / "state"),
        }
        if args.socket:
            env["ZWMD_API_SOCKET"] = str(work / "api.sock")
        async with LocalKube(kubelet="scripted") as kube:
            kubeconfig = kube.write_kubeconfig(work / "kubeconfig")
            settings = load_settings({**env, "KUBECONFIG": str(kubeconfig)})
            config = daemon_config(settings, kubeconfig=str(kubeconfig))
            async with anyio.create_task_group() as tg:
                await tg.start(serve, config, FileLogStore(work / "state"))
                if args.socket:
                    client_config = ClientConfig(socket=str(work / "api.sock"))
                else:
                    url = f"http://127.0.0.1:{config.api_port}"
                    client_config = ClientConfig(url=url, token=token)
                with Client(client_config) as client:
                    expected = f"{registry.host}/team/zenml-runner:cached"
                    took = await anyio.to_thread.run_sync(
                        measure, WorkloadManager(client), expected, args.calls, args.warmup
                    )
                tg.cancel_scope.cancel()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--socket", action="store_true", help="API on a Unix socket")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zwmd-bench-"))
    took = anyio.run(bench, args, work)
    took.sort()
    where = "unix socket" if args.socket else "TCP 127.0.0.1"
    print(
        f"build_and_push_image cache hit over {where}: median {statistics.median(took) * 1000:.2f} ms, "
        f"p90 {took[int(len(took) * 0.9) - 1] * 1000:.2f} ms, min {took[0] * 1000:.2f} ms "
        f"({len(took)} calls, python {sys.version.split()[0]}, pid {os.getpid()})"
    )


if __name__ == "__main__":
    main()
