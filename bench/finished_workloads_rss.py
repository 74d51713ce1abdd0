"""The daemon's memory (RSS) after N finished workloads: what a long-lived daemon keeps.

For "One informer, one reconciler": the engine on main keeps every workload it has seen
in memory; the rewrite evicts a finished workload once its logs are stored. This script
measures that from the outside only, so it runs unchanged against either engine: the
daemon's HTTP API (plain HTTP on 127.0.0.1) and ``/proc/<pid>/status`` of its process.

Processes: localkube runs in a child process of its own (this script with
``--serve-localkube``: :class:`zwmd.localkube.LocalKube` plus a driver that runs every
new pod and lets it succeed at once), and the daemon is ``python -m zwmd serve`` against
its kubeconfig, so the daemon's RSS is its own and localkube's (its store of N Jobs and
N pods) is reported beside it. The default kubelet is ``scripted`` (nothing runs: the
driver writes Running, then Succeeded with exit 0, through the scripted kubelet's
transitions; pod logs are empty); ``--kubelet process`` runs ``true`` as a host process
per pod instead (the ``zwmd serve --local`` node), which is slower. Each round starts a
fresh localkube and a fresh daemon (file log store, the default), with
``ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS`` = ``--active`` and the default Job TTL
(two days, so every Job stays in localkube, as on a cluster).

A round: the daemon ready (``/readyz``), ``--settle`` seconds, RSS "start"; ``--workloads``
runs submitted (``POST /v1/workloads/{id}/run``, command ``true``); each then awaited with
``GET /v1/workloads/{id}/wait``, which answers once the workload is terminal and its logs
are stored (a 404 there counts as finished and already evicted); ``--settle`` seconds;
RSS "finished" (read before anything lists the workloads, so the list response does not
count in VmHWM); then how many workloads ``GET /v1/workloads`` still lists. VmRSS is the
resident set at that moment, VmHWM the peak since the process started; "CPU s d/lk" is
the CPU time the daemon and localkube spent from "start" to "finished". Medians over
``--runs`` rounds. No figure is asserted.

    python bench/finished_workloads_rss.py [--workloads 10000] [--runs 1] [--active 100]
        [--kubelet scripted|process] [--settle 5] [--clients 16]

measured on main before eviction (d98ff0f, 2 cores, Python 3.11, run from the
checkout as ``.venv/bin/python bench/finished_workloads_rss.py --workloads 10000``,
defaults otherwise; one round, 11 min 28 s wall)::

    daemon  start 124 MiB RSS (VmHWM 124)  after 10,000 finished 404 MiB (VmHWM 404)
    GET /v1/workloads still lists 10,000 (all succeeded)
    localkube 47 -> 1188 MiB RSS (its store: 10,000 Jobs and pods, events, watch history)
    all submitted after 620 s, all finished after 644 s

That is ~29 KiB of daemon RSS per finished workload, linear: 100 -> 129 MiB,
1,000 -> 155 MiB, 3,000 -> 210 MiB. Throughput falls as N grows: 1,000 workloads in
24 s (42/s), 3,000 in 113 s (26/s; CPU daemon 68 s, localkube 26 s), 10,000 in 644 s
(16/s). Submission and completion are interleaved (100 at once), so "submit" is close
to "finish". The 10,000 round was run before the "CPU s" column was added.

measured after the rewrite (823fd8f; same machine, command and defaults, one round)::

    daemon  start 124 MiB RSS  after 10,000 finished 349 MiB
    GET /v1/workloads still lists 10,000 (from the Jobs, which live for the TTL)
    all finished after 238 s (42/s); CPU daemon 174 s, localkube 94 s

The engine now keeps only active workloads and the last 1,000 finished ones; what is
left (~22 KiB per workload) is mostly not held by zwmd: a tracemalloc probe at 2,000
workloads traced 115 MiB of a 265 MiB RSS, 51 MiB of it imports and 20 MiB the parsed
watch events (kube/watching.py), with the informer's trimmed cache 1-2 MiB.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
NAMESPACE = "bench"
SERVICE_ACCOUNT = "zenml-runner"
REPO = Path(__file__).resolve().parent.parent
TERMINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB, from ``/proc/<pid>/status``."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", math.nan), fields.get("VmHWM", math.nan)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_env(**extra: str) -> dict[str, str]:
    """This environment without ``ZWMD_*``/``ZENML_*``, importing zwmd from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# --- localkube, in its own process ------------------------------------------------------


