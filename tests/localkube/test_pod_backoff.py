"""The Job controller's pod failure backoff, as upstream's job controller does it.

A failed pod is replaced 10 s after it failed, twice that after each further
consecutive failure, at most 6 min, and from scratch once a pod succeeds; localkube
multiplies every delay by ``pod_backoff_scale``. The timing tests fail pods through the
scripted kubelet and measure, on their own clock, how long the replacement took to
appear: never less than the scaled delay (no upper bounds: the machine may be slow).
What the controller decided is read from ``kube.job_controller.pod_backoff``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from kubernetes_asyncio import client, config

from tests.localkube.test_jobs_scripted import manifest
from zwmd.localkube import LocalKube
from zwmd.localkube.cli import build_parser
from zwmd.localkube.controllers import JobController
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.localkube.podbackoff import (
    MAX_SECONDS,
    TEST_SCALE,
    Finished,
    PodBackoff,
    backoff_delay,
    check_scale,
)
from zwmd.localkube.store import Store

pytestmark = pytest.mark.anyio

NS = "default"


# --- the rule ---------------------------------------------------------------------------


def test_the_delay_doubles_from_ten_seconds_up_to_six_minutes() -> None:
    delays = [backoff_delay(n) for n in range(9)]
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 360.0, 360.0]
    assert backoff_delay(10_000) == MAX_SECONDS


def test_the_scale_multiplies_every_delay() -> None:
    assert backoff_delay(1, 0.01) == pytest.approx(0.1)
    assert backoff_delay(3, 0.01) == pytest.approx(0.4)
    assert backoff_delay(7, 0.01) == pytest.approx(3.6)
    assert backoff_delay(5, 0.0) == 0.0


@pytest.mark.parametrize("scale", [-1.0, math.nan, math.inf])
def test_a_scale_must_be_finite_and_not_negative(scale: float) -> None:
    with pytest.raises(ValueError, match="pod backoff scale"):
        check_scale(scale)


def test_a_record_counts_failures_since_the_last_success() -> None:
    backoff = PodBackoff(scale=1.0)
    assert backoff.record("job") is None
    backoff.observe("job", [Finished(100.0, succeeded=False)], seen_at=200.0)
    backoff.observe("job", [Finished(101.0, succeeded=False)], seen_at=210.0)
    record = backoff.record("job")
    assert record is not None
    assert (record.failures, record.last_failure, record.delay) == (2, 210.0, 20.0)
    assert backoff.not_before("job") == 230.0

    backoff.observe("job", [Finished(102.0, succeeded=True)], seen_at=220.0)
    assert backoff.record("job") is None
    assert backoff.not_before("job") is None


def test_pods_seen_together_are_taken_in_the_order_they_finished() -> None:
    backoff = PodBackoff(scale=1.0)
    backoff.observe("job", [Finished(5.0, False), Finished(4.0, True)], seen_at=9.0)
    record = backoff.record("job")
    assert record is not None
    assert record.failures == 1  # the failure came after the success

    backoff.observe("other", [Finished(5.0, True), Finished(4.0, False)], seen_at=9.0)
    assert backoff.record("other") is None  # the success came last

    # the same second: the failure counts as before the success, as upstream's "not after"
    backoff.observe("tie", [Finished(7.0, True), Finished(7.0, False)], seen_at=9.0)
    assert backoff.record("tie") is None


# --- the defaults -----------------------------------------------------------------------


def test_the_controller_defaults_to_upstream_timing_and_localkube_to_the_test_scale() -> None:
    assert JobController(Store()).pod_backoff.scale == 1.0
    kube = LocalKube(kubelet=None)
    assert kube.job_controller is not None
    assert kube.job_controller.pod_backoff.scale == TEST_SCALE
    slow = LocalKube(kubelet=None, pod_backoff_scale=1.0)
    assert slow.job_controller is not None
    assert slow.job_controller.pod_backoff.scale == 1.0


def test_zwmd_localkube_defaults_to_upstream_timing(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args([]).pod_backoff_scale == 1.0
    assert parser.parse_args(["--pod-backoff-scale", "0.5"]).pod_backoff_scale == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--pod-backoff-scale", "-1"])
    assert "pod backoff scale must be" in capsys.readouterr().err


# --- on a running localkube -------------------------------------------------------------


@asynccontextmanager
async def localkube(
    tmp_path: Path, scale: float
) -> AsyncIterator[tuple[LocalKube, ScriptedKubelet, Any]]:
    async with LocalKube(kubelet="scripted", pod_backoff_scale=scale) as kube:
        api = await config.new_client_from_config(
            config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        )
        try:
            yield kube, kube.kubelet, api
        finally:
            await api.close()


async def create(api: Any, body: Any) -> str:
    """Create the Job; its uid."""
    job = await client.BatchV1Api(api).create_namespaced_job(NS, body)
    return str(job.metadata.uid)


async def replacement(
    kubelet: ScriptedKubelet, job: str, pod: str, **how: Any
) -> tuple[str, float]:
    """Fail ``pod``; the pod that replaces it, and how long it took to appear."""
    failed_at = time.time()
    if how.get("evict"):
        kubelet.evict(NS, pod)
    else:
        kubelet.fail(NS, pod, exit_code=1)
    new = await kubelet.wait_for_pod(NS, job, timeout=10)
    return new, time.time() - failed_at


async def complete(api: Any, name: str) -> Any:
    """The Job, once it is Complete."""
    with anyio.fail_after(5):
        while True:
            job = await client.BatchV1Api(api).read_namespaced_job(name, NS)
            if any(c.type == "Complete" for c in job.status.conditions or []):
                return job
            await anyio.sleep(0.02)


def recorded(kube: LocalKube, uid: str) -> tuple[int, float] | None:
    """What the controller recorded for Job ``uid``: failures and the delay they cost."""
    assert kube.job_controller is not None
    record = kube.job_controller.pod_backoff.record(uid)
    return None if record is None else (record.failures, record.delay)


async def test_consecutive_failures_space_the_pods_by_one_two_and_four_delays(
    tmp_path: Path,
) -> None:
    scale = 0.02  # 0.2 s, 0.4 s, 0.8 s
    async with localkube(tmp_path, scale) as (kube, kubelet, api):
        uid = await create(api, manifest("spaced", backoffLimit=3))
        pod = await kubelet.wait_for_pod(NS, "spaced")
        for failures, delay in ((1, 0.2), (2, 0.4), (3, 0.8)):
            assert backoff_delay(failures, scale) == pytest.approx(delay)
            pod, waited = await replacement(kubelet, "spaced", pod)
            assert waited >= backoff_delay(failures, scale)
            assert recorded(kube, uid) == (failures, backoff_delay(failures, scale))
            job = await client.BatchV1Api(api).read_namespaced_job("spaced", NS)
            assert job.status.failed == failures
        kubelet.fail(NS, pod, exit_code=1)  # the fourth failure is one too many


async def test_the_delay_stops_doubling_at_six_minutes(tmp_path: Path) -> None:
    scale = 0.001  # 10 ms doubling to 360 ms
    async with localkube(tmp_path, scale) as (kube, kubelet, api):
        uid = await create(api, manifest("capped", backoffLimit=10))
        pod = await kubelet.wait_for_pod(NS, "capped")
        delays = []
        for failures in range(1, 9):
            pod, waited = await replacement(kubelet, "capped", pod)
            record = recorded(kube, uid)
            assert record is not None
            assert record[0] == failures
            assert waited >= record[1]
            delays.append(record[1])
        capped = MAX_SECONDS * scale
        assert delays[:6] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
        assert delays[6:] == pytest.approx([capped, capped])  # not 0.64 s, then 1.28 s
        kubelet.succeed(NS, pod)


async def test_a_success_starts_the_backoff_again(tmp_path: Path) -> None:
    scale = 0.02
    async with localkube(tmp_path, scale) as (kube, kubelet, api):
        uid = await create(api, manifest("reset", completions=2, backoffLimit=5))
        pod = await kubelet.wait_for_pod(NS, "reset")
        pod, waited = await replacement(kubelet, "reset", pod)
        assert waited >= backoff_delay(1, scale)
        pod, waited = await replacement(kubelet, "reset", pod)
        assert waited >= backoff_delay(2, scale)
        assert recorded(kube, uid) == (2, backoff_delay(2, scale))

        kubelet.succeed(NS, pod)
        pod = await kubelet.wait_for_pod(NS, "reset")
        assert recorded(kube, uid) is None  # the next pod did not wait

        pod, waited = await replacement(kubelet, "reset", pod)
        assert waited >= backoff_delay(1, scale)
        assert recorded(kube, uid) == (1, backoff_delay(1, scale))  # 1x again, not 3x

        kubelet.succeed(NS, pod)
        job = await complete(api, "reset")
        assert (job.status.failed, job.status.succeeded) == (3, 2)
        assert recorded(kube, uid) is None  # a finished Job keeps no record


async def test_a_failure_the_policy_ignores_still_waits_but_is_not_counted(
    tmp_path: Path,
) -> None:
    scale = 0.02
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    async with localkube(tmp_path, scale) as (kube, kubelet, api):
        uid = await create(api, manifest("evicted", backoffLimit=0, podFailurePolicy=policy))
        first = await kubelet.wait_for_pod(NS, "evicted")
        kubelet.set_running(NS, first)
        _, waited = await replacement(kubelet, "evicted", first, evict=True)
        assert waited >= backoff_delay(1, scale)
        assert recorded(kube, uid) == (1, backoff_delay(1, scale))
        job = await client.BatchV1Api(api).read_namespaced_job("evicted", NS)
        assert not job.status.failed
