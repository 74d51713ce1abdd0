"""The fault suite's world: a cluster, a daemon that can be killed, and a fleet of runs.

Every part is a real process, as in production: ``zwmd localkube`` (process kubelet:
each runner pod is a host process) and ``zwmd serve`` against its kubeconfig, driven
through :class:`zwmd.apiclient.Client`, the HTTP client the ZenML adapter uses (so its
retries are part of what is tested). Faults are injected over localkube's
``/localkube/faults/...`` endpoints by the scenario, from a thread of its own.

A :class:`Fleet` is the ground truth. Each workload's runner prints a known sequence of
lines (seeded sizes, some thousands of lines, flushed in bursts) and exits with a known
code, so the verdict compares, for every workload, its terminal state, exit code and
log line by line with what its pod printed. :class:`Verdict` counts what a user would
call a bug: lines lost or doubled, workloads stuck, ghost runs (a Job that ran for a
request whose caller was told it failed), and daemon crashes (exits the test did not
cause). Each scenario asserts they are all 0 and writes its figures to
``$ZWMD_TEST_FAULTS_REPORT`` (a directory) when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_process import free_port
from tests.rbac import ACCOUNT, zwmd_objects
from zwmd.apiclient import Client, ClientConfig, ZwmdError
from zwmd.localkube import ADMIN_HEADERS
from zwmd.localkube.kubeconfig import write_kubeconfig

PY = sys.executable
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
NAMESPACE = "zenml-faults"
SERVICE_ACCOUNT = "zenml-runner"

# argv: tag, lines, exit code, seconds between bursts of 200 lines
RUNNER = """
import sys, time
tag, n, code, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for k in range(n):
    sys.stdout.write(f"{tag}:{k}:{'x' * (k % 40)}\\n")
    if k % 200 == 199:
        sys.stdout.flush()
        time.sleep(pause)
