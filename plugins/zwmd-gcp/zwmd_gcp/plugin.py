"""Hook implementations of the ``gcp`` plugin, discovered through the ``zwmd`` entry point.

- ``zwmd_implementations``: ``gcp``.
- ``zwmd_log_store``: ``gcs``, an :class:`~zwmd.logs.objectstore.ObjectLogStore` on
  :class:`~zwmd_gcp.gcs.GcsBackend` in ``ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET``,
  spooling to ``<ZWMD_STATE_DIR>/spool/gcs`` while GCS is unreachable.
- ``zwmd_registry_credentials``: ``oauth2accesstoken`` auths for ``gcr.io`` and
  ``*-docker.pkg.dev`` hosts when the ``gcp`` implementation is chosen. Image existence
  is left to the core's OCI check, which these registries speak with those credentials.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from zwmd.hookspecs import hookimpl
from zwmd.logs.objectstore import ObjectLogStore
from zwmd.plugins import PluginError
from zwmd_gcp.gcs import GcsBackend
from zwmd_gcp.registry import auths_for, is_google_registry

IMPLEMENTATION = "gcp"
STORE = "gcs"
BUCKET_VARIABLE = "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET"


def gcs_store(settings: Any) -> ObjectLogStore:
    """The ``gcs`` log store the settings describe."""
    bucket = settings.gcp_bucket
    if bucket is None:
        raise PluginError(
            f"{BUCKET_VARIABLE}: is required for the gcs log store; "
            "example: gs://zenml-logs/runner-logs"
        )
    return ObjectLogStore(
        GcsBackend(bucket.bucket),
        name=STORE,
        prefix=bucket.prefix,
        spool_dir=Path(settings.state_dir) / "spool" / STORE,
    )


@hookimpl
def zwmd_implementations() -> list[str]:
    return [IMPLEMENTATION]


@hookimpl
def zwmd_log_store(settings: Any, name: str) -> ObjectLogStore | None:
    return gcs_store(settings) if name == STORE else None


@hookimpl
def zwmd_registry_credentials(
    settings: Any, registry: str
) -> Coroutine[Any, Any, dict[str, Any]] | None:
    # Synchronous on purpose: firstresult takes a coroutine for an answer, so "not mine"
    # must be a plain None.
    if settings.implementation != IMPLEMENTATION or not is_google_registry(registry):
        return None
    return auths_for(registry)