async def serve_localkube(kubelet: str, kubeconfig: Path) -> None:
    """The child: localkube on 127.0.0.1; with the scripted kubelet, every pod succeeds."""
    import anyio

    from zwmd.localkube import LocalKube

    kube = LocalKube("127.0.0.1", 0, kubelet="scripted" if kubelet == "scripted" else "process")
    send, receive = anyio.create_memory_object_stream[tuple[str, str]](math.inf)

    def new_pod(event_type: str, resource: str, obj: dict[str, Any], old: Any) -> None:
        if event_type == "ADDED" and resource == "pods":
            meta = obj["metadata"]
            send.send_nowait((meta["namespace"], meta["name"]))

    async def drive() -> None:  # outside the store's listener: transitions write the store
        async for namespace, pod in receive:
            try:
                kube.kubelet.set_running(namespace, pod)
                kube.kubelet.succeed(namespace, pod)
            except Exception as exc:  # a pod deleted meanwhile: nothing to run
                print(f"pod {namespace}/{pod}: {exc}", flush=True)

    async with anyio.create_task_group() as tg:
        await tg.start(kube.serve)
        if kubelet == "scripted":
            kube.store.add_listener(new_pod)
            tg.start_soon(drive)
        kube.store.create("namespaces", None, {"metadata": {"name": NAMESPACE}})
        kube.store.create("serviceaccounts", NAMESPACE, {"metadata": {"name": SERVICE_ACCOUNT}})
        kube.write_kubeconfig(kubeconfig)
        print(f"localkube listening on {kube.url}", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


@contextmanager
def localkube(work: Path, kubelet: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    kubeconfig, log_path = work / "kubeconfig", work / "localkube.log"
    argv = [sys.executable, __file__, "--serve-localkube", kubelet, "--kubeconfig", str(kubeconfig)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:

        def up() -> bool:
            assert process.poll() is None, log_path.read_text()
            return "listening on" in log_path.read_text()

        wait_for(up)
        yield process, kubeconfig
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- one round ----------------------------------------------------------------------------


@dataclass
class Round:
    start: tuple[float, float]  # daemon (VmRSS, VmHWM), MiB
    finished: tuple[float, float]
    kube_start: tuple[float, float]  # localkube's
    kube_finished: tuple[float, float]
    listed: int
    states: dict[str, int]
    submit_s: float
    finish_s: float
    cpu_s: tuple[float, float]  # daemon, localkube: CPU seconds from start to finished


def one_round(args: argparse.Namespace, work: Path) -> Round:
    with localkube(work, args.kubelet) as (kube, kubeconfig):
        port, token = free_port(), secrets.token_hex(16)
        env = child_env(
            KUBECONFIG=str(kubeconfig),
            **{
                f"{K}NAMESPACE": NAMESPACE,
                f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
                "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": str(args.active),
                "ZWMD_API_HOST": "127.0.0.1",
                "ZWMD_API_PORT": str(port),
                "ZWMD_API_TOKEN": token,
                "ZWMD_STATE_DIR": str(work / "state"),
            },
        )
        log_path = work / "zwmd.log"
        with log_path.open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "zwmd", "serve"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60, read=700),
            limits=httpx.Limits(max_connections=args.clients),
        )
        try:

            def ready() -> bool:
                assert daemon.poll() is None, log_path.read_text()
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready)
            time.sleep(args.settle)
            start, kube_start = memory_mib(daemon.pid), memory_mib(kube.pid)
            cpu = cpu_seconds(daemon.pid), cpu_seconds(kube.pid)

            ids = [str(uuid.uuid4()) for _ in range(args.workloads)]
            body = {"image": "bench:1", "command": ["true"]}

            def submit(wid: str) -> None:
                http.post(f"/v1/workloads/{wid}/run", json=body).raise_for_status()

            def wait(wid: str) -> str:
                while True:
                    response = http.get(f"/v1/workloads/{wid}/wait", params={"timeout": 600})
                    if response.status_code == 404:
                        return "evicted"  # finished, logs stored, forgotten
                    response.raise_for_status()
                    state = str(response.json()["state"])
                    if state in TERMINAL:
                        return state

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(submit, ids))
                submitted = time.perf_counter()
                states = list(pool.map(wait, ids))
            finished = time.perf_counter()
            time.sleep(args.settle)
            after, kube_after = memory_mib(daemon.pid), memory_mib(kube.pid)
            cpu = cpu_seconds(daemon.pid) - cpu[0], cpu_seconds(kube.pid) - cpu[1]
            listed = len(http.get("/v1/workloads").json()["items"])
            assert daemon.poll() is None, log_path.read_text()
        finally:
            http.close()
            stop(daemon)
    counts = {state: states.count(state) for state in sorted(set(states))}
    return Round(
        start,
        after,
        kube_start,
        kube_after,
        listed,
        counts,
        submitted - began,
        finished - began,
        cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000, help="N: workloads per round")
    parser.add_argument("--runs", type=int, default=1, help="rounds (fresh daemon each)")
    parser.add_argument("--active", type=int, default=100, help="max concurrent runs")
    parser.add_argument("--kubelet", choices=["scripted", "process"], default="scripted")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each reading")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP requests")
    parser.add_argument(
        "--serve-localkube", choices=["scripted", "process"], help=argparse.SUPPRESS
    )
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_localkube:
        import anyio

        anyio.run(serve_localkube, args.serve_localkube, args.kubeconfig)
        return

    where = subprocess.run(
        [sys.executable, "-c", "import zwmd; print(zwmd.__file__)"],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"zwmd from {where} (commit {commit or '?'})")
    print(
        f"{args.workloads:,} workloads (command true, {args.kubelet} kubelet, "
        f"{args.active} at once), {args.runs} round(s); MiB, VmRSS / VmHWM"
    )
    header = (
        f"{'round':>5}  {'daemon start':>15}  {'daemon finished':>15}  {'listed':>7}  "
        f"{'localkube start':>15}  {'localkube fin.':>15}  {'submit s':>8}  {'finish s':>8}  {'CPU s d/lk':>10}  states"
    )
    print(header)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="zwmd-bench-") as tmp:
        for run in range(args.runs):
            work = Path(tmp) / f"run{run}"
            work.mkdir()
            r = one_round(args, work)
            rounds.append(r)
            print(
                f"{run + 1:>5}  {pair(r.start):>15}  {pair(r.finished):>15}  {r.listed:>7}  "
                f"{pair(r.kube_start):>15}  {pair(r.kube_finished):>15}  "
                f"{r.submit_s:>8.1f}  {r.finish_s:>8.1f}  {r.cpu_s[0]:>4.0f}/{r.cpu_s[1]:<5.0f}  "
                f"{r.states}",
                flush=True,
            )

    def med(pick: Callable[[Round], float]) -> float:
        return statistics.median(pick(r) for r in rounds)

    print(
        f"median of {args.runs}: daemon start {med(lambda r: r.start[0]):.0f} MiB RSS, "
        f"after {args.workloads:,} finished {med(lambda r: r.finished[0]):.0f} MiB RSS "
        f"(peak {med(lambda r: r.finished[1]):.0f} MiB), "
        f"{med(lambda r: r.listed):.0f} still listed; "
        f"localkube {med(lambda r: r.kube_start[0]):.0f} -> {med(lambda r: r.kube_finished[0]):.0f} MiB RSS; "
        f"all finished after {med(lambda r: r.finish_s):.0f} s"
    )


def pair(rss_hwm: tuple[float, float]) -> str:
    return f"{rss_hwm[0]:.0f} / {rss_hwm[1]:.0f}"


if __name__ == "__main__":
    main()
