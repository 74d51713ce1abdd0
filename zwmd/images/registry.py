"""Does an image exist? The OCI distribution API, spoken with httpx.

The builtin ``zwmd_image_exists`` hook asks :meth:`RegistryClient.exists`, which sends
``HEAD /v2/<repository>/manifests/<tag>`` with the ``Accept`` headers of every manifest
kind a registry may hold (OCI index and manifest, Docker manifest list and v2
manifest), and answers ``True`` (200), ``False`` (404) or ``None`` ("unknown": the
registry is unreachable or answered something else; zwmd then builds).

Design notes:

- Authentication follows the registry's ``WWW-Authenticate`` challenge, as docker and
  kaniko do: anonymous first; on ``401 Basic`` the request is repeated with the
  credentials; on ``401 Bearer realm=...,service=...,scope=...`` a token is fetched from
  the realm (with the credentials as Basic auth when there are some, anonymously
  otherwise) for ``repository:<repo>:pull`` and the request repeated with it.
- What was learned is kept: the scheme a registry asked for (so the next check sends
  Basic at once), and Bearer tokens per registry, scope and credentials until shortly
  before their ``expires_in``. A cache hit is then one HEAD on a kept-alive connection.
- Refused credentials are not "unknown": :class:`RegistryAuthError` says which registry
  refused what, so a build that could not push either fails at once with that message.
- ``ZWMD_INSECURE_REGISTRIES`` hosts are reached over plain HTTP, all others over HTTPS.
- A registry is named by the image's first path component when it looks like a host
  (has a dot or a port, or is ``localhost``); zwmd always asks about images it named
  itself (``<registry>/<name>:<tag>``), so there are no short names to expand.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "MANIFEST_TYPES",
    "ImageRef",
    "RegistryAuthError",
    "RegistryClient",
    "parse_challenge",
]

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join(MANIFEST_TYPES)
_TOKEN_MARGIN = 30.0  # seconds before a token's end at which it is no longer used
_DEFAULT_TOKEN_SECONDS = 60.0  # the distribution spec's default ``expires_in``


class RegistryAuthError(Exception):
    """The registry refused the credentials (or asked for some and none are configured)."""


@dataclass(frozen=True)
class ImageRef:
    """``registry/repository:tag`` (or ``@digest``), split."""

    registry: str
    repository: str
    reference: str

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        """Split a full image name; raises ``ValueError`` when it names no registry."""
        name, at, digest = image.partition("@")
        head, slash, rest = name.partition("/")
        if not slash or not ("." in head or ":" in head or head == "localhost"):
            raise ValueError(f"{image!r} does not start with a registry host")
        repository, reference = rest, digest
        if not at:
            last = rest.rsplit("/", 1)[-1]
            if ":" in last:
                repository, _, reference = rest.rpartition(":")
            else:
                reference = "latest"
        if not repository or not reference:
            raise ValueError(f"{image!r} is not a valid image name")
        return cls(head, repository, reference)

    @property
    def manifest_path(self) -> str:
        return f"/v2/{self.repository}/manifests/{self.reference}"


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` → ``("bearer", {"realm": ..., ...})``."""
    scheme, _, params = header.strip().partition(" ")
    found = {
        match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
        for match in _CHALLENGE_PARAM.finditer(params)
    }
    return scheme.lower(), found


