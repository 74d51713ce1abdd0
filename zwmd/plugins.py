"""Finding, loading and calling plugins.

Design notes:

- One :class:`pluggy.PluginManager` per daemon. Third-party and first-party plugins
  (zwmd-aws, zwmd-gcp) arrive through the ``zwmd`` entry-point group; the builtin
  ``kubernetes`` implementation is registered by the daemon from :mod:`zwmd.builtin`.
- pluggy does not await. Hooks may return awaitables; :func:`resolve` awaits them.
- ``ZWMD_DISABLE_PLUGINS`` (comma-separated entry-point names, e.g. ``aws,gcp``) keeps
  installed plugins from loading, without uninstalling them (pluggy's blocking).
- :func:`require_implementation` turns "no plugin provides ``aws``" into the one thing an
  operator needs to read: which distribution to install.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from zwmd import hookspecs

ENTRY_POINT_GROUP = "zwmd"
DISABLE_VARIABLE = "ZWMD_DISABLE_PLUGINS"

# where the implementations we know of are published
DISTRIBUTIONS = {"aws": "zwmd-aws", "gcp": "zwmd-gcp"}


class PluginError(Exception):
    """A plugin is missing or misbehaved."""


def plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A manager with zwmd's hookspecs and, unless told otherwise, every installed plugin."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in os.environ.get(DISABLE_VARIABLE, "").split(","):
        if name.strip():
            manager.set_blocked(name.strip())
    if entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


async def resolve(value: Any) -> Any:
    """A hook's result, awaited when the hook returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def implementations(manager: pluggy.PluginManager) -> set[str]:
    names: set[str] = set()
    for provided in manager.hook.zwmd_implementations():
        names.update(provided)
    return names


def require_implementation(manager: pluggy.PluginManager, name: str) -> None:
    """Raise :class:`PluginError` saying what to install when ``name`` is not provided."""
    available = implementations(manager)
    if name in available:
        return
    hint = f"install {DISTRIBUTIONS[name]}" if name in DISTRIBUTIONS else "install its plugin"
    raise PluginError(
        f"ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE: implementation {name!r} is not "
        f"installed ({hint}); installed: {', '.join(sorted(available)) or 'none'}"
    )


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]


def describe(manager: pluggy.PluginManager) -> list[PluginInfo]:
    """Every registered plugin with its distribution's version and the hooks it implements."""
    versions: dict[int, str] = {}
    for plugin, dist in manager.list_plugin_distinfo():
        versions[id(plugin)] = f"{dist.project_name} {dist.version}"
    infos = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or []))
        version = versions.get(id(plugin), f"zwmd {_own_version()} (builtin)")
        infos.append(PluginInfo(name=name, version=version, hooks=hooks))
    return sorted(infos, key=lambda info: info.name)


def _own_version() -> str:
    try:
        return metadata.version("zwmd")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"
