"""What the plugins say about runner images: does one exist, credentials, the builder pod.

The image builds (:mod:`zwmd.engine.imagebuilds`) ask these questions through
:class:`ImageHooks`, which calls the pluggy hooks and keeps their failure rules in one
place:

- ``zwmd_image_exists`` is bounded by the configuration's ``check_timeout``; a plugin that fails or takes too long means "unknown", and the image
  is built (counted in ``zwmd_hook_errors_total``). Refused registry credentials
  (:class:`~zwmd.images.registry.RegistryAuthError`) are not a plugin's bug: they fail
  the build at once.
- ``zwmd_prepare_push`` runs every implementation (e.g. creating an ECR repository),
  then ``zwmd_builder_job`` (first result) gives the builder pod, around a
  :class:`~zwmd.images.builder.BuildPlan` made from the configuration.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from zwmd.images.builder import BuildPlan, builder_pod_pieces
from zwmd.images.modes import ImageConfig
from zwmd.images.registry import ImageRef, RegistryAuthError
from zwmd.kube.client import Obj
from zwmd.metrics import Metrics
from zwmd.plugins import resolve

__all__ = ["ImageHooks"]

log = logging.getLogger(__name__)


class ImageHooks:
    """The image hooks of one daemon's plugins, with zwmd's rules around them."""

    def __init__(self, config: ImageConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics

    async def exists(self, image: str, auths: dict[str, Any]) -> bool | None:
        """Whether ``image`` is in its registry; None when nobody can tell."""
        hook = getattr(self.config.plugins, "hook", None)
        if hook is None:
            return None
        with anyio.move_on_after(self.config.check_timeout):
            try:
                answer = await resolve(
                    hook.zwmd_image_exists(settings=self.config.settings, image=image, auths=auths)
                )
            except RegistryAuthError:
                raise
            except Exception as exc:  # a plugin's bug must not stop builds
                log.warning("zwmd_image_exists(%s) failed: %r; building", image, exc)
                self.metrics.hook_error("zwmd_image_exists")
                return None
            return None if answer is None else bool(answer)
        log.warning(
            "zwmd_image_exists(%s) took over %ss; building", image, self.config.check_timeout
        )
        return None

    async def credentials(self, host: str) -> dict[str, Any] | None:
        """A plugin's docker config auths for ``host`` (``zwmd_registry_credentials``)."""
        hook = self.config.plugins.hook
        answer = await resolve(
            hook.zwmd_registry_credentials(settings=self.config.settings, registry=host)
        )
        return answer if isinstance(answer, dict) else None

    def plan(self, image: str, dockerfile: str, job_name: str, timeout_seconds: int) -> BuildPlan:
        """What the builder Job must do, from the configuration."""
        registry = ImageRef.parse(image).registry
        return BuildPlan(
            image=image,
            dockerfile=dockerfile,
            job_name=job_name,
            registry=registry,
            insecure=registry in self.config.insecure_registries,
            builder_image=self.config.builder_image,
            builder_args=self.config.builder_args,
            resources=dict(self.config.builder_resources),
            timeout_seconds=timeout_seconds,
        )

    async def builder_pod(self, plan: BuildPlan) -> Obj:
        """Prepare the push (every plugin), then the builder pod's pieces (the first)."""
        hook = self.config.plugins.hook
        for prepared in hook.zwmd_prepare_push(settings=self.config.settings, image=plan.image):
            await resolve(prepared)
        answer = await resolve(hook.zwmd_builder_job(settings=self.config.settings, plan=plan))
        return builder_pod_pieces(answer)
