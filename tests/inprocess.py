"""A daemon served in the test's event loop, against a localkube, reached over HTTP.

The daemon under test is the real one: settings are loaded with
:func:`zwmd.settings.load_settings` from a plain mapping of variables, turned into a
:class:`~zwmd.daemon.serving.DaemonConfig` by :func:`zwmd.daemon.starting.daemon_config`
(or the test gives the :class:`DaemonConfig` itself) and served with
:func:`zwmd.daemon.serving.serve`. Tests talk to it over HTTP on 127.0.0.1 with its
bearer token, and read Kubernetes objects straight from localkube's store.

Each daemon gets a namespace of its own (with the runner service account), so daemons
sharing one localkube never see each other's Jobs. A daemon acts as the ``zwmd`` service
account of its namespace under the shipped Role (:mod:`tests.rbac`), and localkube
refuses requests without credentials, as a real cluster's secure port does. The test packages subclass
:class:`Daemon` for what is only theirs (builds, scripts whose logs they read).
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import anyio
import httpx
import pluggy
import pytest

from tests.clusterversion import KUBERNETES_VERSION
from tests.daemon_process import free_port
from tests.rbac import NAMESPACE_LABELS, Rules, zwmd_kubeconfig
from zwmd.daemon.operations import DaemonOperations
from zwmd.daemon.serving import DaemonConfig, serve
from zwmd.daemon.starting import daemon_config
from zwmd.localkube import ApiError, LocalKube
from zwmd.localkube.kubelets import ScriptedKubelet
from zwmd.localkube.podbackoff import TEST_SCALE
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.store import LogStore
from zwmd.metrics import Metrics
from zwmd.settings import load_settings

SERVICE_ACCOUNT = "zenml-runner"
K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
TERMINAL = ("succeeded", "failed", "cancelled")

JsonDict = dict[str, Any]


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0, *, interval: float = 0.02
) -> None:
    """Return once ``check()`` holds (a hang guard, not a timed assertion)."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(interval)


def create_namespace(kube: LocalKube, namespace: str, *, service_account: bool = True) -> None:
    """``namespace`` and (unless told not to) the runner service account in it.

    Either may exist already (a daemon started again in the same namespace).
    """
    objects: list[tuple[str, str | None, JsonDict]] = [
        ("namespaces", None, {"metadata": {"name": namespace, "labels": NAMESPACE_LABELS}})
    ]
    if service_account:
        objects.append(("serviceaccounts", namespace, {"metadata": {"name": SERVICE_ACCOUNT}}))
    for resource, ns, obj in objects:
        try:
            kube.store.create(resource, ns, obj)
        except ApiError as exc:
            if exc.code != 409:
                raise


@pytest.fixture(scope="module")
async def kube() -> AsyncIterator[LocalKube]:
    """A localkube for a test module whose pods do only what the test tells the scripted
    kubelet (a conftest imports this fixture and :func:`kubeconfig`); a failed pod is
    replaced after upstream's backoff at the test scale (0.1 s, 0.2 s, ...)."""
    async with LocalKube(
        kubernetes_version=KUBERNETES_VERSION,
        kubelet="scripted",
        bookmark_interval=0.5,
        unauthenticated="anonymous",
        pod_backoff_scale=TEST_SCALE,
        owner_references_enforcement=True,
    ) as localkube:
        yield localkube


