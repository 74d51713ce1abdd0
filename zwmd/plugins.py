"""Finding, loading and calling plugins.

Design notes:

- One :class:`pluggy.PluginManager` per daemon. Third-party and first-party plugins
  (zwmd-aws, zwmd-gcp) arrive through the ``zwmd`` entry-point group; the builtin
  ``kubernetes`` implementation is registered by the daemon from :mod:`zwmd.builtin`.
- pluggy does not await. Hooks may return awaitables; :func:`resolve` awaits them.
- ``ZWMD_DISABLE_PLUGINS`` (comma-separated entry-point names, e.g. ``aws,gcp``) keeps
  installed plugins from loading, without uninstalling them (pluggy's blocking).
- :func:`plugin_problems` judges the plugin side of a configuration, for every command
  alike: the implementation must be provided (the problem names the distribution to
  install), ``ZWMD_DISABLE_PLUGINS`` may name only installed plugins, and never the
  builtin ``kubernetes``, without which nothing runs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from zwmd import hookspecs
from zwmd.settings import Problem

ENTRY_POINT_GROUP = "zwmd"
DISABLE_VARIABLE = "ZWMD_DISABLE_PLUGINS"
BUILTIN = "kubernetes"

# where the implementations we know of are published
DISTRIBUTIONS = {"aws": "zwmd-aws", "gcp": "zwmd-gcp"}


class PluginError(Exception):
    """A plugin is missing or misbehaved."""


def disabled_plugins(environ: Mapping[str, str] | None = None) -> list[str]:
    """The plugin names ``ZWMD_DISABLE_PLUGINS`` lists (default: the process environment)."""
    value = (os.environ if environ is None else environ).get(DISABLE_VARIABLE, "")
    return [name.strip() for name in value.split(",") if name.strip()]


def plugin_manager(
    *, entry_points: bool = True, disabled: Iterable[str] | None = None
) -> pluggy.PluginManager:
    """A manager with zwmd's hookspecs and, unless told otherwise, every installed plugin
    but the ``disabled`` ones (default: those of ``ZWMD_DISABLE_PLUGINS``)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name in disabled_plugins() if disabled is None else disabled:
        manager.set_blocked(name)
    if entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


def installed_plugins() -> set[str]:
    """The names of the installed plugins (entry points of the ``zwmd`` group)."""
    return {entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)}


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


def _install_hint(name: str) -> str:
    if name in DISTRIBUTIONS:
        distribution = DISTRIBUTIONS[name]
        return f"install the {distribution} plugin: pip install ./plugins/{distribution} in zwmd's source"
    return "install the plugin that provides it"


def plugin_problems(
    manager: pluggy.PluginManager,
    *,
    implementation: str,
    implementation_variable: str,
    disabled: Iterable[str] = (),
) -> list[Problem]:
    """What is wrong with the plugin side of a configuration (nothing: an empty list)."""
    problems = []
    known = installed_plugins()
    for name in disabled:
        if name == BUILTIN:
            fault = "kubernetes is zwmd's builtin implementation and cannot be disabled"
        elif name not in known:
            fault = f"{name!r} is not an installed plugin (installed: {', '.join(sorted(known)) or 'none'})"
        else:
            continue
        problems.append(Problem(DISABLE_VARIABLE, fault, "aws,gcp"))
    available = implementations(manager)
    if implementation not in available:
        fault = (
            f"implementation {implementation!r} is not installed "
            f"(installed: {', '.join(sorted(available)) or 'none'}); {_install_hint(implementation)}"
        )
        problems.append(Problem(implementation_variable, fault, BUILTIN))
    return problems


def require_implementation(manager: pluggy.PluginManager, name: str) -> None:
    """Raise :class:`PluginError` when no registered plugin provides ``name``."""
    for problem in plugin_problems(
        manager, implementation=name, implementation_variable="ZWMD_IMPLEMENTATION"
    ):
        raise PluginError(str(problem))


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
