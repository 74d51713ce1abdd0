"""The ``imagePullSecrets`` of runner pods: one dockerconfigjson Secret per registry host.

Design notes:

- Credentials come from :class:`~zwmd.images.credentials.CredentialSource` (a docker
  config file, a Secret, or a plugin's ``zwmd_registry_credentials``), asked again for
  every runner, so credentials that expire (ECR: 12 hours) are fresh in the Secret.
- The Secret's name is derived from the host, so all runners of one registry share it;
  it is rewritten only when the credentials changed since this daemon last wrote it.
- Local mode (the process kubelet ignores images) and images whose registry needs no
  credentials get none.
"""

from __future__ import annotations

import hashlib

from zwmd.images.builder import pull_secret
from zwmd.images.credentials import CredentialSource, dockerconfigjson
from zwmd.images.registry import ImageRef
from zwmd.kube.client import KubeClient


class PullSecrets:
    """Creates and refreshes the pull Secrets of one namespace."""

    def __init__(self, kube: KubeClient, credentials: CredentialSource, *, local: bool) -> None:
        self.kube = kube
        self.credentials = credentials
        self.local = local
        self._written: dict[str, str] = {}  # Secret name -> the body this daemon wrote

    async def secrets_for(self, image: str) -> list[str]:
        """The names to put in ``imagePullSecrets`` for a pod running ``image``."""
        if self.local:
            return []
        try:
            host = ImageRef.parse(image).registry
        except ValueError:
            return []
        auths = await self.credentials.auths(host)
        if not auths:
            return []
        name = f"zwmd-pull-{hashlib.sha256(host.encode()).hexdigest()[:16]}"
        body = dockerconfigjson(auths)
        if self._written.get(name) != body:
            await self.kube.create_or_replace("secrets", pull_secret(name, auths))
            self._written[name] = body
        return [name]
