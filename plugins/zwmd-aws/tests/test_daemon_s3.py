"""``zwmd serve --local`` with its logs in S3 (moto on 127.0.0.1), set up as an operator would.

The daemon is a subprocess configured only by the seeds' variables: the AWS
implementation source, external logs on, the bucket and region, and the endpoint of
moto. A runner prints numbered lines; what a user sees is checked from every side: the
daemon's log API, the objects in the bucket, a fresh store of the plugin reading them
back, and ``zwmd plugins``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from moto.server import ThreadedMotoServer
from zwmd_aws import __version__ as aws_version
from zwmd_aws.plugin import s3_store

from tests.daemon_process import DaemonProcess, start_daemon
from zwmd.testing.logstore_checks import check_runner_logs_through_the_daemon

BUCKET = "zwmd-daemon-logs"
PREFIX = "runner-logs"
REGION = "us-east-1"
SOURCE = "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aws_env(moto_url: str) -> dict[str, str]:
    """What an operator sets (the seeds' variables), plus the endpoint and keys of moto."""
    return {
        "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": SOURCE,
        "ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS": "true",
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": f"s3://{BUCKET}/{PREFIX}",
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


@pytest.fixture(scope="module")
def s3(aws_env: dict[str, str]) -> Any:
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=aws_env["AWS_ENDPOINT_URL"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def daemon(
    s3: Any, aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    env = {
        **aws_env,
        "HOME": str(tmp_path_factory.mktemp("home")),
        # no shared credentials or profiles of the caller's
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    process = start_daemon(tmp_path_factory.mktemp("zwmd-s3"), env=env)
    yield process
    assert process.stop() == 0, process.output()  # SIGTERM: a clean stop


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZWMD_", "ZENML_", "AWS_"))}
    env.update(extra)
    return env


def test_runner_logs_go_to_the_bucket_and_read_back_through_the_daemon(
    daemon: DaemonProcess, s3: Any, aws_env: dict[str, str], tmp_path: Path
) -> None:
    async def list_objects(prefix: str) -> list[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]

    with pytest.MonkeyPatch.context() as mp:
        for name, value in aws_env.items():
            if name.startswith("AWS_"):
                mp.setenv(name, value)
        check_runner_logs_through_the_daemon(
            daemon,
            store="s3",
            prefix=PREFIX,
            settings_env=_clean_env(aws_env),
            open_store=s3_store,
            list_objects=list_objects,
            state_dir=tmp_path,
        )


def test_zwmd_plugins_lists_the_aws_plugin_with_its_version_and_hooks(
    aws_env: dict[str, str],
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zwmd", "plugins"],
        env=_clean_env(aws_env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("  ", 1)[0]: line for line in done.stdout.splitlines()}
    assert "aws" in rows, done.stdout
    _, version, hooks = rows["aws"].split("  ")
    assert version == f"zwmd-aws {aws_version}"
    assert set(hooks.removeprefix("hooks: ").split(", ")) == {
        "zwmd_implementations",
        "zwmd_log_store",
        "zwmd_registry_credentials",
        "zwmd_image_exists",
        "zwmd_prepare_push",
    }
