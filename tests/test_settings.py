"""Settings load the seeds' example configurations and resolve defaults and precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from zwmd.settings import (
    DEFAULT_BUILDER_IMAGE,
    BucketLocation,
    KubeAccess,
    Settings,
    SettingsError,
    load_settings,
)

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
SEED_RESOURCES = '{"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}}'
SEED_TOLERATIONS = (
    '[{"key": "node-pool", "operator": "Equal", "value": "zenml-pool", "effect": "NoSchedule"}]'
)
MINIMAL = {
    "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": (
        "zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager"
    ),
    f"{K}NAMESPACE": "zenml-workspace-namespace",
    f"{K}SERVICE_ACCOUNT": "zenml-workspace-service-account",
}
FULL_AWS = {
    **MINIMAL,
    "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": (
        "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager"
    ),
    f"{K}BUILD_RUNNER_IMAGE": "true",
    f"{K}DOCKER_REGISTRY": "339712793861.dkr.ecr.eu-central-1.amazonaws.com",
    f"{K}ENABLE_EXTERNAL_LOGS": "true",
    f"{K}POD_RESOURCES": SEED_RESOURCES,
    "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "s3://my-bucket/run-template-logs",
    "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": "eu-central-1",
    f"{K}NODE_SELECTOR": '{"node-pool": "zenml-pool"}',
    f"{K}TOLERATIONS": SEED_TOLERATIONS,
    "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "10",
}
FULL_GCP = {
    **MINIMAL,
    "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": (
        "zenml_cloud_plugins.gcp_kubernetes_workload_manager.GCPKubernetesWorkloadManager"
    ),
    f"{K}BUILD_RUNNER_IMAGE": "true",
    f"{K}DOCKER_REGISTRY": "europe-west3-docker.pkg.dev/zenml-project/zenml-snapshots/zenml",
    f"{K}POD_RESOURCES": SEED_RESOURCES,
    f"{K}NODE_SELECTOR": '{"node-pool": "zenml-pool"}',
    f"{K}TOLERATIONS": SEED_TOLERATIONS,
    "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "10",
}


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME is empty, so no real ~/.kube/config leaks in."""
    return {"HOME": str(tmp_path)}


def test_minimal_kubernetes_seed(home: dict[str, str]) -> None:
    settings = load_settings({**MINIMAL, **home})
    assert settings.implementation == "kubernetes"
    assert settings.namespace == "zenml-workspace-namespace"
    assert settings.service_account == "zenml-workspace-service-account"
    assert settings.build_runner_image is False
    assert settings.enable_external_logs is False
    assert settings.ttl_seconds_after_finished == 172800
    assert settings.job_backoff_limit == 0
    assert settings.max_concurrent_runs == 2
    assert settings.resources_spec() == {}
    assert settings.tolerations_spec() == []
    assert settings.node_selector_spec() == {}
    assert settings.pod_failure_policy_spec() is None
    assert settings.runner_image_mode == "reuse"
    assert settings.log_store == "file"
    assert settings.log_bucket is None
    assert settings.notes == ()


def test_full_aws_seed(home: dict[str, str]) -> None:
    settings = load_settings({**FULL_AWS, **home})
    assert settings.implementation == "aws"
    assert settings.runner_image_mode == "build"
    assert settings.registry_host == "339712793861.dkr.ecr.eu-central-1.amazonaws.com"
    assert settings.log_store == "s3"
    assert settings.log_bucket == BucketLocation("s3", "my-bucket", "run-template-logs")
    assert settings.aws_region == "eu-central-1"
    assert settings.resources_spec() == {
        "requests": {"cpu": "100m", "memory": "400Mi"},
        "limits": {"memory": "700Mi"},
    }
    assert settings.node_selector_spec() == {"node-pool": "zenml-pool"}
    assert settings.tolerations_spec() == [
        {"key": "node-pool", "operator": "Equal", "value": "zenml-pool", "effect": "NoSchedule"}
    ]
    assert settings.max_concurrent_runs == 10


def test_full_gcp_seed(home: dict[str, str]) -> None:
    settings = load_settings({**FULL_GCP, **home})
    assert settings.implementation == "gcp"
    assert settings.docker_registry == (
        "europe-west3-docker.pkg.dev/zenml-project/zenml-snapshots/zenml"
    )
    assert settings.registry_host == "europe-west3-docker.pkg.dev"
    assert settings.log_store == "file"
    assert settings.max_concurrent_runs == 10


