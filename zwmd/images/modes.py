"""Which runner image a build request gets: the seeds' three modes, decided without I/O.

ZenML calls ``build_and_push_image`` on every run with ``image_name =
"zenml-runner:<md5 of the Dockerfile>"``. :func:`decide` answers from the configuration
alone, so every request that needs no registry and no Job returns at once:

``prebuilt``  ``..._RUNNER_IMAGE`` set, building off: that image.
``build``     ``..._BUILD_RUNNER_IMAGE=true``: ``<..._DOCKER_REGISTRY>/<image_name>``
              (the registry may carry a path: ``host:port/team``), to be checked in the
              registry and built when missing (see :mod:`zwmd.engine.imagebuilds`).
``reuse``     neither: the image the snapshot's own build produced, which the adapter
              reads from the server's store and sends as ``reuse_images``
              (``{image key: image}``). The orchestrator's (key ``orchestrator``, or a
              key ending in ``.orchestrator``) is taken; failing that, the one image all
              keys agree on. None: a failure that says how to configure another mode.

Local mode (``zwmd serve --local``): there is no registry and the process kubelet
ignores images, so a request that would need a build (or finds no image to reuse)
gets the requested name back, with a message saying what would have been built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zwmd.settings import DEFAULT_BUILDER_IMAGE

__all__ = ["Decision", "ImageConfig", "Mode", "decide", "full_image_name", "pick_reuse_image"]

Mode = Literal["prebuilt", "build", "reuse"]
ORCHESTRATOR_KEY = "orchestrator"


@dataclass(frozen=True)
class ImageConfig:
    """The runner-image configuration of one daemon (from :mod:`zwmd.settings`)."""

    mode: Mode = "reuse"
    docker_registry: str | None = None
    runner_image: str | None = None
    local: bool = False
    builder_image: str = DEFAULT_BUILDER_IMAGE
    builder_args: tuple[str, ...] = ()
    builder_resources: Mapping[str, Any] = field(default_factory=dict)
    insecure_registries: tuple[str, ...] = ()
    registry_config: Path | None = None
    registry_secret: str | None = None
    #: the daemon's settings and plugin manager, handed to the hooks
    settings: Any = None
    plugins: Any = None
    #: how long the existence check may take before zwmd builds anyway
    check_timeout: float = 10.0

    @property
    def registry_host(self) -> str | None:
        return self.docker_registry.partition("/")[0] if self.docker_registry else None


@dataclass(frozen=True)
class Decision:
    """Exactly one of ``image`` (ready), ``build`` (check, maybe build) or ``failure``."""

    image: str | None = None
    build: str | None = None
    failure: str | None = None
    message: str = ""


def full_image_name(registry: str, image_name: str) -> str:
    """``registry.example:5000/team`` + ``zenml-runner:abc`` → ``registry.example:5000/team/zenml-runner:abc``."""
    registry = registry.rstrip("/")
    if image_name.startswith(registry + "/"):
        return image_name
    return f"{registry}/{image_name.lstrip('/')}"


def pick_reuse_image(images: Mapping[str, str]) -> str | None:
    """The orchestrator's image among a build's images, else the only one, else None."""
    if images.get(ORCHESTRATOR_KEY):
        return images[ORCHESTRATOR_KEY]
    for key in sorted(images):
        if key.endswith("." + ORCHESTRATOR_KEY) and images[key]:
            return images[key]
    distinct = {image for image in images.values() if image}
    return distinct.pop() if len(distinct) == 1 else None


def decide(config: ImageConfig, image_name: str, reuse_images: Mapping[str, str]) -> Decision:
    """The answer to one build request, from the configuration alone."""
    if config.mode == "prebuilt" and config.runner_image:
        return Decision(image=config.runner_image, message="Pre-built runner image.")
    if config.mode == "build" and config.docker_registry:
        full = full_image_name(config.docker_registry, image_name)
        if config.local:
            return Decision(
                image=image_name,
                message=f"Local mode: no registry; would build {full} (the process kubelet "
                "ignores images).",
            )
        return Decision(build=full, message=f"Checking {full} in the registry.")
    chosen = pick_reuse_image(reuse_images)
    if chosen:
        return Decision(image=chosen, message="The image of the snapshot's own build.")
    if config.local:
        return Decision(
            image=image_name,
            message="Local mode: no runner image configured and none to reuse; using "
            f"{image_name} as is (the process kubelet ignores images).",
        )
    keys = ", ".join(sorted(reuse_images)) or "none"
    return Decision(
        failure=(
            "No runner image: building is off (ZENML_KUBERNETES_WORKLOAD_MANAGER_BUILD_RUNNER_IMAGE), "
            "no pre-built image is set (ZENML_KUBERNETES_WORKLOAD_MANAGER_RUNNER_IMAGE), and the "
            f"snapshot's build has no orchestrator image to reuse (image keys: {keys}). Build "
            "the snapshot with a container registry in its stack, or configure one of the two."
        )
    )
