"""pytest fixtures for zwmd and its plugin authors (entry point ``pytest11``).

Fixtures:

* ``localkube`` (session): a running :class:`~zwmd.localkube.LocalKube` on 127.0.0.1
  with the process kubelet (pod commands run as host processes); started once. Its Job
  controller replaces failed pods after upstream's backoff scaled by
  :data:`~zwmd.localkube.podbackoff.TEST_SCALE` (0.1 s, 0.2 s, ... at most 3.6 s).
* ``localkube_kubeconfig`` (session): the path of a kubeconfig for it.
* ``kube_api_client``: a kubernetes-asyncio ``ApiClient`` configured from that
  kubeconfig, closed after the test.
* ``kube_namespace``: a fresh, uniquely named namespace, deleted after the test (with
  everything in it); injected faults are reset then too, so one test's faults never
  leak into the next.

Design notes: the fixtures are async and run under anyio's own pytest plugin. Session
scope needs a session-scoped ``anyio_backend``; this plugin provides one (``asyncio``)
that a project's own ``conftest.py`` may override, keeping the session scope.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient

from zwmd.localkube import LocalKube
from zwmd.localkube.podbackoff import TEST_SCALE


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def localkube() -> AsyncIterator[LocalKube]:
    """A LocalKube serving on 127.0.0.1 for the whole session."""
    async with LocalKube(kubelet="process", pod_backoff_scale=TEST_SCALE) as kube:
        yield kube


@pytest.fixture(scope="session")
def localkube_kubeconfig(localkube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig (kubectl and kubernetes-asyncio accept it) for ``localkube``."""
    return localkube.write_kubeconfig(tmp_path_factory.mktemp("localkube") / "kubeconfig")


@pytest.fixture
async def kube_api_client(localkube_kubeconfig: Path) -> AsyncIterator[ApiClient]:
    """A kubernetes-asyncio ``ApiClient`` talking to ``localkube``."""
    api_client = await config.new_client_from_config(config_file=str(localkube_kubeconfig))
    try:
        yield api_client
    finally:
        await api_client.close()


@pytest.fixture
async def kube_namespace(localkube: LocalKube) -> AsyncIterator[str]:
    """A new namespace for one test, deleted (with its contents) afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    localkube.store.create("namespaces", None, {"metadata": {"name": name}})
    try:
        yield name
    finally:
        localkube.faults.reset()
        localkube.store.delete("namespaces", None, name)
