"""Kubernetes shapes: quantities, labels and the normalised specs handed to Job specs."""

from __future__ import annotations

from fractions import Fraction

import pytest

from zwmd.settings import kubeshapes as ks


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Fraction(1, 10)),
        ("1.5", Fraction(3, 2)),
        ("400Mi", 400 * 2**20),
        ("1Gi", 2**30),
        ("2e3", 2000),
        ("1E-3", Fraction(1, 1000)),
        ("0.5k", 500),
        (".5", Fraction(1, 2)),
        ("+3", 3),
        ("1M", 10**6),
    ],
)
def test_quantities(text: str, value: Fraction) -> None:
    assert ks.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.5.0", "Mi", "1mi", "1 Gi", "1Gb", "1e", "1e3.5", "--1"])
def test_not_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        ks.parse_quantity(text)


def test_resources_accept_json_numbers_and_compare_exactly() -> None:
    spec = ks.validate_resources(
        {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1024Mi"}}
    )
    assert spec == {
        "requests": {"cpu": "0.5", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1024Mi"},
    }
    assert ks.validate_resources({"requests": {}, "limits": {"nvidia.com/gpu": "1"}}) == {
        "limits": {"nvidia.com/gpu": "1"}
    }


def test_resources_report_every_fault() -> None:
    with pytest.raises(ks.ShapeError) as caught:
        ks.validate_resources({"requests": {"cpu": "x", "bad name!": "1"}, "limits": []})
    assert len(caught.value.faults) == 3


@pytest.mark.parametrize(
    "key", ["node-pool", "example.com/pool", "kubernetes.io/arch", "a", "A_b.c"]
)
def test_label_keys(key: str) -> None:
    assert ks.check_qualified_name(key) is None


@pytest.mark.parametrize("key", ["", "/pool", "Example.com/pool", "-pool", "a" * 64, "pool/"])
def test_bad_label_keys(key: str) -> None:
    assert ks.check_qualified_name(key) is not None


def test_tolerations_follow_the_api_server() -> None:
    valid = [
        {"operator": "Exists"},
        {"key": "pool", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        {"key": "pool", "value": "zenml"},
        {"key": "pool", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
    ]
    assert ks.validate_tolerations(valid) == valid


def test_pod_failure_policy_normalises() -> None:
    policy = {
        "rules": [
            {
                "action": "Count",
                "onExitCodes": {
                    "containerName": "runner",
                    "operator": "NotIn",
                    "values": [2, 0, 1],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}],
            },
        ]
    }
    assert ks.validate_pod_failure_policy(policy) == {
        "rules": [
            {
                "action": "Count",
                "onExitCodes": {
                    "containerName": "runner",
                    "operator": "NotIn",
                    "values": [0, 1, 2],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "False"}],
            },
        ]
    }


def test_pod_failure_policy_limits() -> None:
    rule = {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}
    with pytest.raises(ks.ShapeError, match="at most 20"):
        ks.validate_pod_failure_policy({"rules": [rule] * 21})
    with pytest.raises(ks.ShapeError, match="more than 255"):
        ks.validate_pod_failure_policy(
            {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"operator": "In", "values": list(range(1, 300))},
                    }
                ]
            }
        )
