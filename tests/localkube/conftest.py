"""Helpers for the localkube conformance tests: a private LocalKube and API clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient

from zwmd.localkube import LocalKube


@pytest.fixture
async def private_kube(tmp_path: Path) -> AsyncIterator[tuple[LocalKube, ApiClient]]:
    """A LocalKube of this test's own: no kubelet, no Job controller (nothing but the test
    writes), a small history and fast bookmarks."""
    async with LocalKube(
        kubelet=None, job_controller=False, history_size=20, bookmark_interval=0.2
    ) as kube:
        api_client = await config.new_client_from_config(
            config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield kube, api_client
        finally:
            await api_client.close()


def status_of(error: Any) -> dict[str, Any]:
    """The Status body of a kubernetes-asyncio ApiException."""
    body: dict[str, Any] = json.loads(error.body)
    return body


async def api_error(call: Awaitable[Any]) -> Any:
    """The ApiException raised by ``call`` (fails the test when none is raised)."""
    with pytest.raises(client.ApiException) as caught:
        await call
    return caught.value


async def raw_error(call: Awaitable[Any]) -> tuple[int, dict[str, Any]]:
    """Status code and body of a ``_preload_content=False`` call (which does not raise)."""
    response = await call
    try:
        body: dict[str, Any] = json.loads(await response.read())
        return response.status, body
    finally:
        response.release()


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> Any:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}), data=data or {"k": "v"}
    )


def job(name: str, *, command: list[str] | None = None, **spec: Any) -> Any:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="main", image="busybox", command=command or ["true"]
                        )
                    ],
                )
            ),
            **spec,
        ),
    )


Reader = Callable[[], Awaitable[dict[str, Any] | None]]
