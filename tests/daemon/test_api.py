"""The HTTP API's contract: authentication, validation, ids, idempotency, aliases, the socket."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.daemon.conftest import Daemon
from tests.inprocess import K
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


async def test_v1_needs_the_token_on_tcp_and_probes_do_not(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=daemon.url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": daemon.token}):
            for method, path, body in [
                ("GET", "/v1/workloads", None),
                ("GET", f"/v1/workloads/{wid}", None),
                ("POST", f"/v1/workloads/{wid}/run", {"image": "runner:1"}),
                ("DELETE", f"/v1/workloads/{wid}", None),
            ]:
                response = await anonymous.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert "bearer token" in response.json()["detail"]
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).json()["ok"] is True
    assert daemon.jobs() == [], "no unauthorised request reached Kubernetes"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "image"),
        ({"image": ""}, "image"),
        ({"image": "x", "timeout_seconds": -1}, "timeout_seconds"),
        ({"image": "x", "command": "python"}, "command"),
        ({"image": "x", "environment": {"A": 1}}, "environment"),
        ({"image": "x", "surprise": True}, "surprise"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    daemon: Daemon, body: dict[str, object], field: str
) -> None:
    response = await daemon.http.post(f"/v1/workloads/{uuid.uuid4()}/run", json=body)
    assert response.status_code == 422
    assert any(field in error["loc"] for error in response.json()["detail"]), response.text


async def test_a_run_without_an_image_is_refused_on_a_cluster(daemon: Daemon) -> None:
    response = await daemon.http.post(
        f"/v1/workloads/{uuid.uuid4()}/run", json={"command": ["python", "-c", "pass"]}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "image"]
    assert "a runner image is required" in error["msg"]
    assert "zwmd serve --local" in error["msg"]
    assert daemon.jobs() == [], "nothing reached Kubernetes"


async def test_a_workload_id_must_be_a_uuid(daemon: Daemon) -> None:
    response = await daemon.http.post("/v1/workloads/not-a-uuid/run", json={"image": "x"})
    assert response.status_code == 422
    assert "workload_id" in response.json()["detail"][0]["loc"]


async def test_unknown_ids_are_404(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    for method, path in [
        ("GET", f"/v1/workloads/{wid}"),
        ("GET", f"/v1/workloads/{wid}/wait"),
        ("DELETE", f"/v1/workloads/{wid}"),
        ("GET", "/v1/workloads/no-such-alias"),
    ]:
        response = await daemon.http.request(method, path)
        assert response.status_code == 404, (method, path)
        assert wid in response.json()["detail"] or "no-such-alias" in response.json()["detail"]


async def test_same_spec_returns_the_workload_and_another_spec_is_409(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    body = {"image": "runner:1", "command": ["run"], "environment": {"TOKEN": "t"}}
    first = await daemon.http.post(f"/v1/workloads/{wid}/run", json=body)
    again = await daemon.http.post(f"/v1/workloads/{wid}/run", json=body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == wid
    assert again.json()["created_at"] == first.json()["created_at"]
    other = await daemon.http.post(
        f"/v1/workloads/{wid}/run", json={**body, "environment": {"TOKEN": "u"}}
    )
    assert other.status_code == 409
    assert wid in other.json()["detail"]
    assert len(daemon.jobs()) == 1, "no second Job"


async def test_aliases_from_the_arguments_resolve(daemon: Daemon) -> None:
    run_id, snapshot_id = uuid.uuid4(), uuid.uuid4()
    workload = await daemon.submit(
        arguments=["--snapshot_id", str(snapshot_id), f"--run_id={run_id}", "--other", "x"]
    )
    assert workload["aliases"] == [str(snapshot_id), str(run_id)]
    for alias in (str(run_id), run_id.hex, str(snapshot_id)):
        assert (await daemon.get(alias))["id"] == workload["id"]
    listed = (await daemon.http.get("/v1/workloads", params={"state": "starting"})).json()
    assert [w["id"] for w in listed["items"]] == [workload["id"]]
    assert (await daemon.http.get("/v1/workloads", params={"state": "running"})).json() == {
        "items": []
    }


async def test_the_unix_socket_is_0600_and_needs_no_token(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    socket_path = tmp_path / "api.sock"
    async with Daemon.running(
        kube, kubeconfig, tmp_path, {"ZWMD_API_SOCKET": str(socket_path)}
    ) as daemon:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://zwmd") as client:
            wid = str(uuid.uuid4())
            response = await client.post(f"/v1/workloads/{wid}/run", json={"image": "runner:1"})
            assert response.status_code == 202
            assert (await client.get(f"/v1/workloads/{wid}")).json()["state"] in (
                "queued",
                "starting",
            )
        assert len(daemon.jobs()) == 1


def test_no_token_on_a_non_loopback_address_refuses_to_start(tmp_path: Path) -> None:
    env = {
        f"{K}NAMESPACE": "zenml",
        f"{K}SERVICE_ACCOUNT": "runner",
        "ZWMD_API_HOST": "0.0.0.0",
        "ZWMD_STATE_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "zwmd", "serve", "--local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "ZWMD_API_HOST" in done.stderr
    assert "ZWMD_API_TOKEN" in done.stderr
    assert not (tmp_path / "localkube.kubeconfig").exists(), "stopped before any cluster"
