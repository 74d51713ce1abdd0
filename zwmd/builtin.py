"""The builtin plugin: the ``kubernetes`` implementation, the ``file`` log store, the OCI
registry check and the kaniko builder.

It is registered by the daemon like any other plugin (it is not an entry point, so it
cannot be uninstalled by accident), and implements the hooks exactly as a third-party
plugin would; its hooks are ``trylast``, so any installed plugin that answers wins.

Design note: one :class:`~zwmd.images.registry.RegistryClient` per event loop (it keeps
connections and Bearer tokens; an httpx client must not cross event loops, and tests
run several loops in one process).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from zwmd.hookspecs import hookimpl
from zwmd.images.builder import BuildPlan, kaniko_pod
from zwmd.images.registry import RegistryClient
from zwmd.logs.filestore import FileLogStore

_registry_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, ...], RegistryClient]
] = weakref.WeakKeyDictionary()


@hookimpl
def zwmd_implementations() -> list[str]:
    return ["kubernetes"]


@hookimpl(trylast=True)
def zwmd_log_store(settings: Any, name: str) -> Any:
    if name == "file":
        return FileLogStore(settings.state_dir)
    return None


def registry_client(insecure_registries: tuple[str, ...] = ()) -> RegistryClient:
    """The registry client of the running event loop for these insecure registries."""
    clients = _registry_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(insecure_registries)
    if client is None:
        client = clients[insecure_registries] = RegistryClient(
            insecure_registries=insecure_registries
        )
    return client


@hookimpl(trylast=True)
async def zwmd_image_exists(settings: Any, image: str, auths: dict[str, Any]) -> bool | None:
    insecure = tuple(getattr(settings, "insecure_registries", ()) or ())
    return await registry_client(insecure).exists(image, auths)


@hookimpl(trylast=True)
def zwmd_builder_job(plan: BuildPlan) -> dict[str, Any]:
    return kaniko_pod(plan)
