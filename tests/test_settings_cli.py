"""``zwmd config`` as an operator runs it: a subprocess with an environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
SECRET = "do-not-print-this-token-5f2a"


def zwmd_config(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZWMD_", "ZENML_", "KUBE"))
    }
    return subprocess.run(
        [sys.executable, "-m", "zwmd", "config", *args],
        env={**base, "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_prints_the_effective_configuration_masked(tmp_path: Path) -> None:
    env = {
        f"{K}NAMESPACE": "runners",
        f"{K}SERVICE_ACCOUNT": "runner",
        "ZWMD_API_TOKEN": SECRET,
        "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "10",
        "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS": "4",
    }
    result = zwmd_config(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["ZWMD_API_TOKEN", "***", "[env]"] for line in lines)
    assert any(line.split()[:3] == [f"{K}NAMESPACE", "runners", "[env]"] for line in lines)
    assert any(
        line.split()[:3] == ["ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS", "4", "[env]"]
        for line in lines
    )
    assert "note: ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS=4 overrides" in result.stdout


def test_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    env = {
        f"{K}TOLERATIONS": '[{"key": "pool", "operator": "Equals", "value": "zenml", "effect": "NoSchedule"}]',
        f"{K}BUILD_RUNNER_IMAGE": "true",
        "ZWMD_API_TOKEN": f"{SECRET} with spaces",
    }
    result = zwmd_config(env, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert SECRET not in result.stderr
    assert result.stderr.splitlines() == [
        "zwmd: invalid configuration (5 problems):",
        f"  {K}NAMESPACE: is required and not set (e.g. zenml-workspace-namespace)",
        f"  {K}SERVICE_ACCOUNT: is required and not set (e.g. zenml-workspace-service-account)",
        f"  {K}DOCKER_REGISTRY: is required when {K}BUILD_RUNNER_IMAGE is true (e.g. registry.example:5000/zenml)",
        f'  {K}TOLERATIONS: item 0: operator "Equals" is not one of Exists, Equal (e.g. [{{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}}])',
        "  ZWMD_API_TOKEN: contains whitespace or control characters (e.g. the output of `openssl rand -hex 32`)",
    ]


def test_config_local_needs_nothing(tmp_path: Path) -> None:
    result = zwmd_config({}, tmp_path, "--local")
    assert result.returncode == 0, result.stderr
    assert "default (local mode)" in result.stdout
