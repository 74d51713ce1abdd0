"""Hostile input: schemathesis sends what the OpenAPI document allows, and what it does not.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid (odd
ids, huge and malformed bodies, wrong types), with the token. The daemon must never
answer 5xx, and must still be healthy afterwards. localkube runs with no kubelet, so
the generated run requests become Jobs whose pods never run (a generated command is
never executed). The long-polls get a short ``timeout`` so that no request waits.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.faults.harness import Cluster, Daemon

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("ZWMD_TEST_FAULTS_EXAMPLES", "200"))


def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, kubelet="none")
    daemon = Daemon(cluster, tmp_path)
    daemon.start()
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    auth = {"Authorization": f"Bearer {daemon.token}"}
    try:
        schema = schemathesis.openapi.from_url(f"{daemon.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 8  # every endpoint of the API is exercised

        for operation in operations:
            cases = st.one_of([operation.as_strategy(mode) for mode in GenerationMode])
            auth_kinds = st.sampled_from(["token", "token", "token", "none"])

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=cases, auth_kind=auth_kinds)
            def probe(case: Any, auth_kind: str) -> None:
                if case.path.endswith("/wait") or "follow" in (case.query or {}):
                    case.query = {**(case.query or {}), "timeout": 0.2, "follow": "false"}
                headers = auth if auth_kind == "token" else {}
                response = case.call(base_url=daemon.url, headers=headers, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    errors.append(f"{case.method} {case.formatted_path}: {response.status_code}")

            probe()
        report: dict[str, Any] = {"scenario": "hostile_input"}
        report.update(requests=sum(statuses.values()), statuses=dict(sorted(statuses.items())))
        print(json.dumps(report))
        if os.environ.get("ZWMD_TEST_FAULTS_REPORT"):
            where = Path(os.environ["ZWMD_TEST_FAULTS_REPORT"])
            where.mkdir(parents=True, exist_ok=True)
            (where / "hostile_input.txt").write_text(json.dumps(report))
        assert not errors, errors[:20]
        assert httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 200
        daemon.check_alive()
        assert not daemon.crashes, daemon.crashes
    finally:
        daemon.stop()
        cluster.stop()
