"""From validated settings to a running daemon: what ``zwmd serve`` does.

Design notes:

- Every check that can fail without the cluster runs before the cluster is touched:
  settings (exit code 2, one line per problem), the chosen implementation's plugin,
  the log store, the token rule for non-loopback listeners.
- The mapping from :class:`zwmd.settings.Settings` to :class:`DaemonConfig` is the one
  place where configuration names meet the engine's; nothing below reads settings.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pluggy

from zwmd import builtin
from zwmd.api import ApiLimits
from zwmd.daemon.local import local_cluster
from zwmd.daemon.serving import DaemonConfig, check_listeners, serve
from zwmd.daemon.startup import StartupFailed
from zwmd.engine.reconciling import EngineTiming
from zwmd.images.modes import ImageConfig
from zwmd.kube.cluster_version import UnsupportedCluster
from zwmd.kube.jobs import PodPolicy
from zwmd.kube.sizes import ObjectLimits
from zwmd.kube.watching import WatchTiming
from zwmd.logs.pipeline import LogTiming
from zwmd.logs.store import LogStore
from zwmd.metrics import Metrics
from zwmd.plugins import (
    BUILTIN,
    PluginError,
    describe,
    disabled_plugins,
    plugin_manager,
    plugin_problems,
    resolve,
)
from zwmd.settings import (
    IMPLEMENTATION_SOURCE,
    Problem,
    Settings,
    SettingsError,
    format_problems,
    load_settings,
)

EXIT_CONFIG = 2

log = logging.getLogger("zwmd")


def daemon_config(settings: Settings, *, kubeconfig: str | None) -> DaemonConfig:
    policy = PodPolicy(
        service_account=settings.service_account,
        resources=settings.resources_spec() or None,
        node_selector=settings.node_selector_spec() or None,
        tolerations=settings.tolerations_spec() or None,
        backoff_limit=settings.job_backoff_limit,
        pod_failure_policy=settings.pod_failure_policy_spec(),
        pod_security=settings.runner_pod_security,
    )
    return DaemonConfig(
        namespace=settings.namespace,
        policy=policy,
        max_active=settings.max_concurrent_runs,
        ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        api_host=settings.api_host,
        api_port=settings.api_port,
        api_socket=settings.api_socket,
        api_token=settings.api_token_value(),
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        kubeconfig=kubeconfig,
        engine_timing=EngineTiming(
            image_pull_grace=timedelta(seconds=settings.image_pull_grace_seconds),
            unschedulable_deadline=timedelta(seconds=settings.unschedulable_deadline_seconds),
        ),
        watch_timing=WatchTiming(inactivity_timeout=settings.watch_inactivity_timeout_seconds),
        log_timing=LogTiming(inactivity_timeout=settings.log_inactivity_timeout_seconds or None),
        shutdown_grace=settings.shutdown_grace_seconds,
        startup_timeout=settings.startup_timeout_seconds,
        images=image_config(settings),
        secret_name_pattern=settings.secret_name_pattern,
        api_limits=ApiLimits(
            body_bytes=settings.api_max_body_bytes,
            message_bytes=settings.log_message_max_bytes,
            unknown_ids=settings.unknown_log_ids,
            unknown_id_bytes=settings.unknown_log_bytes,
        ),
        object_limits=ObjectLimits(
            secret_bytes=settings.max_secret_bytes, object_bytes=settings.max_object_bytes
        ),
    )


def image_config(settings: Settings) -> ImageConfig:
    """The runner-image part of the configuration (the hooks get ``settings`` itself)."""
    return ImageConfig(
        mode=settings.runner_image_mode,
        docker_registry=settings.docker_registry,
        runner_image=settings.runner_image,
        local=settings.kube_access.mode == "local",
        builder_image=settings.builder_image,
        builder_args=settings.builder_args,
        builder_resources=settings.builder_resources_spec(),
        insecure_registries=settings.insecure_registries,
        registry_config=settings.registry_config,
        registry_secret=settings.registry_secret,
        settings=settings,
    )


@dataclass(frozen=True)
class Configured:
    """A configuration judged sound: the settings, the plugins, the log store's answer."""

    settings: Settings
    manager: pluggy.PluginManager
    #: what ``zwmd_log_store`` answered: a store, or an awaitable of one
    log_store: Any

    async def open_log_store(self) -> LogStore:
        return await resolve(self.log_store)  # type: ignore[no-any-return]


