"""What the apiserver refuses, or fills in, whatever kind of object: labels, annotations,
Secret data, and a Job's pod failure policy (as upstream's validation and SetDefaults_Job)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.localkube.conftest import api_error, status_of
from zwmd.localkube import LocalKube
from zwmd.localkube.fieldrules import MAX_ANNOTATION_BYTES

pytestmark = pytest.mark.anyio

Kube = tuple[LocalKube, Any]


def job_body(name: str, **spec: Any) -> dict[str, Any]:
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
    pod_spec.update(spec.pop("pod", {}))
    return {
        "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }


def fields_of(error: Any) -> list[str]:
    return [cause["field"] for cause in status_of(error)["details"]["causes"]]


async def test_label_keys_and_values_are_qualified_names(private_kube: Kube) -> None:
    _, api = private_kube
    core: Any = client.CoreV1Api(api)  # dict bodies, as a client may send them
    good = {"zwmd.io/workload-id": "a1-b_c.d", "plain": "", "Upper.Case": "X"}
    await core.create_namespaced_config_map("default", {"metadata": {"name": "ok", "labels": good}})
    for labels in (
        {"bad key": "v"},
        {"Not_A.Domain/name": "v"},
        {"k": "-starts-with-a-dash"},
        {"k": "x" * 64},
        {"x" * 64: "v"},
    ):
        body = {"metadata": {"name": "refused", "labels": labels}}
        error = await api_error(core.create_namespaced_config_map("default", body))
        assert error.status == 422, labels
        assert fields_of(error) == ["metadata.labels"], labels
    # a Job's pod template labels too
    batch: Any = client.BatchV1Api(api)
    labelled: Any = job_body("labelled")
    labelled["spec"]["template"]["metadata"] = {"labels": {"k": "with space"}}
    error = await api_error(batch.create_namespaced_job("default", labelled))
    assert fields_of(error) == ["spec.template.metadata.labels"]


async def test_annotations_hold_at_most_256_kib_together(private_kube: Kube) -> None:
    _, api = private_kube
    core: Any = client.CoreV1Api(api)  # dict bodies, as a client may send them
    fits = {"a": "x" * (MAX_ANNOTATION_BYTES - 1 - 1), "b": ""}  # keys count too
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "fits", "annotations": fits}}
    )
    over = {"a": "x" * (MAX_ANNOTATION_BYTES // 2), "b": "x" * (MAX_ANNOTATION_BYTES // 2)}
    body = {"metadata": {"name": "over", "annotations": over}}
    error = await api_error(core.create_namespaced_config_map("default", body))
    assert error.status == 422
    assert status_of(error)["details"]["causes"][0] == {
        "reason": "FieldValueTooLong",
        "message": f"Too long: must have at most {MAX_ANNOTATION_BYTES} bytes",
        "field": "metadata.annotations",
    }
    # and an update that grows them past the limit is refused the same way
    patch = {"metadata": {"annotations": {"more": "y" * 10}}}
    error = await api_error(core.patch_namespaced_config_map("fits", "default", patch))
    assert fields_of(error) == ["metadata.annotations"]


async def test_secret_data_that_is_not_base64_is_a_bad_request(private_kube: Kube) -> None:
    _, api = private_kube
    core: Any = client.CoreV1Api(api)  # dict bodies, as a client may send them
    encoded = base64.b64encode(b"token").decode()
    await core.create_namespaced_secret(
        "default", {"metadata": {"name": "fine"}, "data": {"t": encoded}}
    )
    body = {"metadata": {"name": "raw"}, "data": {"t": "not base64!"}}
    error = await api_error(core.create_namespaced_secret("default", body))
    assert error.status == 400
    message = status_of(error)["message"]
    assert message.startswith('Secret in version "v1" cannot be handled as a Secret: '), message
    assert "illegal base64 data at input byte 3" in message
    assert (await api_error(core.read_namespaced_secret("raw", "default"))).status == 404


async def test_a_pod_failure_policy_needs_restart_policy_never(private_kube: Kube) -> None:
    _, api = private_kube
    batch: Any = client.BatchV1Api(api)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    body = job_body("on-failure", podFailurePolicy=policy, pod={"restartPolicy": "OnFailure"})
    error = await api_error(batch.create_namespaced_job("default", body))
    assert error.status == 422
    assert status_of(error)["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "OnFailure": only "Never" is supported when '
            "podFailurePolicy is specified",
            "field": "spec.template.spec.restartPolicy",
        }
    ]
    replaced = job_body(
        "replaced", podFailurePolicy=policy, podReplacementPolicy="TerminatingOrFailed"
    )
    error = await api_error(batch.create_namespaced_job("default", replaced))
    assert fields_of(error) == ["spec.podReplacementPolicy"]


async def test_a_pod_failure_policy_is_defaulted_as_upstream_does(private_kube: Kube) -> None:
    """SetDefaults_Job: status "True" in each onPodConditions pattern, and a replacement
    policy of Failed. A typed client (ZenML's) then reads the Job back without error."""
    _, api = private_kube
    batch: Any = client.BatchV1Api(api)
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    await batch.create_namespaced_job("default", job_body("defaulted", podFailurePolicy=policy))
    read = await batch.read_namespaced_job("defaulted", "default")
    assert read.spec.pod_replacement_policy == "Failed"
    [rule] = read.spec.pod_failure_policy.rules
    assert [(c.type, c.status) for c in rule.on_pod_conditions] == [("DisruptionTarget", "True")]
    await batch.create_namespaced_job("default", job_body("plain"))
    plain = await batch.read_namespaced_job("plain", "default")
    assert plain.spec.pod_replacement_policy == "TerminatingOrFailed"


async def test_counts_and_deadlines(private_kube: Kube) -> None:
    _, api = private_kube
    batch: Any = client.BatchV1Api(api)
    # at the Job level 0 is a valid deadline (upstream's minimum is 0); negative is not
    await batch.create_namespaced_job("default", job_body("zero", activeDeadlineSeconds=0))
    error = await api_error(
        batch.create_namespaced_job(
            "default", job_body("neg", activeDeadlineSeconds=-1, backoffLimit=-2)
        )
    )
    assert fields_of(error) == ["spec.activeDeadlineSeconds", "spec.backoffLimit"]
    # a pod's own deadline is 1 second or more
    error = await api_error(
        batch.create_namespaced_job(
            "default", job_body("pod-zero", pod={"activeDeadlineSeconds": 0})
        )
    )
    assert fields_of(error) == ["spec.template.spec.activeDeadlineSeconds"]
    assert "must be between 1 and 2147483647, inclusive" in status_of(error)["message"]
