"""What a silent partition costs: lines lost, readiness, API latency and admission delay.

The real daemon (``serve()``) in this process, against localkube (process kubelet).
``--workloads`` runs of a pod printing ``--lines`` numbered lines, at most
``--max-active`` at once (the rest queued). Each pod prints half its lines, then waits;
once the running ones are there, every connection open to localkube is stalled (its
``stall`` fault: no byte moves, nothing closes, new connections work) and the pods print
the rest. The stall lasts until every workload is terminal and its ``GET /wait`` answered,
then the held connections are reset. Printed per run:

- lines lost and doubled, over all logs, and how many logs lost any, read through
  ``GET /v1/workloads/{id}/logs``;
- ``/readyz`` sampled every 0.1 s during the stall: how many answers were 503;
- how long a ``POST /run`` took during the stall, retried on 503 as the adapter does;
- how long after the first running workload ended the first queued one was admitted;
- how long the whole run took.

Timeouts are the daemon's defaults unless given (seconds; ``--log-inactivity 0`` turns the
log follows' inactivity timeout off, as it was before it existed):

    python bench/silent_partition.py [--runs 3] [--workloads 5] [--lines 250] [--max-active 3]
        [--watch-inactivity 300] [--log-inactivity 60] [--request-timeout 30] [--finish-timeout 120]
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

from zwmd.daemon.serving import serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.settings import load_settings

NS = "zenml"
SA = "zenml-runner"
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
POD = """
import os, sys, time
tag, where, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    if i == n // 2:
        open(os.path.join(where, "half-" + tag), "w").close()
        while not os.path.exists(os.path.join(where, "go")):
            time.sleep(0.01)
    print(tag, i, flush=True)
    if i >= n // 2:
        time.sleep(0.01)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def one_run(args: argparse.Namespace, workdir: Path) -> None:
    async with LocalKube(kubelet="process") as kube:
        kube.store.create("namespaces", None, {"metadata": {"name": NS}})
        kube.store.create("serviceaccounts", NS, {"metadata": {"name": SA}})
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        token = secrets.token_hex(16)
        env = {
            f"{K}NAMESPACE": NS,
            f"{K}SERVICE_ACCOUNT": SA,
            "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": str(args.max_active),
            "ZWMD_API_PORT": str(free_port()),
            "ZWMD_API_TOKEN": token,
            "ZWMD_STATE_DIR": str(workdir),
            "KUBECONFIG": str(kubeconfig),
        }
        if args.watch_inactivity is not None:
            env["ZWMD_WATCH_INACTIVITY_TIMEOUT_SECONDS"] = str(args.watch_inactivity)
        if args.log_inactivity is not None:
            env["ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS"] = str(args.log_inactivity)
        config = daemon_config(load_settings(env), kubeconfig=str(kubeconfig))
        config = dataclasses.replace(
            config,
            kube_request_timeout=args.request_timeout,
            log_timing=dataclasses.replace(config.log_timing, finish_timeout=args.finish_timeout),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(serve, config, FileLogStore(workdir, fsync=False))
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{config.api_port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=args.finish_timeout * 5,
            ) as http:
                await measure(args, kube, http, workdir)
            tg.cancel_scope.cancel()


async def submit(http: httpx.AsyncClient, tag: str, workdir: Path, lines: int) -> str:
    wid = str(uuid.uuid4())
    body = {
        "image": "any",
        "command": [sys.executable, "-u", "-c", POD],
        "arguments": [tag, str(workdir), str(lines)],
    }
    while True:  # as the adapter does: a 503 (Kubernetes did not answer) is retried
        response = await http.post(f"/v1/workloads/{wid}/run", json=body)
        if response.status_code != 503:
            break
        await anyio.sleep(float(response.headers.get("Retry-After", 1)))
    assert response.status_code == 202, response.text
    return wid


async def measure(
    args: argparse.Namespace, kube: LocalKube, http: httpx.AsyncClient, workdir: Path
) -> None:
    started = time.monotonic()
    tags = [f"w{i}" for i in range(args.workloads)]
    ids = {tag: await submit(http, tag, workdir, args.lines) for tag in tags}
    with anyio.fail_after(120):
        while True:
            if sum((workdir / f"half-{tag}").exists() for tag in tags) >= args.max_active:
                break
            await anyio.sleep(0.01)
    kube.faults.stall()
    stalled_at = time.monotonic()
    (workdir / "go").touch()
    ready: list[int] = []
    first_end: list[float] = []
    admitted: dict[str, float] = {}
    queued = {tag for tag in tags if not (workdir / f"half-{tag}").exists()}
    done = anyio.Event()

    async def sample() -> None:
        while not done.is_set():
            ready.append((await http.get("/readyz")).status_code)
            items = (await http.get("/v1/workloads")).json()["items"]
            for item in items:
                tag = next((t for t, i in ids.items() if i == item["id"]), None)
                if item["state"] in ("succeeded", "failed") and not first_end:
                    first_end.append(time.monotonic())
                if tag in queued and item["state"] != "queued" and tag not in admitted:
                    admitted[tag] = time.monotonic()
            await anyio.sleep(0.1)

    run_latency: list[float] = []

    async def post_run() -> None:
        await anyio.sleep(1.0)
        before = time.monotonic()
        tag = "extra"
        ids[tag] = await submit(http, tag, workdir, args.lines)
        tags.append(tag)
        run_latency.append(time.monotonic() - before)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        await post_run()
        for tag in list(tags):
            await http.get(f"/v1/workloads/{ids[tag]}/wait", params={"timeout": 3600})
        done.set()
    finished = time.monotonic()
    kube.faults.end_stall(drop=True)
    lost = doubled = logs_losing = 0
    for tag in tags:
        text = (await http.get(f"/v1/workloads/{ids[tag]}/logs")).text.splitlines()
        got = [line[26:] for line in text if line[26:].startswith(f"{tag} ")]
        want = {f"{tag} {i}" for i in range(args.lines)}
        missing = len(want - set(got))
        lost += missing
        doubled += len(got) - len(set(got))
        logs_losing += missing > 0
    first_admission = min(admitted.values(), default=float("nan"))
    print(
        f"  lines lost {lost} of {args.lines * len(tags)} ({logs_losing} of {len(tags)} logs),"
        f" doubled {doubled}; /readyz 503 in {ready.count(503)} of {len(ready)} samples;"
        f" POST /run {run_latency[0]:.2f} s; first queued admitted"
        f" {first_admission - first_end[0]:.1f} s after the first end;"
        f" all done {finished - stalled_at:.1f} s after the stall ({finished - started:.1f} s in all)"
    )


async def main(args: argparse.Namespace) -> None:
    def shown(value: float | None) -> str:
        return "default" if value is None else "off" if value == 0 else f"{value:g}"

    print(
        f"{args.workloads} workloads of {args.lines} lines, {args.max_active} at once; timeouts:"
        f" watch {shown(args.watch_inactivity)}, log {shown(args.log_inactivity)},"
        f" request {args.request_timeout:g}, finish {args.finish_timeout:g}"
    )
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            await one_run(args, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", type=int, default=5)
    parser.add_argument("--lines", type=int, default=250)
    parser.add_argument("--max-active", type=int, default=3)
    parser.add_argument("--watch-inactivity", type=float, default=None)
    parser.add_argument("--log-inactivity", type=float, default=None)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--finish-timeout", type=float, default=120.0)
    anyio.run(main, parser.parse_args())