def configure(environ: Mapping[str, str] | None = None, *, local: bool = False) -> Configured:
    """Judge the configuration as ``config``, ``doctor`` and ``serve`` all do.

    Raises :class:`SettingsError` with every problem: the settings' own (unknown
    variables included), then the plugins' (the implementation is installed, the
    disabled plugins exist) and the log store's (a plugin provides it).
    """
    settings = load_settings(environ, local=local)
    disabled = disabled_plugins(environ)
    # the builtin is never blocked: disabling it is a problem of its own, not a second one
    manager = plugin_manager(disabled=[name for name in disabled if name != BUILTIN])
    manager.register(builtin, name=BUILTIN)
    given = os.environ if environ is None else environ
    source = "ZWMD_IMPLEMENTATION" if given.get("ZWMD_IMPLEMENTATION") else None
    problems = plugin_problems(
        manager,
        implementation=settings.implementation,
        implementation_variable=source or IMPLEMENTATION_SOURCE,
        disabled=disabled,
    )
    answer = None
    if not problems:
        try:
            answer = manager.hook.zwmd_log_store(settings=settings, name=settings.log_store)
        except PluginError as exc:
            problems.append(Problem("ZWMD_LOG_STORE", str(exc), "file"))
        else:
            if answer is None:
                fault = f"no installed plugin provides the log store {settings.log_store!r}"
                problems.append(Problem("ZWMD_LOG_STORE", fault, "file"))
    if problems:
        raise SettingsError(problems)
    return Configured(settings, manager, answer)


def _first_kubeconfig(settings: Settings) -> str | None:
    paths: tuple[Path, ...] = settings.kubeconfig
    return str(paths[0]) if paths else None


async def run(configured: Configured, local: bool) -> None:
    settings, manager = configured.settings, configured.manager
    metrics = Metrics()
    for info in describe(manager):
        metrics.plugin_loaded(info.name, info.version)
    store = await configured.open_log_store()
    async with anyio.create_task_group() as tg:
        tg.start_soon(maintain_log_store, store, metrics)
        if local:
            check_listeners(daemon_config(settings, kubeconfig=None))
            async with local_cluster(
                settings.state_dir, settings.namespace, settings.service_account
            ) as kubeconfig:
                config = daemon_config(settings, kubeconfig=str(kubeconfig))
                await serve(config, store, metrics=metrics, plugins=manager)
        else:
            config = daemon_config(settings, kubeconfig=_first_kubeconfig(settings))
            await serve(config, store, metrics=metrics, plugins=manager)
        tg.cancel_scope.cancel()


async def maintain_log_store(store: LogStore, metrics: Metrics) -> None:
    """Run the store's background work, if it has any (``maintain``: e.g. uploading a spool).

    An optional extension of the :class:`~zwmd.logs.store.LogStore` protocol (see
    :class:`zwmd.logs.objectstore.ObjectLogStore`): ``maintain(spooled=, error=)`` runs
    until cancelled, reporting spooled bytes and failed operations for the metrics.
    """
    maintain = getattr(store, "maintain", None)
    if maintain is None:
        return
    await maintain(
        spooled=lambda nbytes: metrics.set_spooled_bytes(store.name, nbytes),
        error=lambda operation: metrics.log_store_error(store.name, operation),
    )


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def main(*, local: bool, environ: Any = None) -> int:
    """``zwmd serve``: the exit code (0 after a clean stop, 2 for configuration errors)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        configured = configure(environ, local=local)
    except SettingsError as exc:
        print(format_problems(exc), file=sys.stderr)
        return EXIT_CONFIG
    for note in configured.settings.notes:
        log.info("%s", note)
    try:
        anyio.run(run, configured, local)
    except PluginError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except BaseExceptionGroup as group:  # raised inside run()'s task group
        failed, rest = group.split((UnsupportedCluster, StartupFailed))
        if failed is None or rest is not None:
            raise
        for leaf in _leaves(failed):
            what = "serve this cluster" if isinstance(leaf, UnsupportedCluster) else "start"
            print(f"zwmd cannot {what}: {leaf}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return 0
