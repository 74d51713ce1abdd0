"""Log pipeline throughput: 20 pods logging at once, through the whole daemon, into the file store.

Processes as in production: ``zwmd localkube`` (process kubelet: each pod is a host
``python`` printing numbered lines of ~100 bytes as fast as it can) and ``zwmd serve``
against it (file log store with fsync, the default). Each run starts a fresh daemon and
submits ``--pods`` runs at once; the clock stops when every run's ``/wait`` answered,
which is after its final flush. Lines/s and MB/s count message bytes stored; the
daemon's peak memory is its ``VmHWM`` (peak RSS) from ``/proc``. Every run checks that
the store holds every line. Medians over ``--runs`` runs.

    python bench/log_pipeline_throughput.py [--pods 20] [--lines 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
NAMESPACE = "bench"
PAD = "x" * 90

POD = """
import sys
out = sys.stdout
pad = {pad!r}
n = int(sys.argv[1])
for start in range(0, n, 1000):
    out.write("".join(f"{{i:08d}} {{pad}}\\n" for i in range(start, min(n, start + 1000))))
out.flush()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(kubeconfig: Path, work: Path, pods: int, lines: int) -> tuple[float, float, float]:
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))},
        "KUBECONFIG": str(kubeconfig),
        f"{K}NAMESPACE": NAMESPACE,
        f"{K}SERVICE_ACCOUNT": "default",
        "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": str(pods),
        "ZWMD_API_HOST": "127.0.0.1",
        "ZWMD_API_PORT": str(port),
        "ZWMD_API_TOKEN": token,
        "ZWMD_STATE_DIR": str(work / "state"),
    }
    with (work / "zwmd.log").open("ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "zwmd", "serve"], env=env, stdout=log, stderr=log
        )
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=600,
    )

    def ready() -> bool:
        assert daemon.poll() is None, (work / "zwmd.log").read_text()
        try:
            return http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready)
        ids = [str(uuid.uuid4()) for _ in range(pods)]
        command = [sys.executable, "-c", POD.format(pad=PAD)]
        started = time.perf_counter()
        for wid in ids:
            body = {"image": "bench:1", "command": command, "arguments": [str(lines)]}
            http.post(f"/v1/workloads/{wid}/run", json=body).raise_for_status()

        def wait(wid: str) -> str:
            return str(
                http.get(f"/v1/workloads/{wid}/wait", params={"timeout": 600}).json()["state"]
            )

        with ThreadPoolExecutor(pods) as pool:
            states = list(pool.map(wait, ids))
        elapsed = time.perf_counter() - started
        peak = peak_rss_mib(daemon.pid)
        assert states == ["succeeded"] * pods, states
        for wid in ids:  # every line stored, once
            got = http.get(f"/v1/workloads/{wid}/logs").text.count("\n")
            assert got == lines, (wid, got)
    finally:
        http.close()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    total_lines = pods * lines
    total_bytes = total_lines * (9 + len(PAD))  # message bytes: "00000000 " + pad
    return total_lines / elapsed, total_bytes / elapsed / 1e6, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--lines", type=int, default=50_000, help="lines per pod")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zwmd-bench-") as tmp:
        root = Path(tmp)
        kubeconfig = root / "kubeconfig"
        with (root / "localkube.log").open("wb") as log:
            kube = subprocess.Popen(
                [sys.executable, "-m", "zwmd", "localkube", "--port", "0",
                 "--kubeconfig", str(kubeconfig)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(
                lambda: kubeconfig.exists() and "port:" in (root / "localkube.log").read_text()
            )
            match = re.search(r"localkube listening on (\S+)", (root / "localkube.log").read_text())
            assert match is not None
            with httpx.Client(base_url=match[1]) as api:
                api.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
                api.post(
                    f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                    json={"metadata": {"name": "default"}},
                )
            results = []
            for run in range(args.runs):
                work = root / f"run{run}"
                work.mkdir()
                lps, mbps, peak = one_run(kubeconfig, work, args.pods, args.lines)
                results.append((lps, mbps, peak))
                print(
                    f"run {run + 1}: {lps:,.0f} lines/s  {mbps:.1f} MB/s  daemon peak RSS {peak:.0f} MiB"
                )
        finally:
            kube.send_signal(signal.SIGTERM)
            kube.wait(30)
    print(
        f"median of {args.runs}, {args.pods} pods x {args.lines:,} lines of {9 + len(PAD)} bytes: "
        f"{statistics.median(r[0] for r in results):,.0f} lines/s, "
        f"{statistics.median(r[1] for r in results):.1f} MB/s, "
        f"daemon peak RSS {statistics.median(r[2] for r in results):.0f} MiB"
    )


if __name__ == "__main__":
    main()
