"""The daemon's lifecycle: start-up, the main task group, shutdown.

Design notes (uvicorn's config / server / cli split, anyio's structured concurrency):

- :func:`serve` owns one task group with everything that runs: (localkube in local mode,)
  the reconciler, the informer (one watch of Jobs and one of Pods: never more, however
  many workloads), the HTTP API, an optional metrics listener, the plugins' lifecycle
  hooks, the systemd watchdog and the signal handler.
- The engine is wired here: one :class:`~zwmd.kube.informer.Informer` feeds the
  :class:`~zwmd.engine.reconciling.Reconciler` (with its two kinds, runners and image
  builds, sharing one :class:`~zwmd.engine.registry.Registry`) and the log pipeline.
- The metrics listener (``ZWMD_METRICS_PORT`` on ``ZWMD_METRICS_HOST``) serves only
  ``/metrics``, ``/healthz`` and ``/readyz`` (:func:`zwmd.api.create_probe_app`): it is
  meant to be reached from other hosts (kubelets, Prometheus), so nothing else is there.
- Metrics from the engine's news (:class:`_Listener`): transitions, and the phase
  histograms from the workload's own timestamps (queue wait: submitted → admitted; start:
  the Job's start → running; run: running → finished). After every list of Jobs the
  per-state gauge is counted from the registry at each scrape, so workloads adopted after
  a restart show in ``zwmd_workloads{state}``. A single daemon is its own leader.
- Start-up order: the API listens first (so ``/readyz`` can say "not yet" instead of the
  connection being refused), then the reconciler and the informer start; ``READY=1`` goes to
  systemd once both watches have listed.
- SIGTERM or SIGINT: ``STOPPING=1``, stop accepting requests, let the requests in
  flight end for at most ``ZWMD_SHUTDOWN_GRACE_SECONDS``, then cancel the task group.
  Nothing else needs draining to be safe: every workload's truth is in Kubernetes, and
  the log store is durable per append. The process exits 0.
- The Unix socket is created by us (not uvicorn, which would make it 0666) with mode 0600
  before anyone can connect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio
import pluggy
import uvicorn
from anyio.abc import TaskStatus
from kubernetes_asyncio.client import ApiClient

from zwmd import builtin, systemd
from zwmd.api import ApiLimits, create_app, create_probe_app
from zwmd.daemon import startup
from zwmd.daemon.notifying import HookNotifier
from zwmd.daemon.operations import DaemonOperations
from zwmd.engine.imagebuilds import ImageBuilds
from zwmd.engine.reconciling import EngineTiming, Reconciler
from zwmd.engine.registry import Registry
from zwmd.engine.runners import Runners
from zwmd.engine.workload import Transition, Workload
from zwmd.images.modes import ImageConfig
from zwmd.kube import cluster_version, naming
from zwmd.kube.client import ClusterConfigError, KubeClient, KubeError, load_api_client
from zwmd.kube.informer import Informer
from zwmd.kube.instrumentation import instrument_api_client
from zwmd.kube.jobs import PodPolicy
from zwmd.kube.sizes import ObjectLimits
from zwmd.kube.watching import WatchTiming
from zwmd.logs.pipeline import LogPipeline, LogTiming
from zwmd.logs.store import LogKey, LogStore
from zwmd.metrics import Metrics
from zwmd.plugins import plugin_manager
from zwmd.settings.envvalues import DEFAULT_SECRET_NAME_PATTERN, compile_name_pattern
from zwmd.states import State

log = logging.getLogger("zwmd")


@dataclass
class DaemonConfig:
    """Everything :func:`serve` needs, already validated (see :mod:`zwmd.settings`)."""

    namespace: str
    policy: PodPolicy
    max_active: int = 2
    ttl_seconds_after_finished: int | None = 172800
    api_host: str = "127.0.0.1"
    api_port: int = 8390
    api_socket: Path | None = None
    api_token: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    kubeconfig: str | None = None
    engine_timing: EngineTiming = field(default_factory=EngineTiming)
    watch_timing: WatchTiming = field(default_factory=WatchTiming)
    log_timing: LogTiming = field(default_factory=LogTiming)
    kube_request_timeout: float = 30.0  # seconds for a short Kubernetes call, all of it
    shutdown_grace: float = 8.0  # seconds requests in flight may take after SIGTERM
    startup_timeout: float = 300.0  # seconds to wait for the first lists (0: for ever)
    images: ImageConfig = field(default_factory=ImageConfig)
    #: names of environment variables whose values are masked in logs (a regex)
    secret_name_pattern: str = DEFAULT_SECRET_NAME_PATTERN
    api_limits: ApiLimits = field(default_factory=ApiLimits)
    object_limits: ObjectLimits = field(default_factory=ObjectLimits)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _Listener:
    """Connects the engine's news to metrics and hooks, and completes logs of finished
    attempts."""

    def __init__(
        self,
        metrics: Metrics,
        pipeline: LogPipeline | None = None,
        hooks: HookNotifier | None = None,
    ):
        self.metrics = metrics
        self.pipeline = pipeline
        self.hooks = hooks
        self._running_since: dict[tuple[str, int], datetime] = {}

    def transitioned(self, workload: Workload, transition: Transition) -> None:
        if not transition.state_changed:
            return
        self.metrics.transition(
            transition.previous.value,
            transition.state.value,
            reason=transition.reason.value if transition.reason else None,
        )
        if workload.kind == naming.KIND_RUNNER:
            self._observe_phases(workload, transition)
        if self.hooks is not None:
            self.hooks.notify(workload.to_api(), transition.previous.value, transition.state.value)
        log.info(
            "workload %s: %s -> %s%s",
            workload.id,
            transition.previous.value,
            transition.state.value,
            f" ({transition.reason.value}: {transition.message})" if transition.reason else "",
        )

    def _observe_phases(self, workload: Workload, transition: Transition) -> None:
        """The phase histograms, from the workload's timestamps (never negative)."""
        key = (workload.id, workload.attempt)
        previous, state, at = transition.previous, transition.state, transition.at
        if previous is State.QUEUED and state in (State.STARTING, State.RUNNING):
            self.metrics.queue_wait(_seconds(workload.submitted_at, at))
        if state is State.RUNNING:
            self._running_since[key] = at
            if workload.started_at is not None:
                self.metrics.start_duration(_seconds(workload.started_at, at))
        if state.is_terminal:
            running_since = self._running_since.pop(key, None)
            ran = previous is State.RUNNING or (
                previous is State.STARTING and state is State.SUCCEEDED
            )
            since = running_since or workload.started_at  # a daemon restarted meanwhile
            if ran and since is not None:
                end = workload.finished_at or at
                self.metrics.run_duration(state.value, _seconds(since, end))

    def submitted(self, workload: Workload, environment: Mapping[str, str]) -> None:
        if self.pipeline is not None:
            self.pipeline.remember_environment(workload.job_name, environment)

    def redact(self, job_name: str, text: str) -> str:
        return text if self.pipeline is None else self.pipeline.redact(job_name, text)

    async def finished(self, workload: Workload) -> None:
        if self.pipeline is None:
            return
        failure = None
        if workload.state is State.FAILED:
            failure = (workload.reason.value if workload.reason else "Failed", workload.message)
        await self.pipeline.finish(
            LogKey(workload.id, workload.attempt), workload.job_name, failure=failure
        )


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _builtin_plugins() -> pluggy.PluginManager:
    """The builtin plugin alone, for a daemon started without a plugin manager (tests)."""
    manager = plugin_manager(entry_points=False)
    manager.register(builtin, name="kubernetes")
    return manager


