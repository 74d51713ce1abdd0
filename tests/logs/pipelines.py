"""A daemon with the whole log pipeline, served in the test's event loop, for log tests.

The daemon is the real one (:func:`zwmd.daemon.serving.serve`) against a localkube whose
process kubelet runs each pod's command as a host process, so what a pod prints goes
through localkube's pod log route, the follower, the file store and the API exactly as
in local mode. Tests talk to it over HTTP on 127.0.0.1 with its bearer token.

:class:`GatedStore` wraps the file store so a test can hold appends back and watch what
the daemon does while lines are not stored yet (the TTL must wait).
"""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from tests.daemon_process import free_port
from zwmd.daemon.serving import DaemonConfig, serve
from zwmd.kube.jobs import PodPolicy
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint, LogKey

SERVICE_ACCOUNT = "zenml-runner"
TTL_SECONDS = 3600

JsonDict = dict[str, Any]


@dataclass(eq=False)
class GatedStore:
    """A :class:`FileLogStore` whose appends wait while the gate is closed."""

    inner: FileLogStore
    name: str = "file"
    gate: anyio.Event | None = None
    #: records the inner store has durably taken, per key (read synchronously by tests)
    stored: dict[LogKey, int] = field(default_factory=dict)

    def close_gate(self) -> None:
        self.gate = anyio.Event()

    def open_gate(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.gate = None

    async def append(self, key: LogKey, records: Sequence[LogRecord]) -> Checkpoint:
        gate = self.gate
        if gate is not None and records:
            await gate.wait()
        checkpoint = await self.inner.append(key, records)
        self.stored[key] = checkpoint.records
        return checkpoint

    def read(self, workload_id: str, *, attempt: int | None = None) -> AsyncIterator[LogRecord]:
        return self.inner.read(workload_id, attempt=attempt)

    def follow(self, workload_id: str, *, attempt: int | None = None) -> AsyncIterator[LogRecord]:
        return self.inner.follow(workload_id, attempt=attempt)

    async def checkpoint(self, key: LogKey) -> Checkpoint | None:
        return await self.inner.checkpoint(key)

    async def close(self, key: LogKey) -> None:
        await self.inner.close(key)

    async def attempts(self, workload_id: str) -> list[int]:
        return await self.inner.attempts(workload_id)


@dataclass
class Daemon:
    """A running daemon and what a test needs to reach it."""

    kube: LocalKube
    namespace: str
    http: httpx.AsyncClient
    store: GatedStore

    async def submit(
        self, script: str, *, arguments: Sequence[str] = (), workload_id: str | None = None
    ) -> JsonDict:
        """Run ``python -c script`` (plus ``arguments``) in a runner pod."""
        workload_id = workload_id or str(uuid.uuid4())
        body = {
            "image": "runner:1",
            "command": [sys.executable, "-u", "-c", script],
            "arguments": list(arguments),
        }
        response = await self.http.post(f"/v1/workloads/{workload_id}/run", json=body)
        assert response.status_code in (200, 202), response.text
        result: JsonDict = response.json()
        return result

    async def wait(self, id_or_alias: str, timeout: float = 60.0) -> JsonDict:
        response = await self.http.get(
            f"/v1/workloads/{id_or_alias}/wait", params={"timeout": timeout}
        )
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        assert result["state"] in ("succeeded", "failed", "cancelled"), result
        return result

    async def post_log(self, id_or_alias: str, message: str, level: str = "INFO") -> None:
        response = await self.http.post(
            f"/v1/workloads/{id_or_alias}/logs", json={"message": message, "level": level}
        )
        assert response.status_code == 204, response.text

    async def logs(self, id_or_alias: str, *, fmt: str = "text") -> list[str]:
        response = await self.http.get(f"/v1/workloads/{id_or_alias}/logs", params={"format": fmt})
        assert response.status_code == 200, response.text
        return response.text.splitlines()

    def job(self, name: str) -> JsonDict:
        return self.kube.store.get("jobs", self.namespace, name)


def messages(lines: list[str]) -> list[str]:
    """The messages of ``format=text`` lines (``[YYYY-MM-DD HH:MM:SS UTC] message``)."""
    out = []
    for line in lines:
        assert line.startswith("["), line[:40]
        assert line[20:26] == " UTC] ", line[:40]
        out.append(line[26:])
    return out


async def until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    with anyio.fail_after(timeout):
        while True:
            if check():
                return
            await anyio.sleep(0.005)


@asynccontextmanager
async def running_daemon(kube: LocalKube, state_dir: Path) -> AsyncIterator[Daemon]:
    """``serve()`` in a fresh namespace of ``kube``, with a file store under ``state_dir``."""
    namespace = f"logs-{uuid.uuid4().hex[:10]}"
    kube.store.create("namespaces", None, {"metadata": {"name": namespace}})
    kube.store.create("serviceaccounts", namespace, {"metadata": {"name": SERVICE_ACCOUNT}})
    kubeconfig = kube.write_kubeconfig(state_dir / "kubeconfig")
    token = secrets.token_hex(16)
    config = DaemonConfig(
        namespace=namespace,
        policy=PodPolicy(service_account=SERVICE_ACCOUNT, backoff_limit=0),
        max_active=8,
        ttl_seconds_after_finished=TTL_SECONDS,
        api_port=free_port(),
        api_token=token,
        kubeconfig=str(kubeconfig),
    )
    store = GatedStore(FileLogStore(state_dir, fsync=False))
    async with anyio.create_task_group() as tg:
        await tg.start(serve, config, store)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{config.api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as http:
            yield Daemon(kube, namespace, http, store)
        tg.cancel_scope.cancel()
