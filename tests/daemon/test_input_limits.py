"""Input limits of the HTTP API: what Kubernetes would refuse is refused first, whole.

Each limit is met through the real daemon and a localkube: the answer's status and the
field it names, and that nothing was written to Kubernetes (no Job, no Secret) or to the
log store. Odd ids never give a 5xx, on any endpoint; messages for ids that no workload
has are bounded; an apiserver that refuses connections gives 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon.conftest import Daemon
from tests.inprocess import until
from zwmd.localkube import LocalKube
from zwmd.settings import SettingsError, load_settings

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


def _loc(response: httpx.Response) -> list[str]:
    """The field a 422 names (FastAPI's shape: ``detail[0].loc``)."""
    assert response.status_code == 422, response.text
    return [str(part) for part in response.json()["detail"][0]["loc"]]


def _nothing_written(daemon: Daemon) -> None:
    assert daemon.jobs() == []
    assert daemon.kube_objects("secrets") == []


async def _run(daemon: Daemon, workload_id: str, **body: Any) -> httpx.Response:
    body.setdefault("image", "runner:1")
    return await daemon.http.post(f"/v1/workloads/{workload_id}/run", json=body)


# -- what Kubernetes would refuse ------------------------------------------------------


async def test_an_environment_over_a_secret_is_refused_before_any_write(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    refused = await _run(daemon, wid, environment={"BIG": "x" * (MIB + 1)})
    assert _loc(refused) == ["body", "environment"]
    assert "ZWMD_MAX_SECRET_BYTES" in refused.text
    _nothing_written(daemon)
    assert (await daemon.http.get(f"/v1/workloads/{wid}")).status_code == 404

    # just under the limit it runs, and the Secret holds it all
    accepted = await _run(daemon, wid, environment={"BIG": "x" * (MIB - 1024)})
    assert accepted.status_code == 202, accepted.text
    secret = daemon.kube_object("secrets", f"{accepted.json()['job_name']}-env")
    assert len(secret["data"]["BIG"]) > MIB  # base64 of the whole value


async def test_an_environment_name_that_is_no_secret_key_is_refused(daemon: Daemon) -> None:
    refused = await _run(daemon, str(uuid.uuid4()), environment={"NOT A KEY": "1"})
    assert _loc(refused) == ["body", "environment"]
    assert "NOT A KEY" in refused.text
    _nothing_written(daemon)


async def test_more_arguments_than_a_job_holds_are_refused(daemon: Daemon) -> None:
    arguments = ["a" * 1024] * 1600  # 1.6 MB of arguments: a Job over etcd's 1.5 MiB
    refused = await _run(daemon, str(uuid.uuid4()), command=["python"], arguments=arguments)
    assert _loc(refused) == ["body", "arguments"]
    assert "ZWMD_MAX_OBJECT_BYTES" in refused.text
    _nothing_written(daemon)

    fitting = await _run(daemon, str(uuid.uuid4()), arguments=arguments[:1000])
    assert fitting.status_code == 202, fitting.text
    assert len(daemon.jobs()) == 1


async def test_a_dockerfile_over_a_configmap_is_refused(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    body = {"image_name": "zenml-runner:1", "dockerfile": "RUN true\n" * (MIB // 8)}
    refused = await daemon.http.post(f"/v1/workloads/{wid}/build", json=body)
    assert _loc(refused) == ["body", "dockerfile"]
    assert daemon.kube_objects("configmaps") == []
    _nothing_written(daemon)
    assert (await daemon.http.get(f"/v1/workloads/{wid}")).status_code == 404


async def test_the_object_limits_are_settings(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    env = {"ZWMD_MAX_SECRET_BYTES": "1000", "ZWMD_MAX_OBJECT_BYTES": "20000"}
    async with Daemon.running(kube, kubeconfig, tmp_path, env) as daemon:
        secret = await _run(daemon, str(uuid.uuid4()), environment={"A": "x" * 1001})
        assert _loc(secret) == ["body", "environment"]
        command = await _run(daemon, str(uuid.uuid4()), command=["sh", "-c", "y" * 20000])
        assert _loc(command) == ["body", "command"]
        _nothing_written(daemon)


def test_limit_settings_are_validated_naming_the_variable(tmp_path: Path) -> None:
    base = {
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_NAMESPACE": "zenml",
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_SERVICE_ACCOUNT": "runner",
        "ZWMD_STATE_DIR": str(tmp_path),
    }
    for variable in (
        "ZWMD_API_MAX_BODY_BYTES",
        "ZWMD_MAX_SECRET_BYTES",
        "ZWMD_MAX_OBJECT_BYTES",
        "ZWMD_LOG_MESSAGE_MAX_BYTES",
        "ZWMD_UNKNOWN_LOG_IDS",
        "ZWMD_UNKNOWN_LOG_BYTES",
    ):
        for bad in ("0", "lots"):
            with pytest.raises(SettingsError) as caught:
                load_settings({**base, variable: bad})
            assert str(caught.value).startswith(f"{variable}: "), str(caught.value)
    assert load_settings(base).api_max_body_bytes == 4 * MIB  # the defaults are valid


# -- a body too large, refused before it is read -------------------------------------


async def _raw_request(daemon: Daemon, head: str, body: AsyncIterator[bytes]) -> bytes:
    """Send ``head`` and as much of ``body`` as the daemon takes; its answer's bytes."""
    port = int(daemon.url.rsplit(":", 1)[1])
    answer = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head.encode())

        async def send_body() -> None:
            try:
                async for piece in body:
                    await stream.send(piece)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the daemon answered and closed: it would not read the rest

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_body)
                while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                    try:
                        answer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
                tg.cancel_scope.cancel()
    return answer


def _head(daemon: Daemon, path: str, framing: str) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {daemon.token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )


async def test_a_100_mb_body_is_refused_unread(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    size = 100 * 1000 * 1000
    head = _head(daemon, f"/v1/workloads/{wid}/run", f"Content-Length: {size}")

    async def body() -> AsyncIterator[bytes]:
        prefix = b'{"image": "runner:1", "environment": {"BIG": "'
        yield prefix
        for _ in range(size // MIB):
            yield b"x" * MIB

    answer = await _raw_request(daemon, head, body())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"ZWMD_API_MAX_BODY_BYTES" in answer
    _nothing_written(daemon)
    assert (await daemon.http.get(f"/v1/workloads/{wid}")).status_code == 404
    assert (await daemon.http.get("/healthz")).status_code == 200


async def test_a_chunked_body_over_the_limit_is_refused(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    head = _head(daemon, f"/v1/workloads/{wid}/logs", "Transfer-Encoding: chunked")

    async def body() -> AsyncIterator[bytes]:
        start = b'{"message": "'
        yield f"{len(start):x}\r\n".encode() + start + b"\r\n"
        piece = b"x" * MIB
        for _ in range(100):
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"

    answer = await _raw_request(daemon, head, body())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert (await daemon.http.get(f"/v1/workloads/{wid}/logs")).status_code == 404


async def test_a_chunked_body_within_the_limit_is_taken(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())

    async def body() -> AsyncIterator[bytes]:
        yield b'{"message": '
        yield b'"sent in pieces"}'

    posted = await daemon.http.post(
        f"/v1/workloads/{wid}/logs", content=body(), headers={"Content-Type": "application/json"}
    )
    assert posted.status_code == 204, posted.text
    assert any("sent in pieces" in line for line in await daemon.logs(wid))


# -- ids of any length or alphabet -----------------------------------------------------

ODD_IDS = [
    "x" * 201,
    "x" * 4096,
    "é" * 70,
    "é" * 1000,
    "☃" * 200,
    "...",
    "a/b",
    "\x00",
    "../../etc/passwd",
    "-" * 300,
]


async def test_odd_ids_never_give_a_server_error(daemon: Daemon) -> None:
    for odd in ODD_IDS:
        path = f"/v1/workloads/{quote(odd, safe='')}"
        calls = [
            daemon.http.get(path),
            daemon.http.get(f"{path}/wait", params={"timeout": 0}),
            daemon.http.delete(path),
            daemon.http.get(f"{path}/logs"),
            daemon.http.get(f"{path}/logs", params={"follow": "true"}),
            daemon.http.post(f"{path}/logs", json={"message": "hello"}),
            daemon.http.post(f"{path}/run", json={"image": "runner:1"}),
            daemon.http.post(f"{path}/build", json={"image_name": "zenml-runner:1"}),
        ]
        for call in calls:
            response = await call
            where = f"{response.request.method} {str(response.request.url)[:80]}"
            assert response.status_code < 500, f"{where}: {response.text[:300]}"
            if response.status_code >= 400:  # refused, saying why
                assert response.json()["detail"], where
            else:  # or it worked: only a message can be kept under an id that is no UUID
                assert response.request.method == "POST", where
                assert response.request.url.path.endswith("/logs"), where
    _nothing_written(daemon)


async def test_a_message_for_an_id_no_store_can_hold_names_the_id(daemon: Daemon) -> None:
    odd = "é" * 70  # 70 characters, 420 bytes once percent-encoded: no file name holds it
    posted = await daemon.http.post(f"/v1/workloads/{quote(odd)}/logs", json={"message": "m"})
    assert _loc(posted) == ["path", "workload_id"]
    assert "255" in posted.text


async def test_a_long_id_that_fits_works(daemon: Daemon) -> None:
    long_id = "z" * 200
    await daemon.post_log(long_id, "kept under a long id")
    assert any("kept under a long id" in line for line in await daemon.logs(long_id))


# -- messages for ids that never ran ---------------------------------------------------

LIMITS = {
    "ZWMD_UNKNOWN_LOG_IDS": "3",
    "ZWMD_UNKNOWN_LOG_BYTES": "100",
    "ZWMD_LOG_MESSAGE_MAX_BYTES": "50",
}


def _stored_ids(state_dir: Path) -> int:
    logs = state_dir / "logs"
    return len(list(logs.iterdir())) if logs.exists() else 0


async def test_messages_for_unknown_ids_are_bounded(
    kube: LocalKube, kubeconfig: Path, tmp_path: Path
) -> None:
    async with Daemon.running(kube, kubeconfig, tmp_path, LIMITS) as daemon:

        async def post(wid: str, message: str) -> httpx.Response:
            return await daemon.http.post(f"/v1/workloads/{wid}/logs", json={"message": message})

        ids = [str(uuid.uuid4()) for _ in range(4)]
        too_long = await post(ids[0], "m" * 51)
        assert too_long.status_code == 413, too_long.text
        assert too_long.json()["detail"].startswith("message: ")
        assert "ZWMD_LOG_MESSAGE_MAX_BYTES" in too_long.text
        assert _stored_ids(tmp_path) == 0

        for wid in ids[:3]:
            assert (await post(wid, "m" * 40)).status_code == 204
        fourth = await post(ids[3], "m")
        assert fourth.status_code == 429, fourth.text
        assert int(fourth.headers["Retry-After"]) >= 1
        assert "ZWMD_UNKNOWN_LOG_IDS" in fourth.text
        assert (await daemon.http.get(f"/v1/workloads/{ids[3]}/logs")).status_code == 404
        assert _stored_ids(tmp_path) == 3  # nothing on disk for the refused id

        assert (await post(ids[0], "m" * 40)).status_code == 204  # 80 bytes kept
        over = await post(ids[0], "m" * 40)  # 120 > 100
        assert over.status_code == 429, over.text
        assert "ZWMD_UNKNOWN_LOG_BYTES" in over.text
        assert len(await daemon.logs(ids[0])) == 2

        # the run comes: the id is known, its messages are no longer counted as unknown
        assert (await _run(daemon, ids[0], command=["sh", "-c", "exit 0"])).status_code == 202
        for _ in range(3):
            assert (await post(ids[0], "m" * 40)).status_code == 204
        assert (await post(ids[3], "m")).status_code == 204  # its place was given back
        assert len(await daemon.logs(ids[0])) == 5


async def test_a_10_mb_message_is_refused(daemon: Daemon) -> None:
    wid = str(uuid.uuid4())
    huge = await daemon.http.post(f"/v1/workloads/{wid}/logs", json={"message": "m" * 10**7})
    assert huge.status_code == 413, huge.text
    assert "ZWMD_API_MAX_BODY_BYTES" in huge.text
    large = await daemon.http.post(f"/v1/workloads/{wid}/logs", json={"message": "m" * 10**5})
    assert large.status_code == 413, large.text
    assert large.json()["detail"].startswith("message: ")
    assert (await daemon.http.get(f"/v1/workloads/{wid}/logs")).status_code == 404


# -- an apiserver that refuses connections --------------------------------------------


async def test_a_run_while_the_apiserver_refuses_connections_is_503_a_cancel_under_way(
    tmp_path: Path,
) -> None:
    own = LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="scripted", bookmark_interval=0.5
    )
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        serving = anyio.CancelScope()

        async def serve_kube(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            try:
                with serving:
                    await own.serve(task_status=task_status)
            finally:
                stopped.set()

        await tg.start(serve_kube)
        kubeconfig = own.write_kubeconfig(tmp_path / "kubeconfig")
        async with Daemon.running(own, kubeconfig, tmp_path / "state") as daemon:
            earlier = await daemon.submit(command=["sh", "-c", "sleep 600"], expect=(202,))
            serving.cancel()
            await stopped.wait()
            await until(lambda: _not_ready(daemon), 30.0)
            refused = await _run(daemon, str(uuid.uuid4()), command=["sh", "-c", "exit 0"])
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            assert "unreachable" in refused.json()["detail"]
            # a cancel is taken, and carried out by the daemon once it can reach Kubernetes
            cancel = await daemon.http.delete(f"/v1/workloads/{earlier['id']}")
            assert cancel.status_code == 202, cancel.text
            assert cancel.json()["state"] != "cancelled"
            assert "Unreachable" in cancel.json()["message"]
            assert (await daemon.http.get("/healthz")).status_code == 200  # the daemon is up
        tg.cancel_scope.cancel()


async def _not_ready(daemon: Daemon) -> bool:
    return (await daemon.probes.get("/readyz")).status_code == 503


@pytest.mark.parametrize("field", ["image", "command", "arguments", "environment", "name"])
async def test_text_utf8_cannot_encode_is_422_naming_the_field(daemon: Daemon, field: str) -> None:
    """JSON may escape a lone surrogate; nothing downstream could write it (found by
    the hostile-input fault scenario as a 500)."""
    bad = "a\ud800b"
    body: dict[str, object] = {"image": "runner:1", "command": ["sh"], "environment": {}}
    if field == "image":
        body["image"] = bad
    elif field in ("command", "arguments"):
        body[field] = [bad]
    else:
        body["environment"] = {"A": bad} if field == "environment" else {bad: "x"}
    url = "/v1/workloads/6a1c1b9e-0000-4000-8000-0000000005f1/run"
    content = json.dumps(body)  # ensure_ascii: the surrogate travels as \\ud800
    answer = await daemon.http.post(
        url, content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    where = answer.json()["detail"][0]["loc"]
    assert where[:2] == ["body", "environment" if field == "name" else field]
    assert "\\ud800" not in answer.text or field == "name"  # the value is never echoed
    assert daemon.jobs() == []


async def test_a_deadline_beyond_int64_is_422(daemon: Daemon) -> None:
    body = {"image": "runner:1", "command": ["sh"], "timeout_seconds": 2**64}
    url = "/v1/workloads/6a1c1b9e-0000-4000-8000-0000000005f2/run"
    answer = await daemon.http.post(url, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "timeout_seconds"]
    assert daemon.jobs() == []
