"""Registry credentials: where they come from, how long they are kept, how they are written.

Credentials for one registry host are looked up in this order, the first answer wins:

1. ``ZWMD_REGISTRY_CONFIG``: a docker ``config.json`` (its ``auths``), the file docker
   and kaniko users already have. Re-read when its modification time changes.
2. ``ZWMD_REGISTRY_SECRET``: a ``kubernetes.io/dockerconfigjson`` Secret in zwmd's
   namespace (the kind ``kubectl create secret docker-registry`` makes). Re-read every
   :attr:`CredentialSource.secret_ttl` seconds.
3. The ``zwmd_registry_credentials`` hook (plugins: ECR, Artifact Registry, ...).

Design notes:

- An ``auths`` entry may carry ``expires_at`` (seconds since the epoch, or RFC 3339):
  the answer is then kept until shortly before it (:attr:`CredentialSource.refresh_margin`,
  or half the remaining lifetime when that is shorter), otherwise for
  :attr:`CredentialSource.default_ttl`. An expiry already in the past (moto's ECR
  tokens expire in 2015) is used once and kept for ``minimum_ttl``: never a refresh loop.
- ``expires_at`` never leaves the daemon: :func:`dockerconfigjson` writes entries as
  ``{"auth": base64(user:password)}`` (plus ``registrytoken``/``identitytoken`` as given).
- Keys of ``auths`` may be written as docker writes them (``https://host/v1/``); they
  are matched by host.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from zwmd.kube.client import KubeClient, KubeError

__all__ = [
    "Auths",
    "CredentialSource",
    "auth_for",
    "dockerconfigjson",
    "expiry_of",
    "normalize_host",
    "read_docker_config",
]

log = logging.getLogger(__name__)

Auths = dict[str, dict[str, Any]]
CredentialsHook = Callable[[str], Awaitable[Mapping[str, Any] | None]]


def normalize_host(key: str) -> str:
    """``https://registry.example:5000/v1/`` → ``registry.example:5000``."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.split("/", 1)[0]


def auth_for(auths: Mapping[str, Any] | None, host: str) -> dict[str, Any] | None:
    """The ``auths`` entry for ``host`` (keys compared as hosts), or None."""
    for key, entry in (auths or {}).items():
        if normalize_host(str(key)) == host and isinstance(entry, Mapping):
            return dict(entry)
    return None


def read_docker_config(data: bytes | str) -> dict[str, Any]:
    """The ``auths`` of a docker ``config.json`` (``{}`` when it has none)."""
    config = json.loads(data)
    if not isinstance(config, dict):
        raise ValueError("a docker config must be a JSON object")
    if config.get("credHelpers") or config.get("credsStore"):
        log.warning("docker config: credHelpers/credsStore are not used by zwmd; only auths")
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise ValueError("the docker config's auths must be a JSON object")
    return auths


def expiry_of(entry: Mapping[str, Any]) -> float | None:
    """``expires_at`` of an entry as seconds since the epoch, or None."""
    value = entry.get("expires_at")
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clean(entry: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    if entry.get("auth"):
        out["auth"] = str(entry["auth"])
    elif entry.get("username"):
        pair = f"{entry['username']}:{entry.get('password') or ''}"
        out["auth"] = base64.b64encode(pair.encode()).decode()
    for key in ("identitytoken", "registrytoken"):
        if entry.get(key):
            out[key] = str(entry[key])
    return out


def dockerconfigjson(auths: Mapping[str, Mapping[str, Any]]) -> str:
    """The ``.dockerconfigjson`` body for ``auths`` (expiries and extras dropped)."""
    return json.dumps(
        {"auths": {host: _clean(entry) for host, entry in sorted(auths.items())}},
        sort_keys=True,
        separators=(",", ":"),
    )


class CredentialSource:
    """Credentials per registry host, from the configured file, Secret, or plugins."""

    default_ttl = 300.0
    secret_ttl = 60.0
    refresh_margin = 600.0
    minimum_ttl = 60.0

    def __init__(
        self,
        *,
        config_path: Path | None = None,
        secret_name: str | None = None,
        kube: KubeClient | None = None,
        hook: CredentialsHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.secret_name = secret_name
        self.kube = kube
        self.hook = hook
        self.clock = clock
        self._file: tuple[float, dict[str, Any]] | None = None  # mtime, auths
        self._secret: tuple[float, dict[str, Any]] | None = None  # read at, auths
        self._hooked: dict[str, tuple[float, dict[str, Any] | None]] = {}  # host -> until, entry
        self._origins: dict[str, str] = {}  # host -> where its last entry came from

    async def auths(self, host: str) -> Auths:
        """``{host: entry}`` when credentials for ``host`` are known, else ``{}``."""
        entry = await self.entry(host)
        return {host: entry} if entry else {}

    async def entry(self, host: str) -> dict[str, Any] | None:
        """The ``auths`` entry for ``host``, or None."""
        self._origins.pop(host, None)
        in_file, in_secret = self._from_file(host), await self._from_secret(host)
        for found, origin in (
            (in_file, f"ZWMD_REGISTRY_CONFIG ({self.config_path})"),
            (in_secret, f"ZWMD_REGISTRY_SECRET ({self.secret_name})"),
        ):
            if found:
                self._origins[host] = origin
                return found
        hooked = await self._from_hook(host)
        if hooked:
            self._origins[host] = "the zwmd_registry_credentials hook (a plugin)"
        return hooked

    def origin(self, host: str) -> str | None:
        """Where the last :meth:`entry` for ``host`` came from (for messages), or None."""
        return self._origins.get(host)

    def _from_file(self, host: str) -> dict[str, Any] | None:
        if self.config_path is None:
            return None
        try:
            mtime = self.config_path.stat().st_mtime
            if self._file is None or self._file[0] != mtime:
                self._file = (mtime, read_docker_config(self.config_path.read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("ZWMD_REGISTRY_CONFIG %s cannot be read: %s", self.config_path, exc)
            return None
        return auth_for(self._file[1], host)

    async def _from_secret(self, host: str) -> dict[str, Any] | None:
        if self.secret_name is None or self.kube is None:
            return None
        now = self.clock()
        if self._secret is None or now - self._secret[0] >= self.secret_ttl:
            try:
                secret = await self.kube.get("secrets", self.secret_name)
                encoded = (secret.get("data") or {}).get(".dockerconfigjson", "")
                auths = read_docker_config(base64.b64decode(encoded)) if encoded else {}
            except (KubeError, ValueError) as exc:
                log.warning("ZWMD_REGISTRY_SECRET %s cannot be read: %s", self.secret_name, exc)
                auths = self._secret[1] if self._secret else {}
            self._secret = (now, auths)
        return auth_for(self._secret[1], host)

    async def _from_hook(self, host: str) -> dict[str, Any] | None:
        if self.hook is None:
            return None
        now = self.clock()
        cached = self._hooked.get(host)
        if cached is not None and now < cached[0]:
            return cached[1]
        answer = await self.hook(host)
        entry = auth_for(answer, host) if answer else None
        self._hooked[host] = (self._keep_until(entry, now), entry)
        return entry

    def _keep_until(self, entry: Mapping[str, Any] | None, now: float) -> float:
        expiry = expiry_of(entry) if entry else None
        if expiry is None:
            return now + self.default_ttl
        left = expiry - now
        if left <= self.minimum_ttl:
            return now + self.minimum_ttl
        return now + left - min(self.refresh_margin, left / 2)