def test_gcp_external_logs_go_to_gcs(home: dict[str, str]) -> None:
    settings = load_settings(
        {
            **FULL_GCP,
            **home,
            f"{K}ENABLE_EXTERNAL_LOGS": "true",
            "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "gs://zenml-logs/runner/",
        }
    )
    assert settings.log_store == "gcs"
    assert settings.log_bucket == BucketLocation("gs", "zenml-logs", "runner")


def test_kubernetes_external_logs_use_the_file_store(home: dict[str, str]) -> None:
    settings = load_settings({**MINIMAL, **home, f"{K}ENABLE_EXTERNAL_LOGS": "true"})
    assert settings.log_store == "file"
    assert any("file store" in note for note in settings.notes)


def test_third_party_implementation_names_its_own_log_store(home: dict[str, str]) -> None:
    env = {**MINIMAL, **home, f"{K}ENABLE_EXTERNAL_LOGS": "true", "ZWMD_IMPLEMENTATION": "azure"}
    settings = load_settings(env)
    assert (settings.implementation, settings.log_store) == ("azure", "azure")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("zwmd.zenml.WorkloadManager", "kubernetes"),
        ("kubernetes", "kubernetes"),
        ("aws", "aws"),
        ("my-plugin", "my-plugin"),
        (
            "zenml_cloud_plugins.azure_kubernetes_workload_manager.AzureKubernetesWorkloadManager",
            "azure",
        ),
    ],
)
def test_implementation_sources(home: dict[str, str], source: str, name: str) -> None:
    env = {**MINIMAL, **home, "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": source}
    assert load_settings(env).implementation == name


def test_implementation_defaults_to_kubernetes_and_zwmd_variable_overrides(
    home: dict[str, str],
) -> None:
    env = {**MINIMAL, **home}
    del env["ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE"]
    assert load_settings(env).implementation == "kubernetes"
    env["ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE"] = "zwmd.zenml.WorkloadManager"
    env["ZWMD_IMPLEMENTATION"] = "gcp"
    settings = load_settings(env)
    assert settings.implementation == "gcp"
    assert ("ZWMD_IMPLEMENTATION", "gcp", "env") in settings.describe()


@pytest.mark.parametrize(
    ("template", "snapshot", "expected", "noted"),
    [
        ("7", None, 7, False),
        (None, "5", 5, False),
        ("5", "5", 5, False),
        ("10", "3", 3, True),
    ],
)
def test_both_concurrency_names(
    home: dict[str, str], template: str | None, snapshot: str | None, expected: int, noted: bool
) -> None:
    env = {**MINIMAL, **home}
    if template is not None:
        env["ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS"] = template
    if snapshot is not None:
        env["ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS"] = snapshot
    settings = load_settings(env)
    assert settings.max_concurrent_runs == expected
    assert any("the newer name wins" in note for note in settings.notes) is noted


def test_daemon_defaults(home: dict[str, str]) -> None:
    settings = load_settings({**MINIMAL, **home})
    assert (settings.api_host, settings.api_port, settings.api_socket) == ("127.0.0.1", 8390, None)
    assert settings.api_token is None
    assert settings.state_dir == Path(home["HOME"]) / ".local/state/zwmd"
    assert settings.metrics_port is None
    assert settings.builder_image == DEFAULT_BUILDER_IMAGE
    assert settings.builder_args == ()
    assert settings.insecure_registries == ()
    assert settings.image_pull_grace_seconds == 60
    assert settings.unschedulable_deadline_seconds == 300
    assert settings.watch_inactivity_timeout_seconds == 300
    assert settings.log_inactivity_timeout_seconds == 60
    assert settings.secret_name_pattern == "TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL"
    assert settings.kube_access == KubeAccess("none")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/zwmd:/var/lib/other"}, "/var/lib/zwmd"),
        ({"XDG_STATE_HOME": "/srv/state"}, "/srv/state/zwmd"),
        ({"ZWMD_STATE_DIR": "/data/zwmd", "STATE_DIRECTORY": "/var/lib/zwmd"}, "/data/zwmd"),
    ],
)
def test_state_dir_sources(home: dict[str, str], extra: dict[str, str], expected: str) -> None:
    assert load_settings({**MINIMAL, **home, **extra}).state_dir == Path(expected)


