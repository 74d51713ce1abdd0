"""A daemon whose Role lacks what it needs says so: the 403, and the verb to grant.

The seeds' Role (the ZenML docs' example for the workload manager) grants pods, a
``pods/logs`` subresource that does not exist, and Secrets get, but nothing on Jobs. Under
it the daemon cannot list Jobs, so it never becomes ready, and ``/readyz`` must say why
in words an operator can act on. A Role that lets zwmd watch but not create Jobs leaves
it ready, and each run is refused with the same words.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import Daemon
from tests.inprocess import until
from tests.ops.test_doctor import doctor, environment
from tests.rbac import shipped_rules, without
from zwmd.engine.speckey import SECRET_NAME
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

RUN = {"image": "runner:1", "command": ["true"]}

SEEDS_ROLE: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "get", "list", "delete", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods/logs"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "verbs": ["create", "get", "delete"],
    },
]


async def readyz_refusal(daemon: Daemon) -> str:
    """``/readyz``'s answer once it is about a refusal (it says "not listed yet" first)."""
    texts: list[str] = []

    async def refused() -> bool:
        answer = await daemon.probes.get("/readyz")
        texts.append(f"{answer.status_code} {answer.text}")
        return "403" in answer.text

    await until(refused)
    return texts[-1]


async def test_under_the_seeds_role_readyz_and_runs_name_the_refused_list(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(
        kube, kubeconfig, tmp_path / "state", rules=SEEDS_ROLE, wait_ready=False
    ) as daemon:
        text = await readyz_refusal(daemon)
        assert text.startswith("503"), text
        assert "list jobs" in text, text
        assert "contrib/kubernetes/rbac.yaml" in text, text
        answer = await daemon.http.post(f"/v1/workloads/{uuid.uuid4()}/run", json=RUN)
        assert answer.status_code == 503, answer.text
        assert "list jobs" in answer.json()["detail"], answer.text
        assert daemon.jobs() == []
        namespace = daemon.namespace

    # doctor, run as zwmd under the same Role, names the verbs to grant
    code, rows, output = await doctor(environment(kube, tmp_path / "doctor", namespace, SEEDS_ROLE))
    assert code == 1, output
    status, detail = rows["permissions"]
    assert status == "FAIL", output
    for verb in ("create jobs", "list jobs", "watch jobs", "watch pods", "get pods/log"):
        assert verb in detail, detail


async def test_a_refused_job_create_answers_the_run_with_the_verb_to_grant(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    rules = without(shipped_rules(), "jobs", "create")
    async with Daemon.running(kube, kubeconfig, tmp_path / "state", rules=rules) as daemon:
        workload_id = str(uuid.uuid4())
        answer = await daemon.http.post(f"/v1/workloads/{workload_id}/run", json=RUN)
        assert answer.status_code == 502, answer.text
        detail = answer.json()["detail"]
        assert "403" in detail, detail
        assert "create jobs" in detail, detail
        assert "contrib/kubernetes/rbac.yaml" in detail, detail
        # nothing is left behind, the workload is not known, and the daemon stays ready
        assert daemon.jobs() == []
        assert [s["metadata"]["name"] for s in daemon.kube_objects("secrets")] in (
            [],
            [SECRET_NAME],
        )
        assert (await daemon.http.get(f"/v1/workloads/{workload_id}")).status_code == 404
        assert (await daemon.probes.get("/readyz")).status_code == 200
