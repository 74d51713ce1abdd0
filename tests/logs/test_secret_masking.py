"""A token the runner prints never reaches the stored log, nor anything else zwmd writes.

One localkube whose process kubelet runs each pod as a host ``python -c`` process, and
real in-process daemons with a file store. The runner's environment holds
``API_TOKEN=<random>``; it prints the token whole, split across two writes with a pause
between, inside a JSON log entry and straddling the cut of an over-long line, then
fails (so there is a failure summary too). Then everything a user or an attacker could
read is searched for the token: the log in every format, the API's answers,
``/metrics``, the daemon's own log output, the files under the state directory and every
object in the namespace (where only the environment Secret may hold it).

After a restart the log pipeline knows the token only from the environment Secret, which
it reads once; a retried run request still matches the adopted Job's keyed spec hash, and
the annotation cannot be confirmed by an unkeyed SHA-256 of the right guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon_process import free_port
from tests.inprocess import SERVICE_ACCOUNT, JsonDict
from tests.logs.pipelines import Daemon, GatedStore, messages, until
from zwmd.daemon.serving import DaemonConfig
from zwmd.engine.speckey import SECRET_NAME
from zwmd.kube import naming
from zwmd.kube.jobs import PodPolicy
from zwmd.localkube import LocalKube
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.records import MAX_LINE_BYTES

pytestmark = pytest.mark.anyio

# Where the kubelet's cut of an over-long line falls in the message: the line it frames
# starts with the 30-character timestamp and a space.
_CUT = MAX_LINE_BYTES - 31

RUNNER = f"""
import json, os, sys, time
token = os.environ["API_TOKEN"]
print("whole:", token, flush=True)
half = len(token) // 2
sys.stdout.write("split:" + token[:half]); sys.stdout.flush()
time.sleep(0.5)
sys.stdout.write(token[half:] + " end\\n"); sys.stdout.flush()
print(json.dumps({{"message": "in json " + token, "level": "WARNING"}}), flush=True)
print("x" * ({_CUT} - half) + token + " after the cut", flush=True)
print("short values stay:", os.environ["SHORT_KEY"], flush=True)
sys.exit(3)
"""


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION, kubelet="process", bookmark_interval=0.5
    ) as localkube:
        yield localkube


def _config(kube: LocalKube, state: Path) -> DaemonConfig:
    return DaemonConfig(
        namespace=f"masking-{uuid.uuid4().hex[:10]}",
        policy=PodPolicy(service_account=SERVICE_ACCOUNT, backoff_limit=0),
        api_port=free_port(),
        api_token=secrets.token_hex(16),
        kubeconfig=str(kube.write_kubeconfig(state / "kubeconfig")),
    )


def _serve(
    kube: LocalKube, state: Path, config: DaemonConfig
) -> AbstractAsyncContextManager[Daemon]:
    store = GatedStore(FileLogStore(state, fsync=False))
    return Daemon.running(kube, Path(config.kubeconfig or ""), state, config=config, store=store)


def _pieces(token: str) -> list[str]:
    """Every 8-character window of the token: no part of it may show."""
    return [token[i : i + 8] for i in range(len(token) - 7)]


def _leaks(text: str, token: str) -> list[str]:
    encoded = base64.b64encode(token.encode()).decode()
    return [piece for piece in [*_pieces(token), encoded] if piece in text]


def _files(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file())


def _secret_gets(daemon: Daemon) -> float:
    body, _ = daemon.ops.metrics_exposition()
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if (
                sample.name == "zwmd_kube_requests_total"
                and sample.labels.get("resource") == "secrets"
                and sample.labels.get("verb") == "get"
            ):
                total += sample.value
    return total


async def test_a_printed_token_is_masked_in_the_log_and_found_nowhere_else(
    kube: LocalKube, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = secrets.token_hex(16)
    state = tmp_path / "state"
    state.mkdir()
    config = _config(kube, state)
    async with _serve(kube, state, config) as daemon:
        body = {
            "image": "any",
            "command": [sys.executable, "-u", "-c", RUNNER],
            "environment": {"API_TOKEN": token, "SHORT_KEY": "abc", "PLAIN": "visible"},
        }
        wid = str(uuid.uuid4())
        response = await daemon.http.post(f"/v1/workloads/{wid}/run", json=body)
        assert response.status_code == 202, response.text
        finished = await daemon.wait(wid)
        assert finished["state"] == "failed"

        text = messages(await daemon.logs(wid))
        raw = (await daemon.http.get(f"/v1/workloads/{wid}/logs", params={"format": "raw"})).text
        zenml = await daemon.logs(wid, fmt="zenml")
        entries = [json.loads(line) for line in zenml]

        # the lines are there, with the token masked in each
        assert "whole: ***" in text
        assert "split:*** end" in text
        assert any(e["message"] == "in json ***" and e["level"] == 30 for e in entries)
        assert "short values stay: abc" in text  # under 4 characters: not masked
        long_pieces = [line for line in raw.splitlines() if line.startswith("x" * 100)]
        assert len(long_pieces) == 1
        assert long_pieces[0].endswith("***")
        assert any(line.startswith("*** after the cut") for line in raw.splitlines())
        assert any(m.startswith("zwmd: the run failed (Error)") for m in text)

        # nothing of the token anywhere a reader of zwmd can look
        answers = [
            json.dumps(await daemon.get(wid)),
            (await daemon.http.get("/v1/workloads")).text,
            (await daemon.http.get(f"/v1/workloads/{wid}/wait")).text,
        ]
        for where, seen in [
            ("text logs", "\n".join(text)),
            ("raw logs", raw),
            ("zenml logs", "\n".join(zenml)),
            ("API answers", "\n".join(answers)),
            ("/metrics", await daemon.scrape()),
            ("the daemon's log", caplog.text),
        ]:
            assert _leaks(seen, token) == [], where
        for path in _files(state):
            assert _leaks(path.read_bytes().decode("utf-8", "replace"), token) == [], path

        # in the namespace, only the run's environment Secret holds it
        job_name = finished["job_name"]
        holders = []
        for resource in ("jobs", "pods", "secrets", "configmaps", "events", "serviceaccounts"):
            for obj in daemon.kube_objects(resource):
                if _leaks(json.dumps(obj), token):
                    holders.append((resource, obj["metadata"]["name"]))
        assert holders == [("secrets", naming.secret_name(job_name))]
        await daemon.post_log(wid, "done")  # the daemon still answers after all that


RESTART_RUNNER = """
import os, pathlib, time
go = pathlib.Path(os.environ["GO_FILE"])
while not go.exists():
    time.sleep(0.05)
