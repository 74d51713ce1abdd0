"""A workload id reused after its Job is gone and the daemon restarted starts a new attempt.

ZenML resumes runs under the same workload id. When the old Job was already removed by
its TTL and the daemon restarted since, nothing in Kubernetes remembers the first run:
the log store does, and the new run must not write into the finished attempt's log.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon_process import free_port
from tests.logs.pipelines import messages
from zwmd.daemon.serving import DaemonConfig, serve
from zwmd.kube import naming
from zwmd.kube.jobs import PodPolicy
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.store import LogKey

pytestmark = pytest.mark.anyio


async def _run_once(
    kube: LocalKube, config: DaemonConfig, state: Path, wid: str, text: str
) -> tuple[dict[str, object], list[str]]:
    async with anyio.create_task_group() as tg:
        await tg.start(serve, config, FileLogStore(state, fsync=False))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{config.api_port}", timeout=60
        ) as http:
            body = {"image": "any", "command": [sys.executable, "-c", f"print({text!r})"]}
            response = await http.post(f"/v1/workloads/{wid}/run", json=body)
            assert response.status_code == 202, response.text
            done = (await http.get(f"/v1/workloads/{wid}/wait", params={"timeout": 60})).json()
            logs = (await http.get(f"/v1/workloads/{wid}/logs")).text.splitlines()
        tg.cancel_scope.cancel()
    return done, messages(logs)


async def test_reused_id_after_the_job_is_gone_gets_the_next_attempt(tmp_path: Path) -> None:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="process", bookmark_interval=0.5
    ) as kube:
        kube.store.create("namespaces", None, {"metadata": {"name": "resume"}})
        config = DaemonConfig(
            namespace="resume",
            policy=PodPolicy(service_account="default", backoff_limit=0),
            api_port=free_port(),
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        )
        wid = str(uuid.uuid4())
        first, _ = await _run_once(kube, config, tmp_path, wid, "first run")
        assert first["state"] == "succeeded"
        # the TTL removed the Job while no daemon ran
        kube.store.delete("jobs", "resume", naming.job_name(wid), propagation="Background")

        second, logs = await _run_once(kube, config, tmp_path, wid, "second run")

    assert second["state"] == "succeeded"
    assert second["attempt"] == 2
    assert second["job_name"] == f"{naming.job_name(wid)}-2"
    assert logs == ["first run", "second run"]
    store = FileLogStore(tmp_path)
    assert store.path(LogKey(wid, 1)).exists()
    assert store.path(LogKey(wid, 2)).exists()