@pytest.fixture(scope="module")
def kubeconfig(kube: LocalKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


def settings_env(
    namespace: str, kubeconfig: Path, state_dir: Path, *, metrics_listener: bool = False
) -> dict[str, str]:
    """The variables of a daemon in ``namespace``, listening on free loopback ports."""
    env = {
        f"{K}NAMESPACE": namespace,
        f"{K}SERVICE_ACCOUNT": SERVICE_ACCOUNT,
        "ZWMD_API_HOST": "127.0.0.1",
        "ZWMD_API_PORT": str(free_port()),
        "ZWMD_API_TOKEN": secrets.token_hex(16),
        "ZWMD_STATE_DIR": str(state_dir),
        "KUBECONFIG": str(kubeconfig),
    }
    if metrics_listener:
        env.update(ZWMD_METRICS_HOST="127.0.0.1", ZWMD_METRICS_PORT=str(free_port()))
    return env


@dataclass
class Daemon:
    """A daemon served in the test's event loop, and what a test needs to reach it."""

    #: the default ``timeout`` of :meth:`wait`, and the HTTP client's
    wait_timeout: ClassVar[float] = 20.0
    http_timeout: ClassVar[float] = 60.0

    kube: LocalKube
    namespace: str
    url: str
    token: str
    http: httpx.AsyncClient  # the API, with the token
    probes: httpx.AsyncClient  # no token: the metrics listener if any, else the API's port
    ops: DaemonOperations
    config: DaemonConfig
    store: LogStore
    metrics: Metrics

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        kube: LocalKube,
        kubeconfig: Path,
        state_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        config: DaemonConfig | None = None,
        namespace: str | None = None,
        service_account: bool = True,
        adjust: Callable[[DaemonConfig], DaemonConfig] | None = None,
        store: LogStore | None = None,
        metrics_listener: bool = False,
        plugins: pluggy.PluginManager | None = None,
        wait_ready: bool = True,
        rules: Rules | None = None,
    ) -> AsyncIterator[Self]:
        """``serve()`` in a namespace of its own (``namespace``: a given one).

        Settings are the variables of :func:`settings_env` with ``env`` over them, unless
        ``config`` is given (its namespace and token are the daemon's); :meth:`tune` and
        then ``adjust`` change the config. The log store is a file store under ``state_dir`` unless
        ``store`` is given. With ``wait_ready=False`` the daemon is yielded as soon as
        its listeners answer, before its watches have listed (``ops`` fails until then).
        Faults the test left on ``kube`` are reset when the daemon stops. The daemon acts
        as ``zwmd`` under the shipped Role, or under ``rules`` when given (``kubeconfig``,
        the administrator's, is for the test's own reads).
        """
        if config is None:
            namespace = namespace or f"zwmd-{uuid.uuid4().hex[:10]}"
            variables = settings_env(
                namespace, kubeconfig, state_dir, metrics_listener=metrics_listener
            )
            variables.update(env or {})
            settings = load_settings(variables)
            config = daemon_config(settings, kubeconfig=str(kubeconfig))
            token = settings.api_token_value()
        else:
            namespace, token = config.namespace, config.api_token
        assert token is not None
        create_namespace(kube, namespace, service_account=service_account)
        identity = zwmd_kubeconfig(kube, namespace, state_dir / f"{namespace}.kubeconfig", rules)
        config = dataclasses.replace(cls.tune(config), kubeconfig=str(identity))
        if adjust is not None:
            config = adjust(config)
        store = store or FileLogStore(state_dir, fsync=False)
        metrics = Metrics()
        url = f"http://127.0.0.1:{config.api_port}"
        probes_url = f"http://127.0.0.1:{config.metrics_port or config.api_port}"
        started: list[DaemonOperations] = []
        async with anyio.create_task_group() as tg:
            run = functools.partial(serve, config, store, metrics=metrics, plugins=plugins)

            async def run_daemon() -> None:
                started.append(await tg.start(run))

            http = httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=cls.http_timeout
            )
            probes = httpx.AsyncClient(base_url=probes_url, timeout=10)
            async with http, probes:
                if wait_ready:
                    await run_daemon()
                    ops = started[0]
                else:
                    tg.start_soon(run_daemon)
                    await until(lambda: _answers(probes), 30.0, interval=0.05)
                    ops = _Pending(started)  # type: ignore[assignment]
                try:
                    yield cls(
                        kube, namespace, url, token, http, probes, ops, config, store, metrics
                    )
                finally:
                    kube.faults.reset()
            tg.cancel_scope.cancel()

    @classmethod
    def tune(cls, config: DaemonConfig) -> DaemonConfig:
        """The timing of every daemon of this class (a test package's own): unchanged."""
        return config

    @property
    def kubelet(self) -> ScriptedKubelet:
        """The localkube's kubelet, which the test scripts."""
        kubelet = self.kube.kubelet
        assert isinstance(kubelet, ScriptedKubelet), kubelet
        return kubelet

    # -- the API, as a client sees it -----------------------------------------------------

    async def submit(
        self, workload_id: str | None = None, *, expect: tuple[int, ...] = (200, 202), **body: Any
    ) -> JsonDict:
        """Run a workload (image ``runner:1`` unless ``body`` says otherwise)."""
        workload_id = workload_id or str(uuid.uuid4())
        body.setdefault("image", "runner:1")
        response = await self.http.post(f"/v1/workloads/{workload_id}/run", json=body)
        assert response.status_code in expect, response.text
        result: JsonDict = response.json()
        return result

    async def run(self, command: str, workload_id: str | None = None) -> JsonDict:
        """Submit ``sh -c command`` and return the workload once it is terminal."""
        workload = await self.submit(workload_id, expect=(202,), command=["sh", "-c", command])
        return await self.wait(workload["id"], timeout=60)

    async def get(self, id_or_alias: str) -> JsonDict:
        response = await self.http.get(f"/v1/workloads/{id_or_alias}")
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        return result

    async def wait(self, id_or_alias: str, timeout: float | None = None) -> JsonDict:
        """The workload once it is terminal (fails the test if it never gets there)."""
        response = await self.http.get(
            f"/v1/workloads/{id_or_alias}/wait",
            params={"timeout": self.wait_timeout if timeout is None else timeout},
        )
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        assert result["state"] in TERMINAL, result
        return result

    async def until_state(self, id_or_alias: str, *states: str, timeout: float = 20.0) -> JsonDict:
        """The workload once its state is one of ``states``."""
        with anyio.fail_after(timeout):
            while True:
                workload = await self.get(id_or_alias)
                if workload["state"] in states:
                    return workload
                await anyio.sleep(0.05)

    async def logs(self, id_or_alias: str, *, fmt: str = "text") -> list[str]:
        response = await self.http.get(f"/v1/workloads/{id_or_alias}/logs", params={"format": fmt})
        assert response.status_code == 200, response.text
        return response.text.splitlines()

    async def post_log(self, id_or_alias: str, message: str, level: str = "INFO") -> None:
        response = await self.http.post(
            f"/v1/workloads/{id_or_alias}/logs", json={"message": message, "level": level}
        )
        assert response.status_code == 204, response.text

    async def scrape(self) -> str:
        """``/metrics``, as Prometheus reads it."""
        response = await self.probes.get("/metrics")
        assert response.status_code == 200
        return response.text

    # -- Kubernetes, as kubectl would show it --------------------------------------------

    def kube_object(self, resource: str, name: str) -> JsonDict:
        return self.kube.store.get(resource, self.namespace, name)

    def kube_objects(self, resource: str) -> list[JsonDict]:
        return self.kube.store.list(resource, self.namespace)[0]

    def job(self, name: str) -> JsonDict:
        return self.kube_object("jobs", name)

    def jobs(self) -> list[JsonDict]:
        return self.kube_objects("jobs")

    def pods(self, job_name: str | None = None) -> list[JsonDict]:
        selector = None if job_name is None else f"job-name={job_name}"  # every release
        return self.kube.store.list("pods", self.namespace, label_selector=selector)[0]

    async def pod_of(self, job_name: str, timeout: float = 10.0) -> str:
        """The next pod of ``job_name`` that the test has not been handed yet."""
        return await self.kubelet.wait_for_pod(self.namespace, job_name, timeout=timeout)


class _Pending:
    """Stands for the operations of a daemon that has not reported ready yet."""

    def __init__(self, started: list[DaemonOperations]):
        self._started = started

    def __getattr__(self, name: str) -> Any:
        if not self._started:
            raise AttributeError(f"the daemon is not ready yet: no {name}")
        return getattr(self._started[0], name)


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        await client.get("/healthz")
    except httpx.TransportError:
        return False
    return True