print("after the restart:", os.environ["ZENML_STORE_API_TOKEN"], flush=True)
"""


def _canonical(body: JsonDict) -> bytes:
    """The request as zwmd's spec hash sees it (each environment value hashed first)."""
    hidden = {
        name: hashlib.sha256(value.encode()).hexdigest()
        for name, value in body["environment"].items()
    }
    spec = {
        "image": body["image"],
        "command": body["command"],
        "arguments": [],
        "environment": hidden,
        "timeout": 0,
    }
    return json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()


async def test_after_a_restart_the_environment_secret_masks_and_the_spec_hash_matches(
    kube: LocalKube, tmp_path: Path
) -> None:
    token = secrets.token_hex(16)
    state = tmp_path / "state"
    state.mkdir()
    go = tmp_path / "go"
    config = _config(kube, state)
    body: JsonDict = {
        "image": "any",
        "command": [sys.executable, "-u", "-c", RESTART_RUNNER],
        "environment": {"ZENML_STORE_API_TOKEN": token, "GO_FILE": str(go)},
    }
    wid = str(uuid.uuid4())
    async with _serve(kube, state, config) as first:
        response = await first.http.post(f"/v1/workloads/{wid}/run", json=body)
        assert response.status_code == 202, response.text
        job_name = response.json()["job_name"]
        await first.until_state(wid, "running")

    # Anyone who can read Jobs hashes the right guess as zwmd used to: no match. The
    # annotation is the HMAC with the key in the zwmd-spec-key Secret.
    notes = kube.store.get("jobs", config.namespace, job_name)["metadata"]["annotations"]
    annotation = notes[naming.ANN_SPEC_HASH]
    assert annotation != hashlib.sha256(_canonical(body)).hexdigest()
    key_secret = kube.store.get("secrets", config.namespace, SECRET_NAME)
    key = base64.b64decode(key_secret["data"]["key"])
    assert annotation == hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()

    async with _serve(kube, state, config) as second:
        # the adopted pod is followed: its environment is read from its Secret, once
        await until(lambda: _secret_gets(second) == 1)
        # the same request again, after the restart: the same workload, not a conflict
        again = await second.http.post(f"/v1/workloads/{wid}/run", json=body)
        assert again.status_code == 200, again.text
        assert (again.json()["job_name"], again.json()["attempt"]) == (job_name, 1)
        changed = {**body, "environment": {**body["environment"], "GO_FILE": "/elsewhere"}}
        refused = await second.http.post(f"/v1/workloads/{wid}/run", json=changed)
        assert refused.status_code == 409, refused.text

        go.touch()
        finished = await second.wait(wid, timeout=60)
        assert finished["state"] == "succeeded"
        assert messages(await second.logs(wid)) == ["after the restart: ***"]
        assert _secret_gets(second) == 2  # and the spec key, once, for the requests
