"""Fixtures for the daemon's tests: a localkube, and ``serve()`` running in the test's loop.

The daemon under test is the real one (see :mod:`tests.inprocess`): settings from a plain
mapping of variables, served in the test's event loop, reached over HTTP on 127.0.0.1
with its bearer token; tests read Kubernetes objects from localkube's store.

One localkube (scripted kubelet: the test decides every pod's fate) serves a whole test
module; each daemon gets a namespace of its own, so daemons never see each other's Jobs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.inprocess import Daemon as InProcessDaemon
from tests.inprocess import kube as kube
from tests.inprocess import kubeconfig as kubeconfig
from zwmd.daemon.serving import DaemonConfig
from zwmd.localkube import LocalKube


class Daemon(InProcessDaemon):
    """A daemon whose watches retry quickly after an error."""

    @classmethod
    def tune(cls, config: DaemonConfig) -> DaemonConfig:
        timing = dataclasses.replace(config.watch_timing, backoff_initial=0.05, backoff_max=1.0)
        return dataclasses.replace(config, watch_timing=timing)


@pytest.fixture
async def daemon(kube: LocalKube, kubeconfig: Path, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with the defaults (concurrency 2) in a fresh namespace."""
    async with Daemon.running(kube, kubeconfig, tmp_path) as d:
        yield d
