"""zwmd's configuration: the seeds' environment variables plus the daemon's own.

:func:`load_settings` reads the environment once, checks every variable and either
returns a frozen :class:`Settings` or raises :class:`SettingsError` carrying *all*
problems, one line each: the variable, what is wrong with its value, and an example of
a valid one. Nothing here contacts the cluster or a registry.

Decisions an operator may look for (documented in ``zwmd config`` and the README):

- ``ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE`` defaults to ``kubernetes``
  for the daemon (the ZenML server needs it set, zwmd does not). The seeds' class
  paths map to ``kubernetes``/``aws``/``gcp``; ``zwmd.zenml.WorkloadManager`` (the value
  the server gets when it uses our adapter) maps to ``kubernetes``; a bare plugin name
  is taken as is. ``ZWMD_IMPLEMENTATION`` overrides it, for a daemon that shares its
  environment with a server whose variable must name the adapter.
- ``ZENML_KUBERNETES_WORKLOAD_MANAGER_JOB_BACKOFF_LIMIT`` defaults to 0: a runner
  launches a pipeline run, so retrying it would launch the run again; and Kubernetes'
  6 retries with back-off would hide a failure behind ZenML's 180 s start timeout.
- ``ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS`` (ZenML's newer name, the one the
  0.98 server sizes its own pool with) wins over ``..._TEMPLATE_RUNS`` when both are set
  and differ; a note says so.
- The log store: ``ZWMD_LOG_STORE`` when set; otherwise ``..._ENABLE_EXTERNAL_LOGS``
  picks ``s3`` for ``aws``, ``gcs`` for ``gcp``, the plugin's own name for other plugins,
  and ``file`` for ``kubernetes`` (logs outside the pod, under ``ZWMD_STATE_DIR``); the
  default is ``file``. The bucket of an ``s3``/``gcs`` store is required.
- ``ZWMD_STATE_DIR`` defaults to ``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``),
  then ``$XDG_STATE_HOME/zwmd``, then ``~/.local/state/zwmd``.
- Kubernetes access: ``KUBECONFIG`` if set (some file must exist), else in-cluster
  config when ``KUBERNETES_SERVICE_HOST`` is set, else ``~/.kube/config`` if present.
- Empty variables count as unset (Helm charts often render ``""``).
- A secret (the API token) is never echoed: not in a problem, not in :meth:`describe`.

Design notes: field values are parsed by :mod:`zwmd.envvalues` and :mod:`zwmd.kubeshapes`
(both free of other zwmd imports). Cross-variable rules run on the raw values in a
wrap validator *before* field validation, so one load reports field faults and rule
faults together. Environment reading goes through one small source that takes an
explicit mapping, so tests never touch ``os.environ``.
"""

from __future__ import annotations

import contextvars
import copy
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from zwmd.settings import envvalues as ev
from zwmd.settings import kubeshapes as ks
from zwmd.settings.envvalues import BucketLocation
from zwmd.settings.report import format_configuration, format_problems
from zwmd.settings.resolving import (
    ENVIRON_KEY,
    EXTERNAL_LOG_STORES,
    IMPLEMENTATION_SOURCE,
    KNOWN_CONTEXT_VARIABLES,
    LOCAL_KEY,
    TEMPLATE_RUNS,
    KubeAccess,
    Problem,
    SettingsError,
    resolve,
)

__all__ = [
    "DEFAULT_BUILDER_IMAGE",
    "EXTERNAL_LOG_STORES",
    "IMPLEMENTATION_SOURCE",
    "TEMPLATE_RUNS",
    "BucketLocation",
    "KubeAccess",
    "Problem",
    "Settings",
    "SettingsError",
    "format_configuration",
    "format_problems",
    "load_settings",
]

#: kaniko, as maintained by Chainguard since Google archived the project in 2025.
DEFAULT_BUILDER_IMAGE = "cgr.dev/chainguard/kaniko:latest"
_K = "ZENML_KUBERNETES_WORKLOAD_MANAGER_"
_STORE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_TOKEN_EXAMPLE = "the output of `openssl rand -hex 32`"


# --- field types -------------------------------------------------------------------------


