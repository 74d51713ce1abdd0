"""``/openapi/v2`` and ``/openapi/v3``: the served kinds' schemas, as kubectl reads them.

Responsibility: turn the field table of :mod:`zwmd.localkube.schemas` and the resource
table (:data:`~zwmd.localkube.resources.RESOURCES`) into the documents the apiserver
publishes, for one release.

Design notes:

* **What kubectl needs.** ``kubectl apply``/``create`` (validation on, the default)
  asks ``/openapi/v3`` for the group version's document and looks for a PATCH operation
  tagged with the object's ``x-kubernetes-group-version-kind`` that takes the
  ``fieldValidation`` parameter; found, it leaves validation to the server (sends
  ``fieldValidation=Strict`` or ``Warn``) and needs no ``/openapi/v2``. ``kubectl
  explain`` reads the same v3 documents: a kind's schema carries the extension, fields
  are ``properties`` and references are ``allOf`` of one ``$ref``, as upstream writes.
* **v3 discovery** (``/openapi/v3``) lists each group version at
  ``/openapi/v3/{api/v1|apis/group/version}?hash=...``; the hash is the document's
  SHA-512, so a client caching by URL sees a new one when the release changes.
* **v2** is one swagger 2.0 document with the same schemas under ``definitions``,
  served as JSON. client-go asks for it in protobuf
  (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``), which localkube does
  not encode: a request that accepts no JSON is answered 406, as the apiserver answers a
  type it cannot produce.
* **Versioned Job fields** a release does not know (:data:`~zwmd.localkube.versions.
  JOB_FIELDS`) are left out of its JobSpec, as that release's types leave them out.
"""

from __future__ import annotations

import hashlib
from functools import cache

import orjson

from zwmd.localkube.errors import ApiError, JsonDict
from zwmd.localkube.resources import RESOURCES, ResourceType
from zwmd.localkube.schemas import TYPES, Field, field_type, full_name
from zwmd.localkube.versions import JOB_FIELDS, KubernetesVersion

__all__ = ["discovery", "group_version_document", "swagger"]

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_SCALAR_SCHEMAS: dict[str, JsonDict] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "format": "int64"},
    "boolean": {"type": "boolean"},
    "map": {"type": "object", "additionalProperties": {"type": "string"}},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}
_TIMES = frozenset({"Time", "MicroTime"})


def _field_schema(type_name: str, ref: str, referred: set[str]) -> JsonDict:
    if type_name.startswith("["):
        return {"type": "array", "items": _field_schema(type_name[1:-1], ref, referred)}
    if type_name in _SCALAR_SCHEMAS:
        return dict(_SCALAR_SCHEMAS[type_name])
    referred.add(type_name)
    return {"allOf": [{"$ref": ref + full_name(type_name)}]}


def _gvk(kind: ResourceType) -> list[JsonDict]:
    group, _, version = kind.api_version.rpartition("/")
    return [{"group": group, "kind": kind.kind, "version": version}]


def _unknown_job_fields(version: KubernetesVersion) -> set[str]:
    return {
        field.path.removeprefix("spec.")
        for field in JOB_FIELDS
        if version.field_state(field) == "unknown"
    }


def _schemas(version: KubernetesVersion, ref: str, roots: list[str]) -> dict[str, JsonDict]:
    """The schemas of ``roots`` and every type they refer to, by upstream name."""
    kinds = {kind.kind: kind for kind in RESOURCES.values()}
    left_out = _unknown_job_fields(version)
    out: dict[str, JsonDict] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if full_name(name) in out:
            continue
        referred: set[str] = set()
        if name in _TIMES:
            schema: JsonDict = {"type": "string", "format": "date-time"}
        elif name not in TYPES:
            schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        else:
            description, fields = TYPES[name]
            schema = {"type": "object", "description": description, "properties": {}}
            for key, field in sorted(fields.items()):
                if name == "JobSpec" and key in left_out:
                    continue
                schema["properties"][key] = _property(field, ref, referred)
            if name in kinds:
                schema["x-kubernetes-group-version-kind"] = _gvk(kinds[name])
        out[full_name(name)] = schema
        pending += sorted(referred)
    return out


def _property(field: Field, ref: str, referred: set[str]) -> JsonDict:
    schema = _field_schema(field_type(field), ref, referred)
    if isinstance(field, tuple):
        schema["description"] = field[1]
    return schema