def test_daemon_variables_are_parsed(home: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"auths": {"registry.example": {"auth": "dTpw"}}}')
    settings = load_settings(
        {
            **MINIMAL,
            **home,
            "ZWMD_API_HOST": "::1",
            "ZWMD_API_PORT": "0",
            "ZWMD_METRICS_PORT": "9390",
            "ZWMD_LOG_STORE": "memory",  # a plugin's store (see tests/example_plugin)
            "ZWMD_BUILDER_IMAGE": "registry.example/tools/kaniko:v1.25@sha256:" + "a" * 64,
            "ZWMD_BUILDER_ARGS": "--cache=true --snapshot-mode='redo'",
            "ZWMD_BUILDER_RESOURCES": '{"limits": {"memory": "2Gi", "cpu": 2}}',
            "ZWMD_REGISTRY_CONFIG": str(config),
            "ZWMD_REGISTRY_SECRET": "zwmd-registry",
            "ZWMD_INSECURE_REGISTRIES": "registry.example:5000, 127.0.0.1:5001,",
            "ZWMD_IMAGE_PULL_GRACE_SECONDS": "0.5",
            "ZWMD_SECRET_NAME_PATTERN": " ^DB_|TOKEN ",
            f"{K}POD_FAILURE_POLICY": (
                '{"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},'
                ' {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1, 2]}}]}'
            ),
        }
    )
    assert settings.api_host == "::1"
    assert settings.api_port == 0
    assert settings.metrics_port == 9390
    assert settings.log_store == "memory"
    assert settings.builder_args == ("--cache=true", "--snapshot-mode=redo")
    assert settings.builder_resources_spec() == {"limits": {"memory": "2Gi", "cpu": "2"}}
    assert settings.registry_config == config
    assert settings.insecure_registries == ("registry.example:5000", "127.0.0.1:5001")
    assert settings.image_pull_grace_seconds == 0.5
    assert settings.secret_name_pattern == "^DB_|TOKEN"
    assert settings.pod_failure_policy_spec() == {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2, 3]}},
        ]
    }


def test_builder_args_as_json_list(home: dict[str, str]) -> None:
    env = {**MINIMAL, **home, "ZWMD_BUILDER_ARGS": '["--label", "team=ml ops"]'}
    assert load_settings(env).builder_args == ("--label", "team=ml ops")


def test_builder_resources_default_to_the_pod_resources(home: dict[str, str]) -> None:
    settings = load_settings({**MINIMAL, **home, f"{K}POD_RESOURCES": SEED_RESOURCES})
    assert settings.builder_resources_spec() == settings.resources_spec()


def test_specs_are_copies(home: dict[str, str]) -> None:
    settings = load_settings({**FULL_AWS, **home})
    settings.tolerations_spec()[0]["key"] = "changed"
    settings.resources_spec()["requests"]["cpu"] = "9"
    assert settings.tolerations_spec()[0]["key"] == "node-pool"
    assert settings.resources_spec()["requests"]["cpu"] == "100m"


def test_empty_values_count_as_unset(home: dict[str, str]) -> None:
    env = {**MINIMAL, **home, f"{K}DOCKER_REGISTRY": "", f"{K}TOLERATIONS": "  "}
    settings = load_settings(env)
    assert settings.docker_registry is None
    assert settings.tolerations == []