def _json_shape(validate: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse(value: object) -> Any:
        return validate(ks.load_json(value) if isinstance(value, str) else value)

    return parse


def _name_check(check: Callable[[str], str | None]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        fault = check(str(value).strip())
        if fault is not None:
            raise ValueError(fault)
        return str(value).strip()

    return parse


def _parse_token(value: object) -> SecretStr:
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    text = text.strip()
    if not text:
        raise ValueError("is empty")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError("contains whitespace or control characters")
    return SecretStr(text)


def _parse_store(value: object) -> str:
    text = str(value).strip()
    if not _STORE_NAME.fullmatch(text):
        raise ValueError(f"{ks.quote(text)} is not a log store name (file, s3, gcs, ...)")
    if text == "pod":  # pod logs are what a store keeps; no store leaves them in pods
        raise ValueError(f"{ks.quote(text)} is not a log store; logs go to file, s3, gcs, ...")
    return text


def _parse_absolute_path(value: object) -> Path:
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{ks.quote(str(value))} is not an absolute path")
    return path


def _parse_socket_path(value: object) -> Path:
    path = _parse_absolute_path(value)
    if len(os.fsencode(path)) > 107:
        raise ValueError(
            f"{ks.quote(str(path))} is longer than a Unix socket path may be (107 bytes)"
        )
    return path


def _parse_path_list(value: object) -> tuple[Path, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(os.pathsep)
    return tuple(Path(str(item)).expanduser() for item in items if str(item).strip())


Flag = Annotated[bool, BeforeValidator(ev.parse_flag)]
Count = Annotated[int, BeforeValidator(ev.parse_whole_number(0))]
Positive = Annotated[int, BeforeValidator(ev.parse_whole_number(1))]
Port = Annotated[int, BeforeValidator(ev.parse_whole_number(0, 65535))]
Seconds = Annotated[float, BeforeValidator(ev.parse_number)]
Resources = Annotated[
    dict[str, dict[str, str]], BeforeValidator(_json_shape(ks.validate_resources))
]
_EXAMPLE_RESOURCES = (
    '{"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}}'
)


def _var(env: str, example: str, default: Any = ..., *, secret: bool = False) -> Any:
    extra: dict[str, Any] = {"env": env, "example": example, "secret": secret}
    return Field(default, json_schema_extra=extra)


class _EnvironSource(PydanticBaseSettingsSource):
    """Hands the whole environment mapping to the model's wrap validator."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        loading = _LOADING.get()
        environ = os.environ if loading is None else loading[0]
        names = {_meta(field)["env"] for field in Settings.model_fields.values()}
        names.update(KNOWN_CONTEXT_VARIABLES)
        values = {name: environ[name] for name in names if environ.get(name, "").strip()}
        return {ENVIRON_KEY: values, LOCAL_KEY: bool(loading and loading[1])}


_LOADING: contextvars.ContextVar[tuple[Mapping[str, str], bool] | None] = contextvars.ContextVar(
    "zwmd_settings_loading", default=None
)


def _meta(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    assert isinstance(extra, dict)
    return extra


class Settings(BaseSettings):
    """The effective configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # the seeds' variables
    implementation: Annotated[str, BeforeValidator(ev.parse_implementation)] = _var(
        IMPLEMENTATION_SOURCE,
        "zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager",
        "kubernetes",
    )
    namespace: Annotated[str, BeforeValidator(_name_check(ks.check_dns_label))] = _var(
        f"{_K}NAMESPACE", "zenml-workspace-namespace"
    )
    service_account: Annotated[str, BeforeValidator(_name_check(ks.check_dns_subdomain))] = _var(
        f"{_K}SERVICE_ACCOUNT", "zenml-workspace-service-account"
    )
    build_runner_image: Flag = _var(f"{_K}BUILD_RUNNER_IMAGE", "true", False)
    docker_registry: Annotated[str, BeforeValidator(ev.parse_registry)] | None = _var(
        f"{_K}DOCKER_REGISTRY", "registry.example:5000/zenml", None
    )
    runner_image: Annotated[str, BeforeValidator(ev.parse_image)] | None = _var(
        f"{_K}RUNNER_IMAGE", "registry.example/zenml/runner:0.98.0", None
    )
    enable_external_logs: Flag = _var(f"{_K}ENABLE_EXTERNAL_LOGS", "true", False)
    pod_resources: Resources = _var(f"{_K}POD_RESOURCES", _EXAMPLE_RESOURCES, {})
    ttl_seconds_after_finished: Count = _var(f"{_K}TTL_SECONDS_AFTER_FINISHED", "172800", 172800)
    node_selector: Annotated[
        dict[str, str], BeforeValidator(_json_shape(ks.validate_node_selector))
    ] = _var(f"{_K}NODE_SELECTOR", '{"node-pool": "zenml-pool"}', {})
    tolerations: Annotated[
        list[dict[str, Any]], BeforeValidator(_json_shape(ks.validate_tolerations))
    ] = _var(
        f"{_K}TOLERATIONS",
        '[{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}]',
        [],
    )
    job_backoff_limit: Count = _var(f"{_K}JOB_BACKOFF_LIMIT", "0", 0)
    pod_failure_policy: (
        Annotated[dict[str, Any], BeforeValidator(_json_shape(ks.validate_pod_failure_policy))]
        | None
    ) = _var(
        f"{_K}POD_FAILURE_POLICY",
        '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}',
        None,
    )
    max_concurrent_runs: Positive = _var(TEMPLATE_RUNS, "2", 2)
    aws_bucket: Annotated[BucketLocation, BeforeValidator(ev.parse_bucket("s3"))] | None = _var(
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_BUCKET", "s3://zenml-logs/runner-logs", None
    )
    aws_region: Annotated[str, BeforeValidator(ev.parse_region)] | None = _var(
        "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_REGION", "eu-central-1", None
    )
    gcp_bucket: Annotated[BucketLocation, BeforeValidator(ev.parse_bucket("gs"))] | None = _var(
        "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_BUCKET", "gs://zenml-logs/runner-logs", None
    )

    # the daemon's own
    api_host: Annotated[str, BeforeValidator(ev.parse_host)] = _var(
        "ZWMD_API_HOST", "127.0.0.1", "127.0.0.1"
    )
    api_port: Port = _var("ZWMD_API_PORT", "8390", 8390)
    api_socket: Annotated[Path, BeforeValidator(_parse_socket_path)] | None = _var(
        "ZWMD_API_SOCKET", "/run/zwmd/api.sock", None
    )
    api_token: Annotated[SecretStr, BeforeValidator(_parse_token)] | None = _var(
        "ZWMD_API_TOKEN", _TOKEN_EXAMPLE, None, secret=True
    )
    api_token_file: Annotated[Path, BeforeValidator(_parse_absolute_path)] | None = _var(
        "ZWMD_API_TOKEN_FILE", "/run/credentials/zwmd.service/api-token", None
    )
    state_dir: Annotated[Path, BeforeValidator(_parse_absolute_path)] = _var(
        "ZWMD_STATE_DIR", "/var/lib/zwmd", Path("/var/lib/zwmd")
    )
    metrics_port: Port | None = _var("ZWMD_METRICS_PORT", "9390", None)
    # All addresses: the metrics listener exists for scrapers and kubelets on other hosts
    # (the API stays on loopback or its socket); it serves no secret and takes no write.
    metrics_host: Annotated[str, BeforeValidator(ev.parse_host)] = _var(
        "ZWMD_METRICS_HOST", "0.0.0.0", "0.0.0.0"
    )
    log_store: Annotated[str, BeforeValidator(_parse_store)] = _var(
        "ZWMD_LOG_STORE", "file", "file"
    )
    builder_image: Annotated[str, BeforeValidator(ev.parse_image)] = _var(
        "ZWMD_BUILDER_IMAGE", DEFAULT_BUILDER_IMAGE, DEFAULT_BUILDER_IMAGE
    )
    builder_args: Annotated[tuple[str, ...], BeforeValidator(ev.parse_builder_args)] = _var(
        "ZWMD_BUILDER_ARGS", '["--snapshot-mode=redo", "--cache=true"]', ()
    )
    builder_resources: Resources = _var("ZWMD_BUILDER_RESOURCES", _EXAMPLE_RESOURCES, {})
    registry_config: Annotated[Path, BeforeValidator(ev.parse_docker_config_file)] | None = _var(
        "ZWMD_REGISTRY_CONFIG", "/etc/zwmd/docker/config.json", None
    )
    registry_secret: Annotated[str, BeforeValidator(_name_check(ks.check_dns_subdomain))] | None = (
        _var("ZWMD_REGISTRY_SECRET", "zwmd-registry-credentials", None)
    )
    insecure_registries: Annotated[tuple[str, ...], BeforeValidator(ev.parse_registry_hosts)] = (
        _var("ZWMD_INSECURE_REGISTRIES", "registry.example:5000,127.0.0.1:5001", ())
    )
    image_pull_grace_seconds: Seconds = _var("ZWMD_IMAGE_PULL_GRACE_SECONDS", "60", 60.0)
    unschedulable_deadline_seconds: Seconds = _var(
        "ZWMD_UNSCHEDULABLE_DEADLINE_SECONDS", "300", 300.0
    )
    watch_inactivity_timeout_seconds: Seconds = _var(
        "ZWMD_WATCH_INACTIVITY_TIMEOUT_SECONDS", "300", 300.0
    )
    shutdown_grace_seconds: Seconds = _var("ZWMD_SHUTDOWN_GRACE_SECONDS", "8", 8.0)
    kubeconfig: Annotated[tuple[Path, ...], BeforeValidator(_parse_path_list)] = _var(
        "KUBECONFIG", "/etc/zwmd/kubeconfig", ()
    )

    _sources: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _notes: tuple[str, ...] = PrivateAttr(default=())
    _kube_access: KubeAccess = PrivateAttr(default=KubeAccess("none"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvironSource(settings_cls)

    @model_validator(mode="wrap")
    @classmethod
    def _load(cls, data: Any, handler: Callable[[Any], Settings]) -> Settings:
        variables = {
            name: (_meta(field)["env"], _meta(field)["example"])
            for name, field in cls.model_fields.items()
        }
        resolved = resolve(variables, data if isinstance(data, dict) else {})
        problems = list(resolved.problems)
        model: Settings | None = None
        try:
            model = handler(resolved.values)
        except ValidationError as exc:
            problems[:0] = _field_problems(exc, resolved.origins)
        if problems or model is None:
            problems.sort(key=_problem_order)
            raise SettingsError(problems)
        model._sources = resolved.sources
        model._notes = tuple(resolved.notes)
        model._kube_access = resolved.kube_access
        return model

    # --- accessors for the rest of the daemon ------------------------------------------

    @property
    def notes(self) -> tuple[str, ...]:
        """Non-fatal remarks about the configuration (overrides, ignored values)."""
        return self._notes

    @property
    def kube_access(self) -> KubeAccess:
        return self._kube_access

    @property
    def runner_image_mode(self) -> Literal["prebuilt", "build", "reuse"]:
        """The seeds' three ways to get a runner image; building wins over a pre-built one."""
        if self.build_runner_image:
            return "build"
        return "prebuilt" if self.runner_image else "reuse"

    @property
    def registry_host(self) -> str | None:
        """``host[:port]`` of ``..._DOCKER_REGISTRY`` (its path stripped)."""
        return self.docker_registry.partition("/")[0] if self.docker_registry else None

    @property
    def log_bucket(self) -> BucketLocation | None:
        """The bucket of the ``s3`` or ``gcs`` log store, else None."""
        return {"s3": self.aws_bucket, "gcs": self.gcp_bucket}.get(self.log_store)

    @property
    def requires_token(self) -> bool:
        """Whether the API listens on TCP (a Unix socket is protected by its mode)."""
        return self.api_socket is None

    def api_token_value(self) -> str | None:
        """The API token in clear, for the API's check and the client's header only."""
        return self.api_token.get_secret_value() if self.api_token else None

    def resources_spec(self) -> dict[str, dict[str, str]]:
        """The runner container's ``resources`` (empty sections omitted)."""
        return copy.deepcopy(self.pod_resources)

    def builder_resources_spec(self) -> dict[str, dict[str, str]]:
        """The builder container's ``resources``; the runner's when none are set."""
        return copy.deepcopy(self.builder_resources or self.pod_resources)

    def node_selector_spec(self) -> dict[str, str]:
        return dict(self.node_selector)

    def tolerations_spec(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.tolerations)

    def pod_failure_policy_spec(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.pod_failure_policy)

    def describe(self) -> list[tuple[str, str, str]]:
        """``(variable, effective value, source)`` rows, secrets shown as ``***``."""
        rows: list[tuple[str, str, str]] = []
        for name, field in type(self).model_fields.items():
            meta = _meta(field)
            variable, source = self._sources.get(name, (meta["env"], "default"))
            value = getattr(self, name)
            shown = "***" if meta["secret"] and value is not None else _show(value)
            rows.append((variable, shown, source))
        rows.append(("(kubernetes access)", str(self.kube_access), "derived"))
        rows.append(("(runner image mode)", self.runner_image_mode, "derived"))
        return rows


def _show(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, BucketLocation):
        return value.url
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, tuple) and all(isinstance(item, Path) for item in value):
        return os.pathsep.join(str(item) for item in value) or "(not set)"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)


def _field_problems(exc: ValidationError, origins: Mapping[str, str]) -> list[Problem]:
    fields = Settings.model_fields
    problems: list[Problem] = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        field = fields.get(name)
        if field is None:
            continue
        meta = _meta(field)
        variable = origins.get(name, meta["env"])
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "missing":
            faults: tuple[str, ...] = ("is required and not set",)
        elif isinstance(cause, ks.ShapeError):
            faults = cause.faults
        elif isinstance(cause, ValueError):
            faults = (str(cause),)
        else:
            faults = ("is not valid",) if meta["secret"] else (error["msg"],)
        problems += [Problem(variable, fault, meta["example"]) for fault in faults]
    return problems


def _problem_order(problem: Problem) -> int:
    order = [_meta(field)["env"] for field in Settings.model_fields.values()]
    return order.index(problem.variable) if problem.variable in order else len(order)


def load_settings(environ: Mapping[str, str] | None = None, *, local: bool = False) -> Settings:
    """Read and check the configuration from ``environ`` (default: ``os.environ``).

    ``local=True`` is ``zwmd serve --local``: namespace and service account default to
    ``default`` and Kubernetes access is the embedded localkube.
    Raises :class:`SettingsError` listing every problem.
    """
    token = _LOADING.set((os.environ if environ is None else environ, local))
    try:
        return Settings()
    finally:
        _LOADING.reset(token)
