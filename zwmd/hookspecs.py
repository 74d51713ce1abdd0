"""The hooks through which plugins extend zwmd (pluggy, project name ``zwmd``).

Plugins are modules or objects with functions named like the specs below, marked with
:data:`hookimpl`, and published through the ``zwmd`` entry-point group. pluggy does not
await: a hook may return its value directly or an awaitable, and the core awaits it
(:func:`zwmd.plugins.resolve`). Every hook receives only keyword arguments and may
accept fewer of them than the spec offers.

Each hook is documented here and covered by a test (``tests/test_hookspecs.py`` checks
both for every spec).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pluggy

PROJECT = "zwmd"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zwmd_implementations() -> list[str]:  # type: ignore[empty-body]
    """Name the implementations this plugin provides.

    ``ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE`` selects one of them
    (``kubernetes`` is builtin; zwmd-aws adds ``aws``, zwmd-gcp ``gcp``). Choosing a
    name that no installed plugin provides stops the daemon with a message naming the
    distribution to install.

    :return: implementation names, lower case.
    """


@hookspec(firstresult=True)
def zwmd_log_store(settings: Any, name: str) -> Any | Awaitable[Any] | None:
    """Return the log store called ``name``, or ``None`` when this plugin has none by that name.

    firstresult: the first store returned wins. The builtin plugin provides ``file``
    and ``pod``.

    :param settings: the daemon's validated :class:`zwmd.settings.Settings`.
    :param name: the store the configuration asks for.
    :return: an object implementing :class:`zwmd.logs.store.LogStore`.
    """


@hookspec(firstresult=True)
def zwmd_registry_credentials(
    settings: Any, registry: str
) -> dict[str, Any] | Awaitable[dict[str, Any] | None] | None:
    """Return docker config ``auths`` for ``registry``, or ``None`` when this plugin has none.

    Used to push (builder Jobs), to pull (``imagePullSecrets`` of runner Jobs) and to
    check whether an image exists. Credentials that expire must be refreshed by the
    plugin before they do; the core asks again for every use.

    firstresult: the first plugin that knows the registry answers.

    :param settings: the daemon's validated settings.
    :param registry: the registry host, with a port when it has one.
    :return: ``{"<registry>": {"auth": "<base64 user:password>"}}``-style auths.
    """


@hookspec
def zwmd_workload_state_changed(workload: dict[str, Any], old: str, new: str) -> None:
    """Be told that a workload moved from state ``old`` to state ``new``.

    Called after the new state is recorded in Kubernetes. Must not block: start a task
    or return an awaitable, which the core awaits with a timeout. Errors are counted in
    ``zwmd_hook_errors_total`` and logged, never raised to the engine.

    :param workload: the workload as the API shows it (never its environment).
    :param old: the state it left.
    :param new: the state it entered.
    """
