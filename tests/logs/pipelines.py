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
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import anyio

from tests.daemon_process import free_port
from tests.inprocess import SERVICE_ACCOUNT, JsonDict
from tests.inprocess import Daemon as InProcessDaemon
from tests.inprocess import until as shared_until
from zwmd.daemon.serving import DaemonConfig
from zwmd.kube.jobs import PodPolicy
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import Checkpoint, LogKey

TTL_SECONDS = 3600


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


class Daemon(InProcessDaemon):
    """A running daemon whose pods run Python scripts, and its gated log store."""

    wait_timeout = 60.0
    http_timeout = 120.0
    store: GatedStore

    @classmethod
    def serving(
        cls,
        kube: LocalKube,
        state_dir: Path,
        *,
        adjust: Callable[[DaemonConfig], DaemonConfig] | None = None,
    ) -> AbstractAsyncContextManager[Self]:
        """``serve()`` in a fresh namespace of ``kube``, with a file store under ``state_dir``
        (``adjust`` changes the config)."""
        kubeconfig = kube.write_kubeconfig(state_dir / "kubeconfig")
        config = DaemonConfig(
            namespace=f"logs-{uuid.uuid4().hex[:10]}",
            policy=PodPolicy(service_account=SERVICE_ACCOUNT, backoff_limit=0),
            max_active=8,
            ttl_seconds_after_finished=TTL_SECONDS,
            api_port=free_port(),
            api_token=secrets.token_hex(16),
            kubeconfig=str(kubeconfig),
        )
        store = GatedStore(FileLogStore(state_dir, fsync=False))
        return cls.running(kube, kubeconfig, state_dir, config=config, store=store, adjust=adjust)

    async def submit_script(
        self, script: str, *, arguments: Sequence[str] = (), workload_id: str | None = None
    ) -> JsonDict:
        """Run ``python -c script`` (plus ``arguments``) in a runner pod."""
        command = [sys.executable, "-u", "-c", script]
        return await self.submit(workload_id, command=command, arguments=list(arguments))


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
    await shared_until(check, timeout, interval=0.005)