sys.stdout.flush()
sys.exit(code)
"""


def expected_lines(tag: str, count: int) -> list[str]:
    return [f"{tag}:{k}:{'x' * (k % 40)}" for k in range(count)]


def wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """``zwmd localkube`` in a child process, and its fault endpoints."""

    def __init__(self, workdir: Path, kubelet: str = "process") -> None:
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        #: the daemon's: it acts as ``zwmd`` under the shipped Role
        self.kubeconfig = workdir / "kubeconfig"
        self.process = subprocess.Popen(
            [
                PY,
                "-m",
                "zwmd",
                "localkube",
                "--port",
                "0",
                "--kubelet",
                kubelet,
                "--kubeconfig",
                str(self.admin_kubeconfig),
                "--unauthenticated",
                "anonymous",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        lines = [self.process.stdout.readline() for _ in range(3)]
        self.url = lines[0].rsplit(" ", 1)[1].strip()
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=ADMIN_HEADERS)
        self.post("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        self.post(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
            {"metadata": {"name": SERVICE_ACCOUNT}},
        )
        for resource, obj in zwmd_objects(NAMESPACE):
            group = (
                "/apis/rbac.authorization.k8s.io/v1" if resource != "serviceaccounts" else "/api/v1"
            )
            self.post(f"{group}/namespaces/{NAMESPACE}/{resource}", obj)
        minted = self.http.post(
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token", json={}
        )
        assert minted.status_code == 201, minted.text
        token = minted.json()["status"]["token"]
        write_kubeconfig(self.kubeconfig, self.url, namespace=NAMESPACE, token=token)

    def post(self, path: str, body: dict[str, Any]) -> None:
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 201), response.text

    def fault(self, name: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/localkube/faults/{name}", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def fault_counts(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get("/localkube/faults").json()
        return answer

    def items(self, resource: str) -> list[dict[str, Any]]:
        group = "/apis/batch/v1" if resource == "jobs" else "/api/v1"
        path = f"{group}/namespaces/{NAMESPACE}/{resource}"
        items: list[dict[str, Any]] = self.http.get(path).json()["items"]
        return items

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Daemon:
    """``zwmd serve`` on a fixed port and state directory; killed and started again."""

    def __init__(self, cluster: Cluster, workdir: Path, env: dict[str, str] | None = None):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_"))}
        self.env.update(
            {
                f"{K}NAMESPACE": NAMESPACE,
                f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
                "KUBECONFIG": str(cluster.kubeconfig),
                "ZWMD_API_PORT": str(self.port),
                "ZWMD_API_TOKEN": self.token,
                "ZWMD_STATE_DIR": str(workdir / "state"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.kills = 0
        self.crashes: list[str] = []  # exits the test did not cause

    def start(self, ready_timeout: float = 60.0) -> None:
        log = self.workdir / f"zwmd-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [PY, "-m", "zwmd", "serve"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"zwmd serve exited at start:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    def check_alive(self) -> None:
        """Record a crash if the daemon exited on its own (then start it again)."""
        if self.process is not None and self.process.poll() is not None:
            self.crashes.append(f"exit {self.process.returncode}: {self.logs[-1]}")
            self.start()

    def kill_and_restart(self) -> None:
        self.check_alive()
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.kills += 1
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def client(self, retry_seconds: float = 60.0) -> Client:
        config = ClientConfig(url=self.url, token=self.token, retry_seconds=retry_seconds)
        return Client(config)

    def output(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs
        )


@dataclass
class Run:
    """One workload: what its pod will print and how it ends."""

    wid: str
    lines: int
    exit_code: int
    pause: float
    accepted: bool = False  # the client was told 202/200
    refusal: str = ""  # what the client was told instead

    @property
    def tag(self) -> str:
        return self.wid[:8]


@dataclass
class Verdict:
    scenario: str
    workloads: int = 0
    kills: int = 0
    kills_mid_post: int = 0
    faults_injected: int = 0
    lines_compared: int = 0
    lost: int = 0
    doubled: int = 0
    wrong_state: int = 0
    ghost_runs: int = 0
    stuck: int = 0
    crashed: int = 0
    refused_posts: int = 0
    problems: list[str] = field(default_factory=list)

    def bad(self) -> dict[str, int]:
        keys = ("lost", "doubled", "wrong_state", "ghost_runs", "stuck", "crashed")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}

    def report(self) -> None:
        where = os.environ.get("ZWMD_TEST_FAULTS_REPORT")
        summary = json.dumps(asdict(self), indent=1)
        print(summary)
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            (Path(where) / f"{self.scenario}.json").write_text(summary)


class Fleet:
    """The runs of one scenario, their submission and their verdict."""

    def __init__(self, count: int, *, seed: int, max_lines: int = 4000) -> None:
        rng = random.Random(seed)
        self.runs = [
            Run(
                wid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                lines=rng.choice([0, 1, 50, 500, rng.randint(1, max_lines), max_lines]),
                exit_code=rng.choice([0, 0, 0, 1, 3]),
                pause=rng.choice([0.0, 0.01, 0.05]),
            )
            for _ in range(count)
        ]
        self.in_flight = 0
        self._lock = threading.Lock()

    def submit_all(
        self, daemon: Daemon, *, threads: int = 8, spread: float = 0.0, retry_seconds: float = 60
    ) -> None:
        """Submit every run from ``threads`` threads, each ``spread`` seconds after its
        previous one on average."""
        rng = random.Random(len(self.runs))

        def submit(run: Run) -> None:
            if spread:
                time.sleep(rng.uniform(0, 2 * spread))
            with self._lock:
                self.in_flight += 1
            try:
                client.run(
                    run.wid,
                    image="runner:1",
                    command=[PY, "-c", RUNNER],
                    arguments=[run.tag, str(run.lines), str(run.exit_code), str(run.pause)],
                    timeout_seconds=600,
                )
                run.accepted = True
            except ZwmdError as exc:
                run.refusal = str(exc)
            finally:
                with self._lock:
                    self.in_flight -= 1

        # One client for all, as the ZenML server keeps one adapter for its lifetime.
        with daemon.client(retry_seconds) as client, ThreadPoolExecutor(threads) as pool:
            client.healthz()
            list(pool.map(submit, self.runs))

    def wait_all(self, daemon: Daemon, timeout: float) -> dict[str, dict[str, Any]]:
        """Every accepted run's final record (waiting for each to be terminal)."""
        finals: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with daemon.client() as client:
            for run in self.runs:
                if not run.accepted:
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    finals[run.wid] = dict(client.wait_terminal(run.wid, timeout=left).raw)
                except ZwmdError:
                    continue
        return finals

    def verdict(self, scenario: str, daemon: Daemon, cluster: Cluster, timeout: float) -> Verdict:
        verdict = Verdict(scenario, workloads=len(self.runs))
        finals = self.wait_all(daemon, timeout)
        daemon.check_alive()
        verdict.kills, verdict.crashed = daemon.kills, len(daemon.crashes)
        verdict.problems += daemon.crashes
        ran = {
            pod["metadata"].get("labels", {}).get("zwmd.io/workload-id")
            for pod in cluster.items("pods")
        }
        jobs = Counter(
            job["metadata"].get("labels", {}).get("zwmd.io/workload-id")
            for job in cluster.items("jobs")
        )
        with daemon.client() as client:
            for run in self.runs:
                if not run.accepted:
                    verdict.refused_posts += 1
                    verdict.problems.append(f"{run.wid}: POST refused: {run.refusal}")
                    if run.wid in ran:
                        verdict.ghost_runs += 1
                        verdict.problems.append(f"{run.wid}: ran, but its POST got {run.refusal}")
                    continue
                if jobs[run.wid] > 1:  # one request, one run: a second attempt is a ghost
                    verdict.ghost_runs += 1
                    verdict.problems.append(f"{run.wid}: {jobs[run.wid]} Jobs for one request")
                final = finals.get(run.wid)
                if final is None or final.get("state") not in ("succeeded", "failed"):
                    verdict.stuck += 1
                    verdict.problems.append(f"{run.wid}: not terminal: {final}")
                    continue
                self._compare(run, final, client.logs(run.wid, format="zenml"), verdict)
        return verdict

    @staticmethod
    def _compare(run: Run, final: dict[str, Any], text: str, verdict: Verdict) -> None:
        want_state = "succeeded" if run.exit_code == 0 else "failed"
        if final["state"] != want_state or (
            run.exit_code and final.get("exit_code") != run.exit_code
        ):
            verdict.wrong_state += 1
            verdict.problems.append(f"{run.wid}: {final['state']} {final.get('exit_code')}")
        want = expected_lines(run.tag, run.lines)
        entries = [json.loads(line) for line in text.splitlines() if line]
        got = [entry["message"] for entry in entries if entry["name"] != "zwmd"]
        verdict.lines_compared += len(want)
        if got != want:
            seen = set(got)
            lost = sum(1 for line in want if line not in seen)
            doubled = len(got) - (len(want) - lost)  # repeated, or never printed
            verdict.lost += lost
            verdict.doubled += doubled
            verdict.problems.append(f"{run.wid}: {lost} lost, {doubled} doubled of {len(want)}")


