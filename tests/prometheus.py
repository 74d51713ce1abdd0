"""A real Prometheus (Debian's ``prometheus``) on 127.0.0.1, for the tests that need one.

:func:`require` finds a binary of the package, skipping the test without it (failing it
when ``CI`` is set). :func:`running_prometheus` starts a server that scrapes the given
targets every second, optionally with rule files, and yields a :class:`Prometheus`
whose :meth:`~Prometheus.query` runs PromQL through the HTTP API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import free_port


def require(binary: str) -> str:
    """The path of ``binary`` (``prometheus``, ``promtool``)."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    """The first truthy ``check()`` (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check}")
        time.sleep(0.2)


@dataclass
class Prometheus:
    """A running server's HTTP API (``/api/v1``)."""

    api: httpx.Client

    def get(self, path: str, **params: str) -> Any:
        body = self.api.get(path, params=params).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/query", query=promql)["result"]
        return result

    def scraped_after(self, moment: float, job: str = "zwmd") -> bool:
        """Whether every target of ``job`` was scraped, up, after ``moment`` (epoch s)."""
        try:
            last = self.query(f'timestamp(up{{job="{job}"}} == 1)')
        except (httpx.TransportError, ValueError):
            return False  # not listening yet
        return bool(last) and all(float(sample["value"][1]) > moment for sample in last)


@contextmanager
def running_prometheus(
    workdir: Path, targets: Sequence[str], *, rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (``host:port``) as job ``zwmd`` every second."""
    binary = require("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s"]
    if rule_files:
        lines += ["rule_files:", *(f"  - '{path}'" for path in rule_files)]
    lines += [
        "scrape_configs:",
        "  - job_name: zwmd",
        "    static_configs:",
        f"      - targets: [{', '.join(repr(target) for target in targets)}]",
    ]
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10)
        try:
            yield Prometheus(api)
        finally:
            api.close()
            process.terminate()
            process.wait(10)
