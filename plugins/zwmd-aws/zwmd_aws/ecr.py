"""ECR through aioboto3: push/pull credentials, repositories, image existence.

Design notes:

- ``get_authorization_token`` gives a base64 ``AWS:<password>`` valid for 12 hours: it
  is already a docker config ``auth``. One :class:`~zwmd.tokens.ExpiringToken` per
  region and registry keeps it and fetches a new one 15 minutes before expiry; an
  answer that is already expired (moto's) is kept for a minute, never fetched in a loop.
- Which registry is ECR is not guessed from its host name: with the ``aws``
  implementation, the registry of ``ZENML_KUBERNETES_WORKLOAD_MANAGER_DOCKER_REGISTRY``
  is the account's ECR registry.
- A push to a repository that does not exist fails in ECR (unlike most registries), so
  the repository is created before a build pushes (``zwmd_prepare_push``).
"""

from __future__ import annotations

import logging
from typing import Any

import aioboto3
from botocore.exceptions import ClientError

from zwmd.tokens import ExpiringToken, Fetched
from zwmd_aws.s3 import client_config

__all__ = ["EcrRegistry", "split_image"]

log = logging.getLogger("zwmd.aws")

_NOT_FOUND = {"ImageNotFoundException", "RepositoryNotFoundException"}


def split_image(image: str) -> tuple[str, str, str]:
    """``host/repo/name:tag`` → ``(host, "repo/name", tag)`` (``latest`` when untagged)."""
    host, _, rest = image.partition("/")
    if "@" in rest:
        repository, _, tag = rest.partition("@")
        return host, repository, "@" + tag
    repository, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        return host, rest, "latest"
    return host, repository, tag


class EcrRegistry:
    """The ECR registry of one region, through a default-chain aioboto3 session."""

    def __init__(self, region: str | None, *, session: Any = None) -> None:
        self.region = region
        self._session = session or aioboto3.Session()
        self.token: ExpiringToken[str] = ExpiringToken(self._fetch_token, refresh_margin=900)

    def _client(self) -> Any:
        return self._session.client("ecr", region_name=self.region, config=client_config())

    async def _fetch_token(self) -> Fetched[str]:
        async with self._client() as ecr:
            answer = await ecr.get_authorization_token()
        data = answer["authorizationData"][0]
        expires = data["expiresAt"].timestamp()
        return Fetched(str(data["authorizationToken"]), expires)

    async def auths(self, registry: str) -> dict[str, Any]:
        """Docker config ``auths`` for ``registry``, with ``expires_at``."""
        fetched = await self.token.get()
        return {registry: {"auth": fetched.value, "expires_at": fetched.expires_at}}

    async def ensure_repository(self, repository: str) -> bool:
        """Create ``repository`` unless it exists; True when it was created."""
        async with self._client() as ecr:
            try:
                await ecr.describe_repositories(repositoryNames=[repository])
                return False
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                    raise
            try:
                await ecr.create_repository(
                    repositoryName=repository,
                    imageScanningConfiguration={"scanOnPush": False},
                )
            except ClientError as exc:  # created meanwhile by another build
                if exc.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
                    raise
                return False
        log.info("ECR repository %s created", repository)
        return True

    async def image_exists(self, repository: str, tag: str) -> bool | None:
        """True or False from ``describe_images``; None when ECR could not say."""
        image_id = {"imageDigest": tag[1:]} if tag.startswith("@") else {"imageTag": tag}
        try:
            async with self._client() as ecr:
                await ecr.describe_images(repositoryName=repository, imageIds=[image_id])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return False
            log.warning("ECR describe_images %s:%s failed: %s", repository, tag, exc)
            return None
        except Exception as exc:
            log.warning("ECR describe_images %s:%s failed: %s", repository, tag, exc)
            return None
        return True
