"""Hook implementations of the ``aws`` plugin, discovered through the ``zwmd`` entry point.

- ``zwmd_implementations``: ``aws``.
- ``zwmd_log_store``: ``s3``, an :class:`~zwmd.logs.objectstore.ObjectLogStore` on
  :class:`~zwmd_aws.s3.S3Backend` in ``ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET``,
  spooling to ``<ZWMD_STATE_DIR>/spool/s3`` while S3 is unreachable.
- ``zwmd_registry_credentials``, ``zwmd_image_exists``, ``zwmd_prepare_push``: ECR, for
  the registry of ``..._DOCKER_REGISTRY`` when the ``aws`` implementation is chosen.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from zwmd.hookspecs import hookimpl
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.plugins import PluginError
from zwmd_aws.ecr import EcrRegistry, split_image
from zwmd_aws.s3 import S3Backend

IMPLEMENTATION = "aws"
STORE = "s3"
BUCKET_VARIABLE = "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET"

_registries: dict[str | None, EcrRegistry] = {}


def registry_for(settings: Any) -> EcrRegistry:
    """The (cached, token-keeping) ECR registry of the configured region."""
    region = settings.aws_region
    if region not in _registries:
        _registries[region] = EcrRegistry(region)
    return _registries[region]


def _is_ours(settings: Any, registry: str) -> bool:
    return bool(
        settings.implementation == IMPLEMENTATION
        and settings.registry_host
        and registry == settings.registry_host
    )


def s3_store(settings: Any, *, session: Any = None) -> ObjectLogStore:
    """The ``s3`` log store the settings describe."""
    bucket = settings.aws_bucket
    if bucket is None:
        raise PluginError(
            f"{BUCKET_VARIABLE}: is required for the s3 log store; "
            "example: s3://zenml-logs/runner-logs"
        )
    backend = S3Backend(bucket.bucket, region=settings.aws_region, session=session)
    return ObjectLogStore(
        backend,
        name=STORE,
        prefix=bucket.prefix,
        spool_dir=Path(settings.state_dir) / "spool" / STORE,
    )


@hookimpl
def zwmd_implementations() -> list[str]:
    return [IMPLEMENTATION]


@hookimpl
def zwmd_log_store(settings: Any, name: str) -> ObjectLogStore | None:
    return s3_store(settings) if name == STORE else None


# firstresult hooks answer None synchronously when the question is not theirs: an async
# function would always "answer" (with a coroutine) and hide every other plugin.


@hookimpl
def zwmd_registry_credentials(
    settings: Any, registry: str
) -> Coroutine[Any, Any, dict[str, Any]] | None:
    if not _is_ours(settings, registry):
        return None
    return registry_for(settings).auths(registry)


@hookimpl
def zwmd_image_exists(
    settings: Any, image: str, auths: dict[str, Any]
) -> Coroutine[Any, Any, bool | None] | None:
    host, repository, tag = split_image(image)
    if not _is_ours(settings, host):
        return None
    return registry_for(settings).image_exists(repository, tag)


@hookimpl
async def zwmd_prepare_push(settings: Any, image: str) -> None:
    host, repository, _ = split_image(image)
    if _is_ours(settings, host):
        await registry_for(settings).ensure_repository(repository)