def _parameter(name: str, where: str = "query") -> JsonDict:
    return {"name": name, "in": where, "schema": {"type": "string"}, "uniqueItems": True}


def _operation(kind: ResourceType, action: str, ref: str, params: tuple[str, ...] = ()) -> JsonDict:
    body = {"content": {"application/json": {"schema": {"$ref": ref + full_name(kind.kind)}}}}
    operation: JsonDict = {
        "operationId": f"{action}{kind.kind}",
        "parameters": [_parameter(p) for p in params],
        "responses": {"200": {"description": "OK", **body}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(kind)[0],
    }
    if action in ("post", "put", "patch"):
        operation["requestBody"] = body
    return operation


def _paths(group_version: str) -> JsonDict:
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    write = ("dryRun", "fieldManager", "fieldValidation")
    paths: JsonDict = {}
    for plural, kind in sorted(RESOURCES.items()):
        if kind.api_version != group_version:
            continue
        base = (
            f"{prefix}/namespaces/{{namespace}}/{plural}"
            if kind.namespaced
            else (f"{prefix}/{plural}")
        )
        paths[base] = {
            "get": _operation(kind, "list", _V3_REF),
            "post": _operation(kind, "post", _V3_REF, write),
        }
        paths[f"{base}/{{name}}"] = {
            "get": _operation(kind, "get", _V3_REF),
            "put": _operation(kind, "put", _V3_REF, write),
            "patch": _operation(kind, "patch", _V3_REF, (*write, "force")),
            "delete": _operation(kind, "delete", _V3_REF),
        }
    return paths


def _info(version: KubernetesVersion) -> JsonDict:
    return {"title": "Kubernetes", "version": f"v{version}.0-localkube"}


def _group_versions() -> list[str]:
    return sorted({kind.api_version for kind in RESOURCES.values()})


@cache
def _v3_bytes(version: KubernetesVersion, group_version: str) -> bytes:
    roots = sorted(k.kind for k in RESOURCES.values() if k.api_version == group_version)
    document = {
        "openapi": "3.0.0",
        "info": _info(version),
        "paths": _paths(group_version),
        "components": {"schemas": _schemas(version, _V3_REF, roots)},
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _url_key(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def group_version_document(version: KubernetesVersion, path: str) -> bytes | None:
    """``/openapi/v3/{path}`` (``api/v1``, ``apis/batch/v1``), None when not served."""
    for group_version in _group_versions():
        if _url_key(group_version) == path.strip("/"):
            return _v3_bytes(version, group_version)
    return None


def discovery(version: KubernetesVersion) -> JsonDict:
    """``/openapi/v3``: where each group version's document is."""
    paths: JsonDict = {}
    for group_version in _group_versions():
        digest = hashlib.sha512(_v3_bytes(version, group_version)).hexdigest().upper()
        key = _url_key(group_version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


@cache
def _v2_bytes(version: KubernetesVersion) -> bytes:
    roots = sorted(kind.kind for kind in RESOURCES.values())
    paths: JsonDict = {}
    for group_version in _group_versions():
        for path, item in _paths(group_version).items():
            paths[path] = {method: _v2_operation(op) for method, op in item.items()}
    document = {
        "swagger": "2.0",
        "info": _info(version),
        "paths": paths,
        "definitions": _schemas(version, _V2_REF, roots),
    }
    raw = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return raw.replace(_V3_REF.encode(), _V2_REF.encode())


def _v2_operation(operation: JsonDict) -> JsonDict:
    converted = {k: v for k, v in operation.items() if k != "requestBody"}
    converted["parameters"] = [
        {"name": p["name"], "in": p["in"], "type": "string", "uniqueItems": True}
        for p in operation["parameters"]
    ]
    converted["responses"] = {"200": {"description": "OK"}}
    return converted


def swagger(version: KubernetesVersion, accept: str) -> bytes:
    """``/openapi/v2`` as JSON; 406 when the client accepts no JSON (protobuf only)."""
    accepted = [part.split(";", 1)[0].strip() for part in (accept or "*/*").split(",")]
    if not any(a in ("application/json", "*/*", "application/*") for a in accepted):
        raise ApiError(
            406, "NotAcceptable", "only the following media types are accepted: application/json"
        )
    return _v2_bytes(version)
