"""S3 as an :class:`~zwmd.logs.objectstore.ObjectBackend` (aioboto3): where the ``s3`` log store keeps chunks.

Credentials come from the default AWS chain (environment, shared config, IRSA web
identity, instance profile); the endpoint from ``AWS_ENDPOINT_URL`` when set (botocore
reads it: that is how tests point at moto). Retries are few and timeouts short: the
log store spools to local disk when S3 does not answer, so waiting longer helps nobody.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aioboto3
import anyio
from botocore.config import Config
from botocore.exceptions import ClientError

__all__ = ["S3Backend", "client_config"]

_MISSING = {"NoSuchKey", "404", "NotFound"}


def client_config() -> Config:
    """Short timeouts and one retry: an outage is handled by spooling, not by waiting."""
    return Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=20,
    )


class S3Backend:
    """Objects of one S3 bucket.

    :param bucket: the bucket name.
    :param region: the bucket's region (``ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION``).
    :param session: an ``aioboto3.Session`` (a new default one when None).
    """

    def __init__(self, bucket: str, *, region: str | None, session: Any = None) -> None:
        self.bucket = bucket
        self.region = region
        self.url = f"s3://{bucket}"
        self._session = session or aioboto3.Session()
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock: anyio.Lock | None = None

    async def client(self) -> Any:
        """The S3 client, created on first use (in the running event loop)."""
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    self._session.client("s3", region_name=self.region, config=client_config())
                )
                self._stack = stack
        return self._client

    async def put(self, name: str, data: bytes) -> None:
        client = await self.client()
        await client.put_object(
            Bucket=self.bucket, Key=name, Body=data, ContentType="application/x-ndjson"
        )

    async def get(self, name: str, start: int = 0) -> bytes | None:
        client = await self.client()
        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            response = await client.get_object(Bucket=self.bucket, Key=name, **extra)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return None
            if code == "InvalidRange":  # nothing at or after ``start``
                return b""
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def list(self, prefix: str) -> list[str]:
        client = await self.client()
        names: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            names.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(names)

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
