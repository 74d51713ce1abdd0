"""``/openapi/v2`` and ``/openapi/v3`` as a client reads them, and strict decoding of the
fields they declare.

The field table is checked against upstream's own schemas (the ``kubernetes-validate``
package ships them per release): every type localkube spells out has upstream's field
names, no more and no fewer, so a field a client may send is never called unknown.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.localkube.test_versions import JOBS, cluster, create_job, job_body
from zwmd.localkube.schemas import TYPES, full_name

pytestmark = pytest.mark.anyio

kubernetes_validate: Any = importlib.import_module("kubernetes_validate")
_PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _upstream_definitions(version: str) -> dict[str, Any]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    document = json.loads((root / f"v{version}.0-local" / "_definitions.json").read_text())
    definitions: dict[str, Any] = document["$defs"]
    return definitions


@pytest.mark.parametrize("name", sorted(TYPES))
def test_each_spelled_out_type_has_upstreams_fields(name: str) -> None:
    upstream = _upstream_definitions("1.34")[full_name(name)]
    assert sorted(TYPES[name][1]) == sorted(upstream["properties"])


async def test_v3_discovery_points_at_each_group_versions_document() -> None:
    async with cluster("1.31") as (_, http):
        async with http.get("/openapi/v3") as answer:
            assert answer.status == 200
            paths = (await answer.json())["paths"]
        assert set(paths) == {
            "api/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/rbac.authorization.k8s.io/v1",
        }
        async with http.get(paths["apis/batch/v1"]["serverRelativeURL"]) as answer:
            assert answer.status == 200
            document = await answer.json()
        async with http.get("/openapi/v3/apis/apps/v1") as missing:
            assert missing.status == 404
    job = document["components"]["schemas"]["io.k8s.api.batch.v1.Job"]
    assert job["x-kubernetes-group-version-kind"] == [
        {"group": "batch", "kind": "Job", "version": "v1"}
    ]
    patch = document["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


async def test_a_release_leaves_out_the_job_fields_it_does_not_know() -> None:
    async with cluster("1.27") as (_, http), http.get("/openapi/v3/apis/batch/v1") as answer:
        schemas = (await answer.json())["components"]["schemas"]
    spec = schemas["io.k8s.api.batch.v1.JobSpec"]["properties"]
    assert "podFailurePolicy" in spec
    assert "podReplacementPolicy" not in spec


async def test_v2_is_json_and_protobuf_alone_is_not_acceptable() -> None:
    async with cluster("1.31") as (_, http):
        async with http.get("/openapi/v2", headers={"Accept": _PROTOBUF_V2}) as refused:
            assert refused.status == 406
            assert (await refused.json())["reason"] == "NotAcceptable"
        headers = {"Accept": f"{_PROTOBUF_V2}, application/json"}
        async with http.get("/openapi/v2", headers=headers) as answer:
            assert answer.status == 200
            document = await answer.json()
    assert document["swagger"] == "2.0"
    spec = document["definitions"]["io.k8s.api.batch.v1.JobSpec"]["properties"]
    assert spec["template"] == {
        "allOf": [{"$ref": "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"}],
        "description": "The pods the Job creates.",
    }


async def test_unknown_nested_fields_are_named_with_their_list_index() -> None:
    body = job_body("nested")
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    body["metadata"]["lables"] = {"a": "b"}
    async with cluster("1.31") as (_, http):
        code, created, warnings = await create_job(http, body)
        strict = await create_job(
            http, {**body, "metadata": {"name": "s"}}, "?fieldValidation=Strict"
        )
        patch = {"spec": {"suspend": True, "backofLimit": 3}}
        async with http.patch(
            f"{JOBS}/nested?fieldValidation=Strict",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as patched:
            refused = (patched.status, await patched.json())
        async with http.patch(
            f"{JOBS}/nested",
            data=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as patched:
            warned = (patched.status, patched.headers.getall("Warning"))
    assert code == 201
    assert "imagePullPolice" not in created["spec"]["template"]["spec"]["containers"][0]
    assert "lables" not in created["metadata"]
    assert warnings == [
        '299 - "unknown field \\"metadata.lables\\""',
        '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolice\\""',
    ]
    assert strict[0] == 400
    assert strict[1]["message"] == (
        'Job in version "v1" cannot be handled as a Job: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagePullPolice"'
    )
    assert refused[0] == 422
    assert refused[1]["reason"] == "Invalid"
    assert refused[1]["message"].startswith(' "" is invalid: patch: Invalid value: "{')
    assert refused[1]["message"].endswith(
        ': strict decoding error: unknown field "spec.backofLimit"'
    )
    assert [cause["field"] for cause in refused[1]["details"]["causes"]] == ["patch"]
    assert warned == (200, ['299 - "unknown field \\"spec.backofLimit\\""'])


async def test_1_24_drops_unknown_fields_without_a_word() -> None:
    body = job_body("old")
    body["spec"]["backofLimit"] = 1
    async with cluster("1.24") as (_, http):
        code, created, warnings = await create_job(http, body, "?fieldValidation=Strict")
    assert (code, warnings) == (201, [])
    assert "backofLimit" not in created["spec"]
