"""The supported Kubernetes versions, as an operator meets them: ``zwmd doctor``'s row and
``zwmd serve``'s refusal, against localkube behaving as 1.24, 1.25, 1.26 and 1.34.

A pod failure policy is where the releases part: 1.24 does not know the field and 1.25
has it switched off, so both would drop it without an error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from tests.daemon_process import free_port
from tests.ops.test_doctor import K, doctor, environment, namespace_with
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio

POLICY = json.dumps(
    {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
)


@asynccontextmanager
async def cluster(version: str) -> AsyncIterator[LocalKube]:
    async with LocalKube(
        kubelet=None, unauthenticated="anonymous", kubernetes_version=version
    ) as kube:
        yield kube


@pytest.mark.parametrize("version", ["1.24", "1.25", "1.34"])
async def test_doctor_passes_a_supported_version_without_a_policy(
    version: str, tmp_path: Path
) -> None:
    async with cluster(version) as kube:
        namespace = namespace_with(kube, service_account=True)
        code, rows, output = await doctor(environment(kube, tmp_path, namespace))
    assert code == 0, output
    assert rows["Kubernetes version"] == ("ok", f"{version} (supported: 1.24+)")


@pytest.mark.parametrize(("version", "refused"), [("1.24", True), ("1.25", True), ("1.26", False)])
async def test_doctor_fails_a_pod_failure_policy_the_server_would_drop(
    version: str, refused: bool, tmp_path: Path
) -> None:
    async with cluster(version) as kube:
        namespace = namespace_with(kube, service_account=True)
        env = environment(kube, tmp_path, namespace, extra={f"{K}POD_FAILURE_POLICY": POLICY})
        code, rows, output = await doctor(env)
    status, detail = rows["Kubernetes version"]
    if refused:
        assert (code, status) == (1, "FAIL"), output
        assert detail.startswith(f"{version}: {K}POD_FAILURE_POLICY needs Kubernetes 1.26")
        assert "fix (Kubernetes version): upgrade the cluster" in output
    else:
        assert (code, status) == (0, "ok"), output


async def test_serve_refuses_in_one_line_a_server_that_would_ignore_the_policy(
    tmp_path: Path,
) -> None:
    async with cluster("1.25") as kube:
        namespace = namespace_with(kube, service_account=True)
        env = environment(
            kube,
            tmp_path,
            namespace,
            extra={f"{K}POD_FAILURE_POLICY": POLICY, "ZWMD_API_PORT": str(free_port())},
        )
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [sys.executable, "-m", "zwmd", "serve"], env=env, check=False
            )
    errors = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert done.returncode == 2
    assert "Traceback" not in done.stderr.decode()
    refusal = [line for line in errors if "POD_FAILURE_POLICY needs Kubernetes 1.26" in line]
    assert len(refusal) == 1, errors
    assert "Kubernetes 1.25 drops a Job's podFailurePolicy" in refusal[0]