def test_token_from_file_is_masked_and_sourced(home: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token-value\n")
    settings = load_settings({**MINIMAL, **home, "ZWMD_API_TOKEN_FILE": str(token_file)})
    assert settings.api_token_value() == "s3cr3t-token-value"
    rows = {variable: (value, source) for variable, value, source in settings.describe()}
    assert rows["ZWMD_API_TOKEN"] == ("***", f"file {token_file}")
    assert "s3cr3t" not in repr(settings)
    assert all("s3cr3t" not in value for _, value, _ in settings.describe())


def test_describe_sources(home: dict[str, str]) -> None:
    rows = {
        variable: (value, source)
        for variable, value, source in load_settings({**FULL_AWS, **home}).describe()
    }
    assert rows[f"{K}NAMESPACE"] == ("zenml-workspace-namespace", "env")
    assert rows[f"{K}TTL_SECONDS_AFTER_FINISHED"] == ("172800", "default")
    assert rows["ZWMD_LOG_STORE"] == ("s3", f"derived from {K}ENABLE_EXTERNAL_LOGS")
    assert rows["ZWMD_API_TOKEN"] == ("(not set)", "default")
    assert rows["(runner image mode)"] == ("build", "derived")


def test_local_mode_needs_no_variables(home: dict[str, str]) -> None:
    settings = load_settings(home, local=True)
    assert (settings.namespace, settings.service_account) == ("default", "default")
    assert settings.kube_access == KubeAccess("local")
    with pytest.raises(SettingsError):
        load_settings(home)


def test_kubernetes_access(home: dict[str, str], tmp_path: Path) -> None:
    env = {**MINIMAL, **home}
    assert load_settings({**env, "KUBERNETES_SERVICE_HOST": "10.0.0.1"}).kube_access == (
        KubeAccess("in-cluster")
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    access = load_settings({**env, "KUBECONFIG": f"/missing:{kubeconfig}"}).kube_access
    assert access == KubeAccess("kubeconfig", (Path("/missing"), kubeconfig))
    default = Path(home["HOME"]) / ".kube" / "config"
    default.parent.mkdir()
    default.write_text("apiVersion: v1\n")
    assert load_settings(env).kube_access == KubeAccess("kubeconfig", (default,))
    assert str(load_settings(env).kube_access) == f"kubeconfig {default}"


def test_keyword_construction_goes_through_the_same_checks() -> None:
    settings = Settings(namespace="runners", service_account="runner", tolerations=[])
    assert settings.namespace == "runners"
    with pytest.raises(SettingsError) as caught:
        Settings(namespace="Bad_Name", service_account="runner")
    assert str(caught.value).startswith(f"{K}NAMESPACE: ")


def test_settings_are_frozen(home: dict[str, str]) -> None:
    settings = load_settings({**MINIMAL, **home})
    with pytest.raises(ValueError, match="frozen"):
        settings.namespace = "other"


def test_every_field_declares_its_variable_and_an_example() -> None:
    for name, field in Settings.model_fields.items():
        assert field.validation_alias, name
        assert field.examples, name
        assert field.json_schema_extra is None, name


def test_variable_names_are_exact(home: dict[str, str]) -> None:
    env = {**MINIMAL, **home, "api_port": "1", "zwmd_api_port": "2", "namespace": "other"}
    settings = load_settings(env)
    assert settings.api_port == 8390
    assert settings.namespace == "zenml-workspace-namespace"


def test_a_miscased_name_with_a_zwmd_prefix_is_refused_with_the_right_spelling(
    home: dict[str, str],
) -> None:
    env = {**MINIMAL, **home, "ZWMD_Api_Port": "3", f"{K}namespace": "other"}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{K}namespace: is not a variable zwmd reads; did you mean {K}NAMESPACE?",
        "ZWMD_Api_Port: is not a variable zwmd reads; did you mean ZWMD_API_PORT?",
    ]


def test_an_explicit_environment_ignores_the_process_one(
    home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZWMD_API_PORT", "9999")
    monkeypatch.setenv("ZWMD_IMPLEMENTATION", "gcp")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    settings = load_settings({**MINIMAL, **home})
    assert (settings.api_port, settings.implementation) == (8390, "kubernetes")
    assert settings.kube_access == KubeAccess("none")


def test_without_a_context_the_process_environment_is_read(
    home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        **FULL_AWS,
        **home,
        "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS": "4",
    }.items():
        monkeypatch.setenv(name, value)
    process = Settings.model_validate({})
    assert process.describe() == load_settings().describe()
    assert process.notes == load_settings().notes
    keywords = Settings(namespace="runners", service_account="runner")
    assert (keywords.namespace, keywords.aws_region) == ("runners", "eu-central-1")


@pytest.mark.parametrize(("value", "expected"), [(None, 60.0), ("5", 5.0), ("0", None)])
def test_log_inactivity_timeout_reaches_the_log_pipeline(
    home: dict[str, str], value: str | None, expected: float | None
) -> None:
    from zwmd.daemon.starting import daemon_config

    env = {**MINIMAL, **home}
    if value is not None:
        env["ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS"] = value
    config = daemon_config(load_settings(env), kubeconfig=None)
    assert config.log_timing.inactivity_timeout == expected  # 0: never renewed
