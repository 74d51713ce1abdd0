"""zwmd-aws against moto's server on 127.0.0.1: S3 logs (read back, follow, a 30 s outage), ECR.

moto keeps its state in this process, so stopping its HTTP server and starting a new one
on the same port is an outage after which the bucket is still there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from tests.motoserver import Moto
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.plugins import plugin_manager, resolve
from zwmd.settings import Settings, load_settings
from zwmd.testing.logstore_checks import (
    check_a_follower_gets_new_lines_until_the_run_is_complete,
    check_an_outage_loses_nothing,
    check_logs_land_and_read_back_identical,
)

pytestmark = pytest.mark.anyio

K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
BUCKET = "zwmd-logs"
REGION = "us-east-1"
ZWMD = "import sys; from zwmd.cli import main; sys.exit(main(sys.argv[1:]))"  # the `zwmd` script


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", server.url)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            mp.delenv(name, raising=False)
        yield server
    server.stop()


@pytest.fixture
async def bucket(moto: Moto) -> str:
    async with aioboto3.Session().client("s3", region_name=REGION) as s3:
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            await s3.create_bucket(Bucket=BUCKET)
    return BUCKET


async def proxy_host() -> str:
    """The ECR registry host of moto's account, as moto names it."""
    async with aioboto3.Session().client("ecr", region_name=REGION) as ecr:
        data = (await ecr.get_authorization_token())["authorizationData"][0]
    return str(data["proxyEndpoint"]).removeprefix("https://")


def aws_settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "HOME": str(tmp_path),
            "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": "aws",
            f"{K}NAMESPACE": "zenml",
            f"{K}SERVICE_ACCOUNT": "zenml-runner",
            f"{K}ENABLE_EXTERNAL_LOGS": "true",
            "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET": f"s3://{BUCKET}/runner-logs",
            "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION": REGION,
            "ZWMD_STATE_DIR": str(tmp_path / "state"),
            **extra,
        }
    )


async def s3_store(settings: Settings) -> ObjectLogStore:
    """The store exactly as the daemon gets it: through the plugin manager's hook."""
    manager = plugin_manager()
    store = await resolve(manager.hook.zwmd_log_store(settings=settings, name=settings.log_store))
    assert isinstance(store, ObjectLogStore)
    store.poll_seconds = store.retry_seconds = 0.2
    return store


async def bucket_keys(prefix: str) -> list[str]:
    async with aioboto3.Session().client("s3", region_name=REGION) as s3:
        page = await s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in page.get("Contents", [])]


def store_factory(tmp_path: Path) -> Callable[[str], Awaitable[ObjectLogStore]]:
    """One store per name, each with its own home and state (another process each)."""

    async def make_store(name: str) -> ObjectLogStore:
        settings = aws_settings(tmp_path / name)
        assert settings.log_store == "s3"
        return await s3_store(settings)

    return make_store


async def test_logs_land_in_the_bucket_and_read_back_identical(bucket: str, tmp_path: Path) -> None:
    await check_logs_land_and_read_back_identical(store_factory(tmp_path), bucket_keys)


async def test_a_follower_gets_new_lines_and_ends_when_the_run_is_complete(
    bucket: str, tmp_path: Path
) -> None:
    await check_a_follower_gets_new_lines_until_the_run_is_complete(store_factory(tmp_path))


async def test_a_30_second_outage_in_the_middle_of_a_run_loses_nothing(
    bucket: str, moto: Moto, tmp_path: Path
) -> None:
    await check_an_outage_loses_nothing(
        store_factory(tmp_path),
        moto.outage,
        spool_dir=tmp_path / "writer" / "state" / "spool" / "s3",
    )


async def test_ecr_auth_is_a_valid_dockerconfigjson_and_is_cached(
    moto: Moto, tmp_path: Path
) -> None:
    host = await proxy_host()
    settings = aws_settings(tmp_path, **{f"{K}DOCKER_REGISTRY": f"{host}/zenml"})
    manager = plugin_manager()
    auths: dict[str, Any] = await resolve(
        manager.hook.zwmd_registry_credentials(settings=settings, registry=host)
    )
    config = json.loads(json.dumps({"auths": {k: {"auth": v["auth"]} for k, v in auths.items()}}))
    user, _, password = base64.b64decode(config["auths"][host]["auth"]).decode().partition(":")
    assert user == "AWS"
    assert password
    assert auths[host]["expires_at"] < 1_500_000_000  # moto's token is already expired ...
    from zwmd_aws.plugin import registry_for

    fetches = registry_for(settings).token.fetches
    for _ in range(20):  # ... and still not fetched again on every use
        await resolve(manager.hook.zwmd_registry_credentials(settings=settings, registry=host))
    assert registry_for(settings).token.fetches == fetches
    # Another registry is none of this plugin's business.
    other = await resolve(
        manager.hook.zwmd_registry_credentials(settings=settings, registry="registry.example")
    )
    assert other is None


async def test_a_missing_ecr_repository_is_created_before_a_push(
    moto: Moto, tmp_path: Path
) -> None:
    host = await proxy_host()
    settings = aws_settings(tmp_path, **{f"{K}DOCKER_REGISTRY": f"{host}/zenml"})
    manager = plugin_manager()
    image = f"{host}/zenml/runner-created:abc123"
    for prepared in manager.hook.zwmd_prepare_push(settings=settings, image=image):
        await resolve(prepared)
    async with aioboto3.Session().client("ecr", region_name=REGION) as ecr:
        found = await ecr.describe_repositories(repositoryNames=["zenml/runner-created"])
        assert found["repositories"][0]["repositoryName"] == "zenml/runner-created"
        # Pushed nothing yet: describe_images says no, and the hook answers False.
        exists = manager.hook.zwmd_image_exists(settings=settings, image=image, auths={})
        assert await resolve(exists) is False
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
        await ecr.put_image(
            repositoryName="zenml/runner-created",
            imageManifest=json.dumps(manifest),
            imageTag="abc123",
        )
    exists = manager.hook.zwmd_image_exists(settings=settings, image=image, auths={})
    assert await resolve(exists) is True
    # Again: the repository exists, nothing fails.
    for prepared in manager.hook.zwmd_prepare_push(settings=settings, image=image):
        await resolve(prepared)


def test_choosing_aws_without_the_plugin_stops_zwmd_serve_saying_what_to_install(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE": (
            "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager"
        ),
        "ZWMD_STATE_DIR": str(tmp_path / "state"),
        "ZWMD_DISABLE_PLUGINS": "aws",  # installed, but not loaded: as if it were not
    }
    done = subprocess.run(
        [sys.executable, "-c", ZWMD, "serve", "--local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install ./plugins/zwmd-aws" in done.stderr
