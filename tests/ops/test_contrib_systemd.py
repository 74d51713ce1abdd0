"""contrib/systemd: the unit verifies, rates "OK" for exposure, and the env file is complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "zwmd.service"
ENV_EXAMPLE = ROOT / "contrib" / "systemd" / "zwmd.env.example"
MAX_EXPOSURE = 2.0

SEED_VARIABLES = [
    "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_NAMESPACE",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_SERVICE_ACCOUNT",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_BUILD_RUNNER_IMAGE",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_DOCKER_REGISTRY",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_RUNNER_IMAGE",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_TTL_SECONDS_AFTER_FINISHED",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_NODE_SELECTOR",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_JOB_BACKOFF_LIMIT",
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY",
    "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS",
    "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS",
    "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET",
    "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION",
    "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET",
    "KUBECONFIG",
]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (Debian package 'systemd')")
        pytest.skip("systemd-analyze is missing: apt-get install systemd")
    return path


def zwmd_executable() -> str:
    """The installed ``zwmd`` script, next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / "zwmd"
    if beside.exists():
        return str(beside)
    found = shutil.which("zwmd")
    if found is None:
        pytest.fail("the zwmd script is not installed (pip install -e .)")
    return found


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at the installed script (verify checks it exists)."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/zwmd/bin/zwmd serve" in text
    copy = tmp_path / "zwmd.service"
    copy.write_text(text.replace("/opt/zwmd/bin/zwmd", zwmd_executable()))
    return copy


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def test_unit_verifies(unit_copy: Path) -> None:
    result = run(systemd_analyze(), "verify", str(unit_copy), cwd=unit_copy.parent)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "zwmd.service" not in output, output


def test_unit_exposure_is_ok(unit_copy: Path) -> None:
    result = run(
        systemd_analyze(),
        "security",
        "--offline=yes",
        "--no-pager",
        str(unit_copy),
        cwd=unit_copy.parent,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for zwmd\.service: ([0-9.]+) (\w+)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output
    assert match.group(2) == "OK", output


def test_unit_is_a_notify_service_with_watchdog() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "zwmd"
    assert settings["EnvironmentFile"] == "-/etc/zwmd/zwmd.env"
    assert settings["WatchdogSec"].endswith("s")


def documented_variables() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_lists_every_variable() -> None:
    """Every seed variable, and every ZWMD_ variable the package names in a string."""
    used = set(SEED_VARIABLES)
    for source in (ROOT / "zwmd").rglob("*.py"):
        if "localkube" in source.parts:
            continue
        used.update(re.findall(r"[\"'](ZWMD_[A-Z0-9_]*[A-Z0-9])[\"']", source.read_text()))
    missing = sorted(used - documented_variables())
    assert not missing, f"add to {ENV_EXAMPLE.name}: {missing}"
