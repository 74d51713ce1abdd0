"""The key of the spec hash: one random key per namespace, kept in a Secret.

Design notes:

- The spec hash (``zwmd.io/spec-hash`` on every runner Job) is compared when a run
  request is sent again under the same id, by this daemon or after a restart (the
  adopted Job's annotation against a hash of the new request). It covers the run's
  environment, so an unkeyed hash would let anyone who can read Jobs confirm a guessed
  token offline. It is an HMAC-SHA-256 with this key (:func:`~zwmd.engine.workload.spec_hash`).
- The key must outlive the daemon and be the same for every daemon of one namespace,
  and must not be readable by whoever can read Jobs. It lives in the Secret
  :data:`SECRET_NAME` of zwmd's namespace (key ``key``, 32 random bytes): who may read it
  may read the runs' environment Secrets anyway. The API token would not do (it is
  optional, and rotating it would change every hash); the state directory would not do
  either (a sidecar's is often an ``emptyDir``).
- It is read when the first run request needs it (not at start-up, which must not
  wait for the apiserver): one GET, plus one create the very first time. Two daemons
  creating it at once: the second gets 409 and reads the first one's. A request that
  cannot read it fails like any request Kubernetes could not serve (503, sent again).
- A Secret without a usable key is an error that names it, never replaced silently:
  replacing it would make every earlier Job's hash unmatchable.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Final

import anyio

from zwmd.kube import naming
from zwmd.kube.client import KubeClient, KubeError, Obj

__all__ = ["SECRET_NAME", "SpecKey", "SpecKeyError"]

#: The Secret that holds the key, in zwmd's namespace.
SECRET_NAME: Final = "zwmd-spec-key"
_FIELD: Final = "key"
_KEY_BYTES: Final = 32


class SpecKeyError(Exception):
    """The key's Secret exists but holds no usable key."""


class SpecKey:
    """The HMAC key of spec hashes, read (or created) once and then kept."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._key: bytes | None = None
        self._lock = anyio.Lock()

    async def get(self) -> bytes:
        """The key (one GET the first time; one create if it never existed)."""
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = await self._load()
        return self._key

    async def _load(self) -> bytes:
        try:
            return _key_of(await self.kube.get("secrets", SECRET_NAME))
        except KubeError as exc:
            if exc.code != 404:
                raise
        key = secrets.token_bytes(_KEY_BYTES)
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_NAME,
                "labels": {naming.LABEL_MANAGED_BY: naming.MANAGED_BY},
            },
            "data": {_FIELD: base64.b64encode(key).decode()},
        }
        try:
            await self.kube.create("secrets", secret)
        except KubeError as exc:
            if exc.code != 409:
                raise
            return _key_of(await self.kube.get("secrets", SECRET_NAME))  # another daemon's
        return key


def _key_of(secret: Obj) -> bytes:
    text = (secret.get("data") or {}).get(_FIELD)
    try:
        key = base64.b64decode(str(text), validate=True) if text else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < 16:
        raise SpecKeyError(
            f"the Secret {SECRET_NAME} has no usable {_FIELD!r} (16 bytes or more, base64); "
            "restore it, or delete it to start a new key (retried run requests made before "
            "will then be refused as another spec)"
        )
    return key