def basic_credentials(entry: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(user, password)`` from a docker config ``auths`` entry, if it has them."""
    if not entry:
        return None
    if entry.get("username") and entry.get("password") is not None:
        return str(entry["username"]), str(entry["password"])
    encoded = entry.get("auth")
    if encoded:
        try:
            user, _, password = base64.b64decode(str(encoded)).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password
    return None


def _basic_header(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


class RegistryClient:
    """HEAD requests for manifests, with the auth flows and what they taught us kept."""

    def __init__(
        self,
        *,
        insecure_registries: tuple[str, ...] = (),
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.insecure = frozenset(insecure_registries)
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        self._schemes: dict[str, str] = {}  # registry -> "basic" | "bearer" | "none"
        self._challenges: dict[str, dict[str, str]] = {}  # registry -> bearer parameters
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def base_url(self, registry: str) -> str:
        return f"{'http' if registry in self.insecure else 'https'}://{registry}"

    async def exists(
        self, image: str, auths: Mapping[str, Mapping[str, Any]] | None = None
    ) -> bool | None:
        """Whether ``image`` exists: True, False, or None when the registry cannot tell."""
        ref = ImageRef.parse(image)
        entry = (auths or {}).get(ref.registry)
        credentials = basic_credentials(entry)
        registry_token = str(entry.get("registrytoken") or "") if entry else ""
        url = self.base_url(ref.registry) + ref.manifest_path
        try:
            headers = await self._known_auth(ref, credentials, registry_token)
            response = await self._head(url, headers)
            if response.status_code == 401:
                header = response.headers.get("www-authenticate", "")
                headers = await self._answer(ref, header, credentials, registry_token)
                response = await self._head(url, headers)
                if response.status_code == 401:
                    self._forget(ref.registry)
        except httpx.HTTPError:
            return None
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        if response.status_code in (401, 403):
            raise RegistryAuthError(_refusal(ref, response, credentials is not None))
        return None

    async def _head(self, url: str, headers: dict[str, str]) -> httpx.Response:
        return await self._http.head(url, headers={"Accept": _ACCEPT, **headers})

    async def _known_auth(
        self, ref: ImageRef, credentials: tuple[str, str] | None, registry_token: str
    ) -> dict[str, str]:
        """The Authorization a previous challenge of this registry taught us to send."""
        scheme = self._schemes.get(ref.registry)
        if scheme == "basic" and credentials:
            return {"Authorization": _basic_header(credentials)}
        if scheme == "bearer":
            if registry_token:
                return {"Authorization": f"Bearer {registry_token}"}
            token = self._cached_token(ref, credentials)
            if token is None:
                params = self._challenges.get(ref.registry)
                if params is None:
                    return {}
                token = await self._fetch_token(ref, params, credentials)
            return {"Authorization": f"Bearer {token}"}
        return {}

    async def _answer(
        self,
        ref: ImageRef,
        header: str,
        credentials: tuple[str, str] | None,
        registry_token: str,
    ) -> dict[str, str]:
        scheme, params = parse_challenge(header)
        self._schemes[ref.registry] = scheme
        if scheme == "basic":
            if credentials is None:
                raise RegistryAuthError(
                    f"the registry {ref.registry} requires credentials and none are configured "
                    "(ZWMD_REGISTRY_CONFIG, ZWMD_REGISTRY_SECRET or a registry-credentials plugin)"
                )
            return {"Authorization": _basic_header(credentials)}
        if scheme == "bearer":
            if registry_token:
                return {"Authorization": f"Bearer {registry_token}"}
            self._challenges[ref.registry] = params
            token = await self._fetch_token(ref, params, credentials)
            return {"Authorization": f"Bearer {token}"}
        raise RegistryAuthError(
            f"the registry {ref.registry} asks for authentication zwmd does not speak: "
            f"{header or '(no WWW-Authenticate header)'}"
        )

    def _token_key(
        self, ref: ImageRef, credentials: tuple[str, str] | None
    ) -> tuple[str, str, str]:
        who = _basic_header(credentials) if credentials else ""
        return ref.registry, f"repository:{ref.repository}:pull", who

    def _cached_token(self, ref: ImageRef, credentials: tuple[str, str] | None) -> str | None:
        cached = self._tokens.get(self._token_key(ref, credentials))
        if cached is None or cached[1] <= time.monotonic():
            return None
        return cached[0]

    async def _fetch_token(
        self, ref: ImageRef, params: Mapping[str, str], credentials: tuple[str, str] | None
    ) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryAuthError(
                f"the registry {ref.registry} sent a Bearer challenge without a realm"
            )
        key = self._token_key(ref, credentials)
        query = {"scope": key[1]}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": _basic_header(credentials)} if credentials else {}
        response = await self._http.get(realm, params=query, headers=headers)
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"the token service of {ref.registry} ({realm}) refused "
                f"{'the configured credentials' if credentials else 'an anonymous request'} "
                f"for {key[1]}: HTTP {response.status_code} {_short(response.text)}"
            )
        response.raise_for_status()
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"the token service of {ref.registry} sent no token")
        lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_SECONDS)
        self._tokens[key] = (token, time.monotonic() + max(0.0, lifetime - _TOKEN_MARGIN))
        return token

    def _forget(self, registry: str) -> None:
        for key in [k for k in self._tokens if k[0] == registry]:
            del self._tokens[key]


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _refusal(ref: ImageRef, response: httpx.Response, had_credentials: bool) -> str:
    what = "the configured credentials" if had_credentials else "anonymous access"
    return (
        f"the registry {ref.registry} refused {what} for {ref.repository}: "
        f"HTTP {response.status_code} {_short(response.text)}".rstrip()
    )
