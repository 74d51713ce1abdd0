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

    firstresult: the first store returned wins. The builtin plugin provides ``file``.

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
    check whether an image exists. Asked only when neither ``ZWMD_REGISTRY_CONFIG`` nor
    ``ZWMD_REGISTRY_SECRET`` has credentials for the registry. An entry may carry
    ``expires_at`` (seconds since the epoch, or RFC 3339): the core keeps the answer
    until shortly before then (10 minutes, or half the remaining lifetime) and asks
    again; without it, the answer is kept for 5 minutes. ``expires_at`` is never
    written into a Secret.

    firstresult: the first plugin that knows the registry answers.

    :param settings: the daemon's validated settings.
    :param registry: the registry host, with a port when it has one.
    :return: ``{"<registry>": {"auth": "<base64 user:password>"}}``-style auths.
    """


@hookspec(firstresult=True)
def zwmd_image_exists(
    settings: Any, image: str, auths: dict[str, Any]
) -> bool | Awaitable[bool | None] | None:
    """Say whether ``image`` exists in its registry, so that no build is needed.

    firstresult: the first plugin that answers ``True`` or ``False`` decides; ``None``
    passes the question on. The builtin (tried last) speaks the OCI distribution API
    (``HEAD /v2/<repo>/manifests/<tag>``, anonymous, Basic and Bearer token flows).
    When every plugin answers ``None`` ("unknown", e.g. unreachable), zwmd builds.
    Raise :class:`zwmd.images.registry.RegistryAuthError` when the registry refuses the
    credentials: the build then fails at once with that message instead of pushing in vain.

    :param settings: the daemon's validated settings.
    :param image: the full image name, ``registry[:port]/repository:tag``.
    :param auths: docker config ``auths`` for the image's registry (``{}`` when none).
    :return: True, False, or None for unknown (or an awaitable of one of them).
    """


@hookspec(firstresult=True)
def zwmd_builder_job(settings: Any, plan: Any) -> dict[str, Any] | Awaitable[Any] | None:
    """Return the pod spec pieces of the builder Job for ``plan``.

    firstresult: the first answer is used, so a plugin can replace kaniko (the builtin,
    tried last) with another builder. The answer is merged into the builder pod's
    spec over the core's defaults (``restartPolicy: Never``, the runner service account,
    node selector, tolerations), so it must hold ``containers`` and may hold
    ``volumes``, ``initContainers``, ``serviceAccountName`` and so on. The core keeps
    the Job itself: its name, labels, deadline (``plan.timeout_seconds``), backoff
    limit, and the ConfigMap ``plan.configmap_name`` (the Dockerfile under key
    ``Dockerfile``) and the ``kubernetes.io/dockerconfigjson`` Secret
    ``plan.secret_name`` (push credentials), both owned by the Job. The first container
    that runs is the one whose log joins the workload's stream (source ``builder``).

    :param settings: the daemon's validated settings.
    :param plan: the :class:`zwmd.images.builder.BuildPlan` (destination image, Dockerfile,
        Job name, registry, whether it is insecure, builder image, arguments, resources).
    :return: a mapping of pod spec fields (or an awaitable of one), or None to pass.
    """


@hookspec
def zwmd_prepare_push(settings: Any, image: str) -> Awaitable[None] | None:
    """Make ready what a push of ``image`` needs in its registry, before the builder Job starts.

    Called for every build, by every plugin (not firstresult); a plugin acts only for
    registries it knows. zwmd-aws creates the ECR repository when it is missing (ECR
    refuses pushes to repositories that do not exist). An exception fails the build with
    its message.

    :param settings: the daemon's validated settings.
    :param image: the full image name that will be pushed, ``registry[:port]/repository:tag``.
    :return: nothing (or an awaitable, which the core awaits).
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
