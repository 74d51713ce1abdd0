"""One judgement of the configuration: ``zwmd config``, ``zwmd doctor`` and ``zwmd serve``
refuse the same configurations, exit 2, with the same lines.

Each command runs as a subprocess with an environment of its own, as an operator runs it,
against a kubeconfig that exists (so nothing below is about reaching a cluster: every
case must be refused before one is contacted).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zwmd.apiclient.config import ClientConfig
from zwmd.plugins import DISABLE_VARIABLE, disabled_plugins
from zwmd.settings import Settings
from zwmd.settings.spelling import READ_ELSEWHERE, unknown_variables

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
AWS_CLASS = "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager"

CASES = {
    "a misspelt variable": (
        {f"{K}NAMSPACE": "typo"},
        [
            f"{K}NAMSPACE: is not a variable zwmd reads; did you mean {K}NAMESPACE?",
        ],
    ),
    "an unknown zwmd variable": (
        {"ZWMD_LOG_STOR": "file", "ZWMD_NOTHING_LIKE_IT": "1"},
        [
            "ZWMD_LOG_STOR: is not a variable zwmd reads; did you mean ZWMD_LOG_STORE?",
            "ZWMD_NOTHING_LIKE_IT: is not a variable zwmd reads; unset it",
        ],
    ),
    "the aws implementation without its plugin": (
        {
            "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": AWS_CLASS,
            "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "s3://logs/zwmd",
            "ZWMD_DISABLE_PLUGINS": "aws",
        },
        [
            "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE: implementation 'aws' is "
            "not installed (installed: gcp, kubernetes); install the zwmd-aws plugin: "
            "pip install ./plugins/zwmd-aws in zwmd's source (e.g. kubernetes)",
        ],
    ),
    "a log store no plugin provides": (
        {"ZWMD_LOG_STORE": "nosuch"},
        ["ZWMD_LOG_STORE: no installed plugin provides the log store 'nosuch' (e.g. file)"],
    ),
    "disabling the builtin": (
        {"ZWMD_DISABLE_PLUGINS": "kubernetes"},
        [
            "ZWMD_DISABLE_PLUGINS: kubernetes is zwmd's builtin implementation and cannot "
            "be disabled (e.g. aws,gcp)"
        ],
    ),
    "disabling a plugin that is not installed": (
        {"ZWMD_DISABLE_PLUGINS": "nosuch"},
        [
            "ZWMD_DISABLE_PLUGINS: 'nosuch' is not an installed plugin "
            "(installed: aws, gcp) (e.g. aws,gcp)"
        ],
    ),
}


@pytest.fixture
def base_environment(tmp_path: Path) -> dict[str, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZWMD_", "ZENML_", "KUBE"))
    }
    return {
        **inherited,
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "ZWMD_STATE_DIR": str(tmp_path / "state"),
        f"{K}NAMESPACE": "runners",
        f"{K}SERVICE_ACCOUNT": "runner",
    }


def problems_of(command: str, env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "zwmd", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (done.stdout + done.stderr).splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("zwmd: invalid configuration")]
    assert len(headers) == 1, lines
    return done.returncode, [line.strip() for line in lines[headers[0] + 1 :]]


@pytest.mark.parametrize("case", list(CASES))
def test_config_doctor_and_serve_refuse_alike(case: str, base_environment: dict[str, str]) -> None:
    variables, expected = CASES[case]
    env = {**base_environment, **variables}
    answers = {command: problems_of(command, env) for command in ("config", "doctor", "serve")}
    assert answers == {command: (2, expected) for command in answers}


def test_the_sound_configuration_of_those_cases_passes(base_environment: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zwmd", "config"],
        env={**base_environment, "ZWMD_DISABLE_PLUGINS": "aws,gcp"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "runners" in done.stdout


class _Recording(dict[str, str]):
    """An empty environment that remembers every name asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return default


def test_the_variables_read_outside_settings_are_exactly_those_listed() -> None:
    recording = _Recording()
    ClientConfig.from_env(recording)
    disabled_plugins(recording)
    own = {name for field in Settings.model_fields.values() for name in _aliases(field)}
    read_elsewhere = {name for name in recording.asked if name.startswith("ZWMD_")} - own
    assert read_elsewhere == set(READ_ELSEWHERE)
    assert DISABLE_VARIABLE in READ_ELSEWHERE


def _aliases(field: object) -> list[str]:
    alias = getattr(field, "validation_alias", None)
    choices = getattr(alias, "choices", None)
    return [str(name) for name in choices] if choices else [str(alias)]


def test_the_test_suites_reserved_prefix_is_never_flagged() -> None:
    environ = {"ZWMD_TEST_KUBERNETES_VERSION": "1.24", "ZWMD_TESTING": "x", "PATH": "/bin"}
    assert [p.variable for p in unknown_variables(environ, known=())] == ["ZWMD_TESTING"]
