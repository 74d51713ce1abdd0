"""Fixtures for the real-ZenML-server tests: the zenml virtualenv, zwmd, the server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.daemon_process import DaemonProcess, start_daemon
from tests.zenml.servers import PYTHON, VENV, ZenMLServer, start_zenml_server, venv_problem


@pytest.fixture(scope="session")
def zenml_venv() -> None:
    problem = venv_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def zwmd_daemon(
    zenml_venv: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """``zwmd serve --local`` from the zenml virtualenv, so that the runner's ``python``
    (a host process in local mode) is one that has zenml."""
    workdir = tmp_path_factory.mktemp("zwmd")
    path = f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    daemon = start_daemon(
        workdir, command=[str(PYTHON), "-m", "zwmd"], env={"PATH": path, "HOME": str(workdir)}
    )
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def zenml_server(
    zwmd_daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ZenMLServer]:
    server = start_zenml_server(tmp_path_factory.mktemp("zenml"), zwmd_env=zwmd_daemon.client_env())
    yield server
    server.stop()
