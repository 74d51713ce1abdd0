"""GCS as an :class:`~zwmd.logs.objectstore.ObjectBackend` (gcloud-aio-storage): where the ``gcs`` log store keeps chunks.

Credentials are Google's default credentials (workload identity, the metadata server,
``GOOGLE_APPLICATION_CREDENTIALS``); ``STORAGE_EMULATOR_HOST`` points the client at an
emulator instead, without credentials (gcloud-aio-storage reads it). Timeouts are short:
the log store spools to local disk when GCS does not answer.
"""

from __future__ import annotations

import aiohttp
import anyio
from gcloud.aio.storage import Storage

__all__ = ["GcsBackend"]

_TIMEOUT = 20


class GcsBackend:
    """Objects of one GCS bucket.

    :param bucket: the bucket name.
    :param storage: a ``gcloud.aio.storage.Storage`` (one is made on first use when None).
    """

    def __init__(self, bucket: str, *, storage: Storage | None = None) -> None:
        self.bucket = bucket
        self.url = f"gs://{bucket}"
        self._storage = storage
        self._lock: anyio.Lock | None = None

    async def storage(self) -> Storage:
        """The client, created on first use (in the running event loop)."""
        if self._storage is not None:
            return self._storage
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._storage is None:
                self._storage = Storage()
        return self._storage

    async def put(self, name: str, data: bytes) -> None:
        storage = await self.storage()
        await storage.upload(
            self.bucket, name, data, content_type="application/x-ndjson", timeout=_TIMEOUT
        )

    async def get(self, name: str, start: int = 0) -> bytes | None:
        storage = await self.storage()
        headers = {"Range": f"bytes={start}-"} if start else None
        try:
            data: bytes = await storage.download(
                self.bucket, name, headers=headers, timeout=_TIMEOUT
            )
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                return None
            if exc.status == 416:  # nothing at or after ``start``
                return b""
            raise
        return data

    async def list(self, prefix: str) -> list[str]:
        storage = await self.storage()
        names: list[str] = []
        params = {"prefix": prefix}
        while True:
            page = await storage.list_objects(self.bucket, params=params, timeout=_TIMEOUT)
            names.extend(str(item["name"]) for item in page.get("items", ()))
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)
            params = {"prefix": prefix, "pageToken": str(token)}

    async def aclose(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            await storage.close()
