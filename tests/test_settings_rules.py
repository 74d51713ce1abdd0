"""Every rule: one bad value gives exactly one line naming the variable, fault and example."""

from __future__ import annotations

from pathlib import Path

import pytest

from zwmd.settings import SettingsError, format_problems, load_settings

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"

# (environment on top of a valid minimal one, the one problem line expected)
CASES: list[tuple[dict[str, str], str]] = [
    (
        {"ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": "zenml_cloud_plugins.Other"},
        'ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE: "zenml_cloud_plugins.Other" is neither a workload manager class path zwmd knows nor a plugin name (kubernetes, aws, gcp, ...) (e.g. zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager)',
    ),
    (
        {K + "NAMESPACE": "Zenml_NS"},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_NAMESPACE: \"Zenml_NS\" must be lower-case letters, digits and '-', starting and ending alphanumeric (e.g. zenml-workspace-namespace)",
    ),
    (
        {K + "SERVICE_ACCOUNT": "-sa"},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_SERVICE_ACCOUNT: \"-sa\" must be lower-case letters, digits, '-' and '.', each part starting and ending alphanumeric (e.g. zenml-workspace-service-account)",
    ),
    (
        {K + "BUILD_RUNNER_IMAGE": "maybe"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_BUILD_RUNNER_IMAGE: "maybe" is not a boolean (use true or false) (e.g. true)',
    ),
    (
        {K + "DOCKER_REGISTRY": "https://registry.example/team"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_DOCKER_REGISTRY: "https://registry.example/team" must not carry a scheme (drop https://) (e.g. registry.example:5000/zenml)',
    ),
    (
        {K + "DOCKER_REGISTRY": "registry.example/Team:latest"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_DOCKER_REGISTRY: "registry.example/Team:latest": path component "Team:latest" must be lower-case letters, digits and . _ - separators (no tag or digest) (e.g. registry.example:5000/zenml)',
    ),
    (
        {K + "RUNNER_IMAGE": "registry.example/zenml runner"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_RUNNER_IMAGE: "registry.example/zenml runner" is not an image reference (e.g. registry.example/zenml/runner:0.98.0)',
    ),
    (
        {K + "ENABLE_EXTERNAL_LOGS": "yes please"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS: "yes please" is not a boolean (use true or false) (e.g. true)',
    ),
    (
        {K + "POD_RESOURCES": "{cpu: 1}"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES: is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2) (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {K + "POD_RESOURCES": '{"requests": {"cpu": "1.5.0"}}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES: requests.cpu: "1.5.0" is not a Kubernetes quantity (a number with an optional suffix: m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3) (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {K + "POD_RESOURCES": '{"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES: requests.memory "2Gi" is more than limits.memory "1Gi" (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {K + "POD_RESOURCES": '{"requets": {}}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES: unknown key "requets" (only requests and limits) (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {K + "POD_RESOURCES": '{"limits": {"cpu": "-1"}}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_RESOURCES: limits.cpu: "-1" must not be negative (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {K + "TTL_SECONDS_AFTER_FINISHED": "2d"},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TTL_SECONDS_AFTER_FINISHED: "2d" is not a whole number (e.g. 172800)',
    ),
    (
        {K + "TTL_SECONDS_AFTER_FINISHED": "-1"},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_TTL_SECONDS_AFTER_FINISHED: -1 is out of range (must be at least 0) (e.g. 172800)",
    ),
    (
        {K + "NODE_SELECTOR": '["node-pool"]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_NODE_SELECTOR: must be a JSON object of label key to value, not ["node-pool"] (e.g. {"node-pool": "zenml-pool"})',
    ),
    (
        {K + "NODE_SELECTOR": '{"node pool": "zenml"}'},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_NODE_SELECTOR: key \"node pool\" must be at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric (e.g. {\"node-pool\": \"zenml-pool\"})",
    ),
    (
        {K + "NODE_SELECTOR": '{"pool": "a/b"}'},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_NODE_SELECTOR: value \"a/b\" must be at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric (e.g. {\"node-pool\": \"zenml-pool\"})",
    ),
    (
        {K + "NODE_SELECTOR": '{"pool": 3}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_NODE_SELECTOR: key "pool": value 3 must be a string (e.g. {"node-pool": "zenml-pool"})',
    ),
    (
        {K + "TOLERATIONS": '{"key": "a"}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: must be a JSON list of toleration objects, not {"key": "a"} (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {
            K
            + "TOLERATIONS": '[{"key": "pool", "operator": "Equals", "value": "zenml", "effect": "NoSchedule"}]'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: operator "Equals" is not one of Exists, Equal (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"key": "pool", "operator": "Exists", "value": "zenml"}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: operator "Exists" must not have a value (got "zenml") (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"key": "pool", "effect": "NoSchedule", "tolerationSeconds": 30}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: tolerationSeconds is only allowed with effect "NoExecute" (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"key": "pool", "effect": "Never"}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: effect "Never" is not one of NoSchedule, PreferNoSchedule, NoExecute (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"operator": "Equal", "value": "x"}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: an empty key needs operator "Exists" (it matches every taint) (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"key": "pool", "effect": "NoExecute", "tolerationSeconds": "30"}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: tolerationSeconds "30" must be a whole number (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "TOLERATIONS": '[{"key": "pool", "valu": "x"}]'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_TOLERATIONS: item 0: unknown field "valu" (known: key, operator, value, effect, tolerationSeconds) (e.g. [{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}])',
    ),
    (
        {K + "JOB_BACKOFF_LIMIT": "-2"},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_JOB_BACKOFF_LIMIT: -2 is out of range (must be at least 0) (e.g. 0)",
    ),
    (
        {K + "POD_FAILURE_POLICY": '{"rules": []}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rules must be a non-empty list (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: action "Retry" is not one of FailJob, Ignore, Count, FailIndex (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: action "FailIndex" needs an indexed Job with backoffLimitPerIndex, which zwmd does not create; use FailJob (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {K + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob"}]}'},
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: needs exactly one of onExitCodes and onPodConditions (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}, "onPodConditions": [{"type": "DisruptionTarget"}]}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: needs exactly one of onExitCodes and onPodConditions (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "Equals", "values": [1]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onExitCodes.operator "Equals" is not one of In, NotIn (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 1]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onExitCodes.values must not contain 0 with operator "In" (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": ["1"]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onExitCodes.values ["1"] must all be whole numbers (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1, 1]}}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onExitCodes.values [1, 1] has duplicates (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "Ignore", "onPodConditions": [{"status": "True"}]}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onPodConditions[0].type is required, such as DisruptionTarget (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {
            K
            + "POD_FAILURE_POLICY": '{"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "Yes"}]}]}'
        },
        'ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY: rule 0: onPodConditions[0].status "Yes" is not one of True, False, Unknown (e.g. {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})',
    ),
    (
        {"ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "0"},
        "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS: 0 is out of range (must be at least 1) (e.g. 2)",
    ),
    (
        {"ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS": "many"},
        'ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS: "many" is not a whole number (e.g. 2)',
    ),
    (
        {"ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "my-bucket/logs"},
        'ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET: "my-bucket/logs" must start with s3:// (e.g. s3://zenml-logs/runner-logs)',
    ),
    (
        {"ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "s3://My_Bucket/logs"},
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET: bucket name \"My_Bucket\" must be 3-63 lower-case letters, digits, '-' or '.', starting and ending alphanumeric (e.g. s3://zenml-logs/runner-logs)",
    ),
    (
        {"ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": "Frankfurt"},
        'ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION: "Frankfurt" is not an AWS region name (e.g. eu-central-1)',
    ),
    (
        {"ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET": "s3://bucket"},
        'ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET: "s3://bucket" must start with gs:// (e.g. gs://zenml-logs/runner-logs)',
    ),
    (
        {"ZWMD_API_HOST": "not a host"},
        'ZWMD_API_HOST: "not a host" is not an IP address or host name (e.g. 127.0.0.1)',
    ),
    (
        {"ZWMD_API_PORT": "70000"},
        "ZWMD_API_PORT: 70000 is out of range (must be 0 to 65535) (e.g. 8390)",
    ),
    (
        {"ZWMD_API_SOCKET": "run/zwmd.sock"},
        'ZWMD_API_SOCKET: "run/zwmd.sock" is not an absolute path (e.g. /run/zwmd/api.sock)',
    ),
    (
        {
            "ZWMD_API_SOCKET": "/ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
        },
        'ZWMD_API_SOCKET: "/ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss" is longer than a Unix socket path may be (107 bytes) (e.g. /run/zwmd/api.sock)',
    ),
    (
        {"ZWMD_API_TOKEN": "two words"},
        "ZWMD_API_TOKEN: contains whitespace or control characters (e.g. the output of `openssl rand -hex 32`)",
    ),
    (
        {"ZWMD_API_TOKEN_FILE": "/nonexistent/token"},
        "ZWMD_API_TOKEN_FILE: cannot read /nonexistent/token: No such file or directory (e.g. /run/credentials/zwmd.service/api-token)",
    ),
    (
        {"ZWMD_STATE_DIR": "state"},
        'ZWMD_STATE_DIR: "state" is not an absolute path (e.g. /var/lib/zwmd)',
    ),
    ({"ZWMD_METRICS_PORT": "http"}, 'ZWMD_METRICS_PORT: "http" is not a whole number (e.g. 9390)'),
    (
        {"ZWMD_LOG_STORE": "S3!"},
        'ZWMD_LOG_STORE: "S3!" is not a log store name (file, s3, gcs, ...) (e.g. file)',
    ),
    (
        {"ZWMD_LOG_STORE": "pod"},
        'ZWMD_LOG_STORE: "pod" is not a log store; logs go to file, s3, gcs, ... (e.g. file)',
    ),
    (
        {"ZWMD_BUILDER_IMAGE": "kaniko:"},
        'ZWMD_BUILDER_IMAGE: "kaniko:" has an invalid tag "" (e.g. cgr.dev/chainguard/kaniko:latest)',
    ),
    (
        {"ZWMD_BUILDER_ARGS": "--label 'unterminated"},
        'ZWMD_BUILDER_ARGS: cannot be split like a shell command line (No closing quotation) (e.g. ["--snapshot-mode=redo", "--cache=true"])',
    ),
    (
        {"ZWMD_BUILDER_ARGS": '["--cache", 1]'},
        'ZWMD_BUILDER_ARGS: must be a list of strings (e.g. ["--snapshot-mode=redo", "--cache=true"])',
    ),
    (
        {"ZWMD_BUILDER_RESOURCES": '{"limits": {"memory": "lots"}}'},
        'ZWMD_BUILDER_RESOURCES: limits.memory: "lots" is not a Kubernetes quantity (a number with an optional suffix: m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3) (e.g. {"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}})',
    ),
    (
        {"ZWMD_REGISTRY_CONFIG": "/nonexistent/config.json"},
        "ZWMD_REGISTRY_CONFIG: cannot read /nonexistent/config.json: No such file or directory (e.g. /etc/zwmd/docker/config.json)",
    ),
    (
        {"ZWMD_REGISTRY_SECRET": "Registry Secret"},
        "ZWMD_REGISTRY_SECRET: \"Registry Secret\" must be lower-case letters, digits, '-' and '.', each part starting and ending alphanumeric (e.g. zwmd-registry-credentials)",
    ),
    (
        {"ZWMD_INSECURE_REGISTRIES": "registry.example:99999"},
        'ZWMD_INSECURE_REGISTRIES: port 99999 in "registry.example:99999" is out of range (e.g. registry.example:5000,127.0.0.1:5001)',
    ),
    (
        {"ZWMD_IMAGE_PULL_GRACE_SECONDS": "soon"},
        'ZWMD_IMAGE_PULL_GRACE_SECONDS: "soon" is not a number of seconds (e.g. 60)',
    ),
    (
        {"ZWMD_UNSCHEDULABLE_DEADLINE_SECONDS": "-5"},
        'ZWMD_UNSCHEDULABLE_DEADLINE_SECONDS: "-5" must be a finite number of seconds, 0 or more (e.g. 300)',
    ),
    (
        {"ZWMD_WATCH_INACTIVITY_TIMEOUT_SECONDS": "inf"},
        'ZWMD_WATCH_INACTIVITY_TIMEOUT_SECONDS: "inf" must be a finite number of seconds, 0 or more (e.g. 300)',
    ),
    (
        {"ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS": "-1"},
        'ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS: "-1" must be a finite number of seconds, 0 or more (e.g. 60)',
    ),
    (
        {"KUBECONFIG": "/nonexistent/kubeconfig"},
        "KUBECONFIG: no file exists at /nonexistent/kubeconfig (e.g. /etc/zwmd/kubeconfig)",
    ),
    (
        {K + "BUILD_RUNNER_IMAGE": "true"},
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_DOCKER_REGISTRY: is required when ZENML_KUBERNETES_WORKLOAD_MANAGER_BUILD_RUNNER_IMAGE is true (e.g. registry.example:5000/zenml)",
    ),
    (
        {
            K + "ENABLE_EXTERNAL_LOGS": "true",
            "ZWMD_IMPLEMENTATION": "aws",
            "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": "eu-central-1",
        },
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET: is required when ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS is true (logs go to S3) (e.g. s3://zenml-logs/runner-logs)",
    ),
    (
        {K + "ENABLE_EXTERNAL_LOGS": "true", "ZWMD_IMPLEMENTATION": "gcp"},
        "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET: is required when ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS is true (logs go to GCS) (e.g. gs://zenml-logs/runner-logs)",
    ),
    (
        {"ZWMD_LOG_STORE": "s3"},
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET: is required when ZWMD_LOG_STORE is s3 (logs go to S3) (e.g. s3://zenml-logs/runner-logs)",
    ),
    (
        {
            "ZWMD_IMPLEMENTATION": "aws",
            K + "BUILD_RUNNER_IMAGE": "true",
            K + "DOCKER_REGISTRY": "registry.example",
        },
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION: is required with the aws implementation when building or storing logs (e.g. eu-central-1)",
    ),
    (
        {K + "ENABLE_EXTERNAL_LOGS": "true", "ZWMD_LOG_STORE": "pod"},
        'ZWMD_LOG_STORE: "pod" is not a log store; logs go to file, s3, gcs, ... (e.g. file)',
    ),
    (
        {"ZWMD_API_HOST": "0.0.0.0"},
        "ZWMD_API_HOST: 0.0.0.0 is not a loopback address, so ZWMD_API_TOKEN or ZWMD_API_TOKEN_FILE is required (e.g. 127.0.0.1)",
    ),
    (
        {"ZWMD_API_TOKEN": "abc", "ZWMD_API_TOKEN_FILE": "/etc/hostname"},
        "ZWMD_API_TOKEN_FILE: is set together with ZWMD_API_TOKEN; set only one (e.g. /run/credentials/zwmd.service/api-token)",
    ),
    (
        {"ZWMD_METRICS_PORT": "8390"},
        "ZWMD_METRICS_PORT: must differ from ZWMD_API_PORT (8390) (e.g. 9390)",
    ),
    (
        {"ZWMD_SECRET_NAME_PATTERN": "TOKEN|"},
        "ZWMD_SECRET_NAME_PATTERN: \"TOKEN|\" matches the empty name, so every variable (write '.' for that) (e.g. TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|^AWS_)",
    ),
    (
        {"ZWMD_SECRET_NAME_PATTERN": "TOKEN("},
        'ZWMD_SECRET_NAME_PATTERN: "TOKEN(" is not a regular expression (missing ), unterminated subpattern at position 5) (e.g. TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|^AWS_)',
    ),
]


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    return {K + "NAMESPACE": "ns", K + "SERVICE_ACCOUNT": "sa", "HOME": str(tmp_path)}


@pytest.mark.parametrize(("env", "line"), CASES, ids=[line.split(":")[0] for _, line in CASES])
def test_rule(base: dict[str, str], env: dict[str, str], line: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, **env})
    assert [str(problem) for problem in caught.value.problems] == [line]


def test_required_variables(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"HOME": str(tmp_path)})
    assert str(caught.value).splitlines() == [
        f"{K}NAMESPACE: is required and not set (e.g. zenml-workspace-namespace)",
        f"{K}SERVICE_ACCOUNT: is required and not set (e.g. zenml-workspace-service-account)",
    ]


def test_all_problems_are_reported_in_variable_order(base: dict[str, str]) -> None:
    env = {
        **base,
        "ZWMD_API_PORT": "http",
        K + "TOLERATIONS": '[{"key": "a", "operator": "Equals"}, {"key": "b", "effect": "Soon"}]',
        K + "BUILD_RUNNER_IMAGE": "true",
        K + "NAMESPACE": "Bad",
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": "mars",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert [(p.variable, p.fault.split(" ")[0]) for p in caught.value.problems] == [
        (K + "NAMESPACE", '"Bad"'),
        (K + "DOCKER_REGISTRY", "is"),
        (K + "TOLERATIONS", "item"),
        (K + "TOLERATIONS", "item"),
        ("ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION", '"mars"'),
        ("ZWMD_API_PORT", '"http"'),
    ]


def test_rules_skip_values_that_do_not_parse(base: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, K + "BUILD_RUNNER_IMAGE": "perhaps"})
    assert [p.variable for p in caught.value.problems] == [K + "BUILD_RUNNER_IMAGE"]


@pytest.mark.parametrize(
    "env",
    [
        {"ZWMD_API_TOKEN": "hunter2 hunter2"},
        {"ZWMD_API_TOKEN": "hunter2\x07"},
        {"ZWMD_API_TOKEN": "hunter2", "ZWMD_API_TOKEN_FILE": "/etc/hostname"},
    ],
)
def test_a_secret_is_never_echoed(base: dict[str, str], env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, **env})
    assert "hunter2" not in format_problems(caught.value)


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("", "is empty"),
        ("two words\n", "holds whitespace or control characters"),
    ],
)
def test_token_file_content(base: dict[str, str], tmp_path: Path, content: str, fault: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, "ZWMD_API_TOKEN_FILE": str(token_file)})
    assert [str(p) for p in caught.value.problems] == [
        f"ZWMD_API_TOKEN_FILE: {token_file} {fault} (e.g. /run/credentials/zwmd.service/api-token)"
    ]


def test_a_token_or_a_socket_allows_a_public_address(base: dict[str, str]) -> None:
    public = {**base, "ZWMD_API_HOST": "0.0.0.0"}
    assert load_settings({**public, "ZWMD_API_TOKEN": "t0ken"}).api_token_value() == "t0ken"
    socket = load_settings({**public, "ZWMD_API_SOCKET": "/run/zwmd/api.sock"})
    assert socket.requires_token is False
    assert any("ZWMD_API_SOCKET is set" in note for note in socket.notes)


def test_registry_config_that_is_not_a_docker_config(base: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"auths": ["secret-looking-content"]}')
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, "ZWMD_REGISTRY_CONFIG": str(config)})
    assert "secret-looking-content" not in str(caught.value)
    assert "is not a docker config file" in str(caught.value)


def test_runner_image_is_noted_as_ignored_while_building(base: dict[str, str]) -> None:
    settings = load_settings(
        {
            **base,
            K + "BUILD_RUNNER_IMAGE": "true",
            K + "DOCKER_REGISTRY": "registry.example:5000/team",
            K + "RUNNER_IMAGE": "registry.example/zenml/runner:1",
        }
    )
    assert settings.runner_image_mode == "build"
    assert settings.registry_host == "registry.example:5000"
    assert any("RUNNER_IMAGE is ignored" in note for note in settings.notes)


def test_format_problems(base: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**base, "ZWMD_API_PORT": "x"})
    assert format_problems(caught.value) == (
        "zwmd: invalid configuration (1 problem):\n"
        '  ZWMD_API_PORT: "x" is not a whole number (e.g. 8390)'
    )


def test_an_override_variable_is_reported_at_its_field(base: dict[str, str]) -> None:
    env = {
        **base,
        "ZWMD_API_PORT": "x",
        "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS": "0",
        "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS": "3",
        "ZWMD_IMPLEMENTATION": "Not A Plugin",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert [str(p) for p in caught.value.problems] == [
        'ZWMD_IMPLEMENTATION: "Not A Plugin" is neither a workload manager class path zwmd knows nor a plugin name (kubernetes, aws, gcp, ...) (e.g. zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager)',
        "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS: 0 is out of range (must be at least 1) (e.g. 2)",
        'ZWMD_API_PORT: "x" is not a whole number (e.g. 8390)',
    ]
