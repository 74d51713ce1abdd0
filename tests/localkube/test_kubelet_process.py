"""The process kubelet: pods run as host processes, seen through kubernetes-asyncio."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client

from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


def pod_manifest(name: str, command: list[str], **spec: Any) -> Any:
    """A Pod body (a dict, which kubernetes-asyncio sends as it is)."""
    container = {"name": "main", "image": "ignored", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"team": "ml"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def wait_for_phase(
    core: client.CoreV1Api, namespace: str, name: str, *phases: str, timeout: float = 10
) -> Any:
    with anyio.fail_after(timeout):
        while True:
            pod = await core.read_namespaced_pod(name, namespace)
            if pod.status.phase in phases:
                return pod
            await anyio.sleep(0.03)


async def wait_for_log(core: client.CoreV1Api, namespace: str, name: str, lines: int) -> str:
    with anyio.fail_after(10):
        while True:
            pod = await core.read_namespaced_pod(name, namespace)
            if pod.status.phase != "Pending":
                log: str = await core.read_namespaced_pod_log(name, namespace)
                if log.count("\n") >= lines:
                    return log
            await anyio.sleep(0.03)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_status_goes_pending_running_succeeded_like_a_kubelet(
    kube_api_client: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    code = "import sys, time; time.sleep(0.5); print('out'); print('err', file=sys.stderr)"
    await core.create_namespaced_pod(kube_namespace, pod_manifest("life", python(code)))

    running = await wait_for_phase(core, kube_namespace, "life", "Running")
    assert running.spec.node_name == "localkube"
    conditions = {c.type: c.status for c in running.status.conditions}
    assert conditions["PodScheduled"] == "True"
    assert conditions["Initialized"] == "True"
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    [status] = running.status.container_statuses
    assert status.ready is True
    assert status.state.running.started_at is not None

    done = await wait_for_phase(core, kube_namespace, "life", "Succeeded")
    [status] = done.status.container_statuses
    terminated = status.state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert terminated.started_at is not None
    assert terminated.finished_at >= terminated.started_at
    assert status.ready is False
    log = await core.read_namespaced_pod_log("life", kube_namespace)
    assert sorted(log.splitlines()) == ["err", "out"]


async def test_exit_code_and_signal_become_terminated_states(
    kube_api_client: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    await core.create_namespaced_pod(kube_namespace, pod_manifest("five", python("exit(5)")))
    await core.create_namespaced_pod(
        kube_namespace, pod_manifest("killed", python("import os; os.kill(os.getpid(), 9)"))
    )
    five = await wait_for_phase(core, kube_namespace, "five", "Failed")
    killed = await wait_for_phase(core, kube_namespace, "killed", "Failed")
    five_state = five.status.container_statuses[0].state.terminated
    killed_state = killed.status.container_statuses[0].state.terminated
    assert (five_state.exit_code, five_state.reason) == (5, "Error")
    assert (killed_state.exit_code, killed_state.reason) == (137, "Error")


async def test_a_missing_command_is_a_start_error(
    kube_api_client: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    await core.create_namespaced_pod(
        kube_namespace, pod_manifest("nocmd", ["no-such-command-for-localkube", "x"])
    )
    await core.create_namespaced_pod(kube_namespace, pod_manifest("noexec", [str(Path(__file__))]))
    missing = await wait_for_phase(core, kube_namespace, "nocmd", "Failed")
    state = missing.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (127, "StartError")
    assert 'exec: "no-such-command-for-localkube": executable file not found in $PATH' in (
        state.message
    )
    not_executable = await wait_for_phase(core, kube_namespace, "noexec", "Failed")
    state = not_executable.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (126, "StartError")
    assert "Permission denied" in state.message


async def test_env_env_from_and_value_from_are_resolved(
    kube_api_client: Any, kube_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZWMD_HOST_ONLY", "leak")
    monkeypatch.setenv("PYTHONHOSTVAR", "kept")
    core = client.CoreV1Api(kube_api_client)
    # "1bad" is a valid Secret key but no environment variable name: envFrom skips it
    secret_data = {"TOKEN": base64.b64encode(b"s3cret").decode(), "1bad": "eA=="}
    await core.create_namespaced_secret(
        kube_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="creds"), data=secret_data),
    )
    await core.create_namespaced_config_map(
        kube_namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="conf"), data={"LEVEL": "debug", "URL": "u"}
        ),
    )
    container = {
        "envFrom": [
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "conf"}, "prefix": "APP_"},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "PLAIN", "value": "v"},
            {"name": "EXPANDED", "value": "$(PLAIN)-$(APP_LEVEL)-$$(PLAIN)"},
            {"name": "APP_URL", "value": "overridden"},
            {
                "name": "FROM_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}},
            },
            {
                "name": "FROM_MAP",
                "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "LEVEL"}},
            },
            {
                "name": "OPTIONAL",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": True}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        ],
    }
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    await core.create_namespaced_pod(
        kube_namespace, pod_manifest("env", python(code), container=container)
    )
    await wait_for_phase(core, kube_namespace, "env", "Succeeded")
    # raw: kubernetes-asyncio would turn a log that looks like JSON into a dict's repr
    response: Any = await core.read_namespaced_pod_log(
        "env", kube_namespace, _preload_content=False
    )
    env = json.loads(await response.read())
    response.release()

    assert env["TOKEN"] == env["FROM_SECRET"] == "s3cret"
    assert "1bad" not in env
    assert env["APP_LEVEL"] == env["FROM_MAP"] == "debug"
    assert env["APP_URL"] == "overridden"
    assert env["PLAIN"] == "v"
    assert env["EXPANDED"] == "v-debug-$(PLAIN)"
    assert "OPTIONAL" not in env
    assert (env["POD"], env["NS"], env["TEAM"]) == ("env", kube_namespace, "ml")
    assert env["HOSTNAME"] == "env"
    assert "PATH" in env
    assert "ZWMD_HOST_ONLY" not in env  # the host's environment does not leak in
    assert env["PYTHONHOSTVAR"] == "kept"  # but PYTHON* variables do


async def test_a_missing_secret_waits_with_create_container_config_error(
    kube_api_client: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    container = {
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]
    }
    await core.create_namespaced_pod(
        kube_namespace,
        pod_manifest("later", python("import os; print(os.environ['T'])"), container=container),
    )
    with anyio.fail_after(5):
        while True:
            pod = await core.read_namespaced_pod("later", kube_namespace)
            statuses = pod.status.container_statuses or []
            if statuses and statuses[0].state.waiting is not None:
                waiting = statuses[0].state.waiting
                if waiting.reason == "CreateContainerConfigError":
                    break
            await anyio.sleep(0.03)
    assert waiting.message == 'secret "later" not found'
    assert pod.status.phase == "Pending"

    await core.create_namespaced_secret(
        kube_namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="later"), string_data={"t": "now"}),
    )

    await wait_for_phase(core, kube_namespace, "later", "Succeeded", timeout=5)
    assert await core.read_namespaced_pod_log("later", kube_namespace) == "now\n"


async def test_deleting_a_pod_kills_its_process_group_after_the_grace_period(
    kube_api_client: Any, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('term', flush=True))\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    await core.create_namespaced_pod(kube_namespace, pod_manifest("stubborn", python(code)))
    log = await wait_for_log(core, kube_namespace, "stubborn", 1)
    leader, child = (int(x) for x in log.split())
    assert alive(leader)
    assert alive(child)

    started = anyio.current_time()
    await core.delete_namespaced_pod("stubborn", kube_namespace)

    with anyio.fail_after(5):
        while True:
            if not alive(leader) and not alive(child):
                break
            await anyio.sleep(0.05)
    assert anyio.current_time() - started >= 0.9  # it ignored SIGTERM: SIGKILL after 1 s


async def test_on_failure_restarts_the_container_and_keeps_the_previous_log(
    kube_api_client: Any, kube_namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(kube_api_client)
    marker = tmp_path / "second-run"
    code = (
        "import pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if marker.exists():\n"
        "    print('second'); sys.exit(0)\n"
        "marker.touch(); print('first'); sys.exit(1)\n"
    )
    await core.create_namespaced_pod(
        kube_namespace, pod_manifest("again", python(code), restartPolicy="OnFailure")
    )
    pod = await wait_for_phase(core, kube_namespace, "again", "Succeeded")
    [status] = pod.status.container_statuses
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert await core.read_namespaced_pod_log("again", kube_namespace) == "second\n"
    previous = await core.read_namespaced_pod_log("again", kube_namespace, previous=True)
    assert previous == "first\n"


async def test_stopping_localkube_stops_running_processes() -> None:
    async with LocalKube(kubelet="process") as kube:
        kube.store.create(
            "pods", "default", pod_manifest("sleeper", python("import time; time.sleep(60)"))
        )
        with anyio.fail_after(5):
            while True:
                pids = kube.kubelet.processes()
                if pids:
                    break
                await anyio.sleep(0.03)
        [pid] = pids.values()
        assert alive(pid)
    assert not alive(pid)