def _bind_unix_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then,
    # without it every request on a kept-alive connection waits for a delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _LoopLag:
    """How late the event loop runs a task that asked to sleep for one second."""

    def __init__(self) -> None:
        self.lag = 0.0
        self.last = time.monotonic()

    def current(self) -> float:
        return max(self.lag, time.monotonic() - self.last - 2.0)

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(1.0)
            self.last = time.monotonic()
            self.lag = max(0.0, self.last - before - 1.0)


async def serve(
    config: DaemonConfig,
    store: LogStore,
    *,
    metrics: Metrics | None = None,
    plugins: pluggy.PluginManager | None = None,
    task_status: TaskStatus[DaemonOperations] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled or signalled; reports its operations when ready.

    :param plugins: whose ``zwmd_workload_state_changed`` hooks to call (None: none).
    """
    metrics = metrics or Metrics()
    metrics.set_leader(True)  # one daemon: it leads (leader election is the HA work's)
    sockets, metrics_sockets = _listen(config)
    try:
        api_client = await load_api_client(config.kubeconfig)
        stream_client = await load_api_client(config.kubeconfig, max_connections=0)
    except ClusterConfigError as exc:
        for sock in sockets + metrics_sockets:
            sock.close()
        raise startup.no_cluster(exc, exc.path) from exc
    for client in (api_client, stream_client):
        instrument_api_client(client, metrics)
    kube = KubeClient(
        api_client,
        config.namespace,
        stream_api=stream_client,
        request_timeout=config.kube_request_timeout,
    )
    hooks = HookNotifier(plugins, metrics)
    listener = _Listener(metrics, hooks=hooks)
    informer = Informer(kube, config.watch_timing, observer=metrics)
    registry = Registry()
    reconciler = Reconciler(tick=config.engine_timing.tick)
    pipeline = LogPipeline(
        kube,
        informer,
        store,
        spawn=reconciler.spawn,
        on_stored=lambda lines, nbytes: metrics.log_stored(store.name, lines, nbytes),
        timing=config.log_timing,
        secret_names=compile_name_pattern(config.secret_name_pattern),
    )
    listener.pipeline = pipeline
    runners = Runners(
        kube,
        informer,
        registry,
        reconciler,
        listener,
        max_active=config.max_active,
        ttl_seconds_after_finished=config.ttl_seconds_after_finished,
        timing=config.engine_timing,
        limits=config.object_limits,
    )
    images = ImageBuilds(
        kube,
        informer,
        registry,
        reconciler,
        listener,
        dataclasses.replace(config.images, plugins=plugins or _builtin_plugins()),
        config.policy,
        store,
        metrics,
        timing=config.engine_timing,
        pipeline=pipeline,
        ttl_seconds_after_finished=config.ttl_seconds_after_finished,
    )
    reconciler.add(runners)
    reconciler.add(images)
    informer.subscribers += [reconciler, pipeline]
    lag = _LoopLag()
    ops = DaemonOperations(
        informer,
        registry,
        runners,
        images,
        config.policy,
        store,
        metrics,
        loop_lag=lag.current,
        listener=listener,
        connectivity=kube.connectivity,
        limits=config.api_limits,
    )
    metrics.count_workloads_with(ops.workload_states)
    app = create_app(
        ops, token=None if config.api_socket else config.api_token, limits=config.api_limits
    )
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    servers = [server]
    if metrics_sockets:
        metrics_app = create_probe_app(ops)
        servers.append(
            _Server(
                uvicorn.Config(metrics_app, log_level="warning", lifespan="off", access_log=False)
            )
        )
    try:
        await _check_version(kube, config)
        async with anyio.create_task_group() as tg:
            stopped = [anyio.Event() for _ in servers]
            tg.start_soon(_handle_signals, tg.cancel_scope, servers, stopped, config.shutdown_grace)
            tg.start_soon(lag.run)
            tg.start_soon(hooks.run)
            tg.start_soon(_serve_http, server, sockets, stopped[0])
            if metrics_sockets:
                tg.start_soon(_serve_http, servers[1], metrics_sockets, stopped[1])
            await tg.start(reconciler.run)
            waiting = anyio.CancelScope()
            tg.start_soon(_report_slow_start, api_client, informer, config, waiting)
            await tg.start(informer.run)  # returns once both resources have listed
            waiting.cancel()
            tg.start_soon(systemd.run_watchdog, lambda: ops.healthy()[0])
            systemd.ready("watching")
            log.info("zwmd ready: %s", _where(config))
            task_status.started(ops)
    finally:
        with anyio.CancelScope(shield=True):
            systemd.stopping()
            await api_client.close()
            await stream_client.close()
            # uvicorn's own shutdown does not run when its task is cancelled: stop its
            # asyncio servers first, or the loop keeps their (soon reused) descriptors
            # registered and a later server on the same descriptor never accepts.
            for each in servers:
                for listening in getattr(each, "servers", ()):
                    listening.close()
            for sock in sockets + metrics_sockets:
                sock.close()
            if config.api_socket:
                with contextlib.suppress(FileNotFoundError):
                    config.api_socket.unlink()


def check_listeners(config: DaemonConfig) -> None:
    """Raise :class:`~zwmd.daemon.startup.StartupFailed` now if :func:`serve` could not
    listen (local mode asks before its cluster writes a kubeconfig another daemon uses)."""
    api, probes = _listen(config)
    for sock in api + probes:
        sock.close()


def _listen(config: DaemonConfig) -> tuple[list[socket.socket], list[socket.socket]]:
    """The API's listening socket, and the metrics listener's (if configured)."""
    try:
        if config.api_socket:
            where, variable = f"unix:{config.api_socket}", "ZWMD_API_SOCKET"
            api = _bind_unix_socket(config.api_socket)
        else:
            where, variable = f"{config.api_host}:{config.api_port}", "ZWMD_API_PORT"
            api = _bind_tcp(config.api_host, config.api_port)
    except OSError as exc:
        raise startup.bind_failed(exc, where, variable) from exc
    if config.metrics_port is None:
        return [api], []
    try:
        return [api], [_bind_tcp(config.metrics_host, config.metrics_port)]
    except OSError as exc:
        api.close()
        where = f"{config.metrics_host}:{config.metrics_port}"
        raise startup.bind_failed(exc, where, "ZWMD_METRICS_PORT") from exc


async def _report_slow_start(
    api_client: ApiClient, informer: Informer, config: DaemonConfig, scope: anyio.CancelScope
) -> None:
    """Until ``scope`` is cancelled (both watches listed): say what the start waits for."""

    def reason() -> str:
        for watcher in informer.watchers:
            if watcher.refused or watcher.last_error:
                return watcher.refused or watcher.last_error
        return "no answer yet"

    with scope:
        await startup.report_slow_start(
            api_client.configuration.host or "(no host)", reason, timeout=config.startup_timeout
        )


async def _check_version(kube: KubeClient, config: DaemonConfig) -> None:
    """Refuse a server zwmd cannot work with (:mod:`zwmd.kube.cluster_version`); one that does
    not answer now is left to the watches, which retry and tell ``/readyz``."""
    try:
        answer = await kube.request_json("GET", "/version")
    except KubeError as exc:
        log.warning("the Kubernetes version could not be read: %s", exc.explained())
        return
    version = cluster_version.server_version(answer)
    if version is None:
        return
    found = cluster_version.problems(
        version, pod_failure_policy=bool(config.policy.pod_failure_policy)
    )
    if found:
        raise cluster_version.UnsupportedCluster("; ".join(found))
    if cluster_version.note(version):
        log.warning("Kubernetes %d.%d: %s", *version, cluster_version.note(version))


async def _serve_http(server: _Server, sockets: list[socket.socket], stopped: anyio.Event) -> None:
    try:
        await server.serve(sockets)
    finally:
        stopped.set()


async def _handle_signals(
    scope: anyio.CancelScope, servers: list[_Server], stopped: list[anyio.Event], grace: float
) -> None:
    """On SIGTERM/SIGINT: stop accepting, give requests in flight ``grace`` s, stop."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("zwmd: %s received, stopping", signal.Signals(signum).name)
            systemd.stopping()
            for server in servers:
                server.should_exit = True
            with anyio.move_on_after(grace) as drain:
                for each in stopped:
                    await each.wait()
            if drain.cancelled_caught:
                log.warning("zwmd: requests still in flight after %ss; stopping", grace)
            scope.cancel()
            return


def _where(config: DaemonConfig) -> str:
    if config.api_socket:
        where = f"API on unix:{config.api_socket}"
    else:
        where = f"API on http://{config.api_host}:{config.api_port}"
    if config.metrics_port is not None:
        host = f"[{config.metrics_host}]" if ":" in config.metrics_host else config.metrics_host
        where += f", metrics and probes on http://{host}:{config.metrics_port}"
    return f"{where}, namespace {config.namespace}"
