"""The audit trail: each API request served, named as the apiserver's audit log names it."""

from __future__ import annotations

import httpx
import pytest

from zwmd.localkube import ADMIN_HEADERS, LocalKube

pytestmark = pytest.mark.anyio

NS = "/api/v1/namespaces/default"


async def test_each_request_is_recorded_with_its_verb_object_query_and_code() -> None:
    async with (
        LocalKube(kubelet=None) as kube,
        httpx.AsyncClient(base_url=kube.url, headers=ADMIN_HEADERS) as http,
    ):
        await http.get("/api")  # discovery: not an API request on an object
        secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
        assert (await http.post(f"{NS}/secrets", json=secret)).status_code == 201
        assert (await http.get(f"{NS}/secrets/s")).status_code == 200
        assert (await http.get(f"{NS}/secrets/nope")).status_code == 404
        await http.get(f"{NS}/events", params={"fieldSelector": "involvedObject.uid=u1"})
        kube.faults.fail_next(1, status=429, match=("delete", "secrets"))
        assert (await http.delete(f"{NS}/secrets/s")).status_code == 429
        await http.get(f"{NS}/pods/p/log")
        served = [(e.verb, e.resource, e.subresource, e.name, e.code) for e in kube.audit.events()]
        assert served == [
            ("create", "secrets", "", "", 201),
            ("get", "secrets", "", "s", 200),
            ("get", "secrets", "", "nope", 404),
            ("list", "events", "", "", 200),
            ("delete", "secrets", "", "s", 429),
            ("get", "pods", "log", "p", 404),
        ]
        listed = kube.audit.events()[3]
        assert listed.namespace == "default"
        assert "fieldSelector=involvedObject.uid%3Du1" in listed.request_uri
        trail = (await http.get("/localkube/audit")).json()["items"]
        assert [e["verb"] for e in trail] == [e[0] for e in served]
        assert "stringData" not in str(trail)  # bodies are not kept
