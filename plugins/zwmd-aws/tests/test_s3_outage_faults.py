"""S3 away for 60 s while runs come and go, their logs in the bucket: nothing is lost.

A scenario of the fault suite (:func:`tests.faults.harness.run_scenario`): moto's server
on 127.0.0.1 holds the bucket; 5 s in, its HTTP server stops (connections refused, as an
endpoint that is down), and 60 s later it is back on the same port with the same bucket
(moto keeps its state in this process). Every run's state, exit code and log, read back
through the daemon once it is over, are compared line by line with what its pod printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.faults.harness import FAULT_SECONDS, Cluster, run_scenario
from tests.motoserver import Moto

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

BUCKET = "zwmd-fault-logs"
REGION = "us-east-1"
SOURCE = "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager"


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto()
    try:
        yield server
    finally:
        server.stop()


def s3_client(moto: Moto) -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_an_s3_outage_of_a_minute(moto: Moto, tmp_path: Path) -> None:
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=BUCKET)
    env = {  # what an operator sets (the seeds' variables), and moto's endpoint and keys
        "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": SOURCE,
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS": "true",
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": f"s3://{BUCKET}/runner-logs",
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": REGION,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }

    def fault(cluster: Cluster) -> int:
        time.sleep(5)
        moto.stop()
        try:
            time.sleep(FAULT_SECONDS)
        finally:
            moto.start()
        return 1

    fleet = run_scenario(tmp_path, "s3_outage", fault, seed=25, env=env)
    listed = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="runner-logs/")
    keys = [item["Key"] for page in listed for item in page.get("Contents", [])]
    stored = {run.wid for run in fleet.runs if any(run.wid in key for key in keys)}
    assert len(stored) == len(fleet.runs)  # every log is in the bucket, not only on disk