@contextlib.contextmanager
def in_background(work: Callable[[], object]) -> Iterator[None]:
    """Run ``work()`` in a thread beside the ``with`` block; leaving waits for it."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(600)


FAULT_SECONDS = float(os.environ.get("ZWMD_TEST_FAULTS_SECONDS", "60"))
WORKLOADS = 100

Fault = Callable[[Cluster], int]  # injects its fault; returns how many faults it caused


def run_scenario(
    tmp_path: Path, name: str, fault: Fault, *, seed: int, env: dict[str, str] | None = None
) -> Fleet:
    """:data:`WORKLOADS` runs submitted over the fault while ``fault`` runs beside them;
    assert that every one ended as its pod did, with its whole log (returns the runs).

    Runs are submitted through the adapter's HTTP client, told to retry for longer than
    the fault lasts (the ZenML server's default retries 30 s), so what is measured is the
    daemon, not the caller's patience.
    """
    cluster = Cluster(tmp_path)
    daemon = Daemon(
        cluster, tmp_path, {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "8", **(env or {})}
    )
    daemon.start()
    fleet = Fleet(WORKLOADS, seed=seed, max_lines=3000)
    caused: list[int] = []
    try:
        with in_background(lambda: caused.append(fault(cluster))):
            fleet.submit_all(
                daemon, spread=FAULT_SECONDS * 8 / WORKLOADS, retry_seconds=FAULT_SECONDS + 60
            )
        verdict = fleet.verdict(name, daemon, cluster, timeout=300)
        verdict.faults_injected = sum(caused)
        verdict.report()
        assert verdict.refused_posts == 0, verdict.problems
        assert not verdict.bad(), (verdict.bad(), verdict.problems[:20], daemon.output())
    finally:
        daemon.stop()
        cluster.stop()
    return fleet
