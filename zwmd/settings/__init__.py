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

Design notes:

- Each field names its variable with ``validation_alias`` (``AliasChoices`` where an
  override may feed it: the first name set wins, the last is the field's own) and one
  valid value in ``examples``. Names are exact, there is no prefix, and values reach
  the field types of :mod:`~zwmd.settings.fieldtypes` as the strings they were (no JSON
  decoding on the way), so each fault is named in our words.
- :func:`load_settings` validates the environment mapping itself,
  ``Settings.model_validate(environ, context=LoadContext(local=...))``, so tests never
  touch ``os.environ``. Without that context (``Settings(**keywords)``) the input is
  keywords by field name, on top of the process environment.
- Cross-variable rules (:mod:`~zwmd.settings.resolving`) run on the raw values in a wrap
  validator *before* field validation, so one load reports field faults and rule faults
  together; field errors come back located at the variable that carried the value.
- A plain pydantic model, not pydantic-settings' ``BaseSettings``: that class's
  ``__init__`` reads its sources (``os.environ``) again whenever the model is validated,
  also inside ``model_validate``, where it would mix the process environment into an
  explicit mapping and drop the validation context.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo

from zwmd.settings import fieldtypes as ft
from zwmd.settings import kubeshapes as ks
from zwmd.settings.envvalues import DEFAULT_SECRET_NAME_PATTERN, BucketLocation
from zwmd.settings.report import format_configuration, format_problems, format_value
from zwmd.settings.resolving import (
    EXTERNAL_LOG_STORES,
    IMPLEMENTATION_OVERRIDE,
    IMPLEMENTATION_SOURCE,
    SNAPSHOT_RUNS,
    TEMPLATE_RUNS,
    FieldVariables,
    KubeAccess,
    Problem,
    SettingsError,
    resolve,
)
from zwmd.settings.spelling import unknown_variables

__all__ = [
    "DEFAULT_BUILDER_IMAGE",
    "EXTERNAL_LOG_STORES",
    "IMPLEMENTATION_SOURCE",
    "TEMPLATE_RUNS",
    "BucketLocation",
    "KubeAccess",
    "LoadContext",
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
_AWS = "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_"
_GCP = "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_"
_TOKEN_EXAMPLE = "the output of `openssl rand -hex 32`"
_EXAMPLE_RESOURCES = (
    '{"requests": {"cpu": "100m", "memory": "400Mi"}, "limits": {"memory": "700Mi"}}'
)


@dataclass(frozen=True)
class LoadContext:
    """The validation context of :func:`load_settings`: the input is a whole environment.

    Without it (``Settings(**keywords)``) the input is keywords by field name and the
    environment is the process's.
    """

    local: bool = False


class Settings(BaseModel):
    """The effective configuration. Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # the seeds' variables
    implementation: ft.Implementation = Field(
        default="kubernetes",
        validation_alias=AliasChoices(IMPLEMENTATION_OVERRIDE, IMPLEMENTATION_SOURCE),
        examples=["zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager"],
    )
    namespace: ft.DnsLabel = Field(
        validation_alias=f"{_K}NAMESPACE", examples=["zenml-workspace-namespace"]
    )
    service_account: ft.DnsSubdomain = Field(
        validation_alias=f"{_K}SERVICE_ACCOUNT", examples=["zenml-workspace-service-account"]
    )
    build_runner_image: ft.Flag = Field(
        default=False, validation_alias=f"{_K}BUILD_RUNNER_IMAGE", examples=["true"]
    )
    docker_registry: ft.Registry | None = Field(
        default=None,
        validation_alias=f"{_K}DOCKER_REGISTRY",
        examples=["registry.example:5000/zenml"],
    )
    runner_image: ft.Image | None = Field(
        default=None,
        validation_alias=f"{_K}RUNNER_IMAGE",
        examples=["registry.example/zenml/runner:0.98.0"],
    )
    enable_external_logs: ft.Flag = Field(
        default=False, validation_alias=f"{_K}ENABLE_EXTERNAL_LOGS", examples=["true"]
    )
    pod_resources: ft.Resources = Field(
        default={}, validation_alias=f"{_K}POD_RESOURCES", examples=[_EXAMPLE_RESOURCES]
    )
    ttl_seconds_after_finished: ft.Count = Field(
        default=172800, validation_alias=f"{_K}TTL_SECONDS_AFTER_FINISHED", examples=["172800"]
    )
    node_selector: ft.NodeSelector = Field(
        default={}, validation_alias=f"{_K}NODE_SELECTOR", examples=['{"node-pool": "zenml-pool"}']
    )
    tolerations: ft.Tolerations = Field(
        default=[],
        validation_alias=f"{_K}TOLERATIONS",
        examples=[
            '[{"key": "pool", "operator": "Equal", "value": "zenml", "effect": "NoSchedule"}]'
        ],
    )
    job_backoff_limit: ft.Count = Field(
        default=0, validation_alias=f"{_K}JOB_BACKOFF_LIMIT", examples=["0"]
    )
    pod_failure_policy: ft.PodFailurePolicy | None = Field(
        default=None,
        validation_alias=f"{_K}POD_FAILURE_POLICY",
        examples=[
            '{"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}'
        ],
    )
    max_concurrent_runs: ft.Positive = Field(
        default=2, validation_alias=AliasChoices(SNAPSHOT_RUNS, TEMPLATE_RUNS), examples=["2"]
    )
    aws_bucket: ft.S3Bucket | None = Field(
        default=None, validation_alias=f"{_AWS}BUCKET", examples=["s3://zenml-logs/runner-logs"]
    )
    aws_region: ft.Region | None = Field(
        default=None, validation_alias=f"{_AWS}REGION", examples=["eu-central-1"]
    )
    gcp_bucket: ft.GcsBucket | None = Field(
        default=None, validation_alias=f"{_GCP}BUCKET", examples=["gs://zenml-logs/runner-logs"]
    )

    # the daemon's own
    api_host: ft.Host = Field(
        default="127.0.0.1", validation_alias="ZWMD_API_HOST", examples=["127.0.0.1"]
    )
    api_port: ft.Port = Field(default=8390, validation_alias="ZWMD_API_PORT", examples=["8390"])
    api_socket: ft.SocketPath | None = Field(
        default=None, validation_alias="ZWMD_API_SOCKET", examples=["/run/zwmd/api.sock"]
    )
    api_token: ft.Token | None = Field(
        default=None, validation_alias="ZWMD_API_TOKEN", examples=[_TOKEN_EXAMPLE]
    )
    api_token_file: ft.AbsolutePath | None = Field(
        default=None,
        validation_alias="ZWMD_API_TOKEN_FILE",
        examples=["/run/credentials/zwmd.service/api-token"],
    )
    state_dir: ft.AbsolutePath = Field(
        default=Path("/var/lib/zwmd"), validation_alias="ZWMD_STATE_DIR", examples=["/var/lib/zwmd"]
    )
    metrics_port: ft.Port | None = Field(
        default=None, validation_alias="ZWMD_METRICS_PORT", examples=["9390"]
    )
    # All addresses: the metrics listener exists for scrapers and kubelets on other hosts
    # (the API stays on loopback or its socket); it serves no secret and takes no write.
    metrics_host: ft.Host = Field(
        default="0.0.0.0", validation_alias="ZWMD_METRICS_HOST", examples=["0.0.0.0"]
    )
    log_store: ft.LogStore = Field(
        default="file", validation_alias="ZWMD_LOG_STORE", examples=["file"]
    )
    runner_pod_security: ft.PodSecurity = Field(
        default="restricted", validation_alias="ZWMD_RUNNER_POD_SECURITY", examples=["restricted"]
    )
    builder_image: ft.Image = Field(
        default=DEFAULT_BUILDER_IMAGE,
        validation_alias="ZWMD_BUILDER_IMAGE",
        examples=[DEFAULT_BUILDER_IMAGE],
    )
    builder_args: ft.BuilderArgs = Field(
        default=(),
        validation_alias="ZWMD_BUILDER_ARGS",
        examples=['["--snapshot-mode=redo", "--cache=true"]'],
    )
    builder_resources: ft.Resources = Field(
        default={}, validation_alias="ZWMD_BUILDER_RESOURCES", examples=[_EXAMPLE_RESOURCES]
    )
    registry_config: ft.DockerConfigFile | None = Field(
        default=None,
        validation_alias="ZWMD_REGISTRY_CONFIG",
        examples=["/etc/zwmd/docker/config.json"],
    )
    registry_secret: ft.DnsSubdomain | None = Field(
        default=None,
        validation_alias="ZWMD_REGISTRY_SECRET",
        examples=["zwmd-registry-credentials"],
    )
    insecure_registries: ft.RegistryHosts = Field(
        default=(),
        validation_alias="ZWMD_INSECURE_REGISTRIES",
        examples=["registry.example:5000,127.0.0.1:5001"],
    )
    image_pull_grace_seconds: ft.Seconds = Field(
        default=60.0, validation_alias="ZWMD_IMAGE_PULL_GRACE_SECONDS", examples=["60"]
    )
    unschedulable_deadline_seconds: ft.Seconds = Field(
        default=300.0, validation_alias="ZWMD_UNSCHEDULABLE_DEADLINE_SECONDS", examples=["300"]
    )
    watch_inactivity_timeout_seconds: ft.Seconds = Field(
        default=300.0, validation_alias="ZWMD_WATCH_INACTIVITY_TIMEOUT_SECONDS", examples=["300"]
    )
    log_inactivity_timeout_seconds: ft.Seconds = Field(
        default=60.0, validation_alias="ZWMD_LOG_INACTIVITY_TIMEOUT_SECONDS", examples=["60"]
    )
    shutdown_grace_seconds: ft.Seconds = Field(
        default=8.0, validation_alias="ZWMD_SHUTDOWN_GRACE_SECONDS", examples=["8"]
    )
    startup_timeout_seconds: ft.Seconds = Field(
        default=300.0, validation_alias="ZWMD_STARTUP_TIMEOUT_SECONDS", examples=["300"]
    )
    secret_name_pattern: ft.NamePattern = Field(
        default=DEFAULT_SECRET_NAME_PATTERN,
        validation_alias="ZWMD_SECRET_NAME_PATTERN",
        examples=[DEFAULT_SECRET_NAME_PATTERN + "|^AWS_"],
    )
    # input limits: Kubernetes' own by default (see zwmd.kube.sizes)
    api_max_body_bytes: ft.Positive = Field(
        default=4194304, validation_alias="ZWMD_API_MAX_BODY_BYTES", examples=["4194304"]
    )
    max_secret_bytes: ft.Positive = Field(
        default=1048576, validation_alias="ZWMD_MAX_SECRET_BYTES", examples=["1048576"]
    )
    max_object_bytes: ft.Positive = Field(
        default=1572864, validation_alias="ZWMD_MAX_OBJECT_BYTES", examples=["1572864"]
    )
    log_message_max_bytes: ft.Positive = Field(
        default=65536, validation_alias="ZWMD_LOG_MESSAGE_MAX_BYTES", examples=["65536"]
    )
    unknown_log_ids: ft.Positive = Field(
        default=1000, validation_alias="ZWMD_UNKNOWN_LOG_IDS", examples=["1000"]
    )
    unknown_log_bytes: ft.Positive = Field(
        default=1048576, validation_alias="ZWMD_UNKNOWN_LOG_BYTES", examples=["1048576"]
    )
    kubeconfig: ft.PathList = Field(
        default=(), validation_alias="KUBECONFIG", examples=["/etc/zwmd/kubeconfig"]
    )

    _sources: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _notes: tuple[str, ...] = PrivateAttr(default=())
    _kube_access: KubeAccess = PrivateAttr(default=KubeAccess("none"))

    @model_validator(mode="wrap")
    @classmethod
    def _resolve(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings], info: ValidationInfo
    ) -> Settings:
        given: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {}
        environ: Mapping[str, object]
        if isinstance(info.context, LoadContext):
            environ, keywords, local = given, {}, info.context.local
        else:
            environ, keywords, local = os.environ, given, False
        resolved = resolve(_VARIABLES, environ, keywords, local=local)
        problems = list(resolved.problems)
        if isinstance(info.context, LoadContext):  # a whole environment: check its names
            problems += unknown_variables(environ, _FIELD_OF)
        model: Settings | None = None
        try:
            model = handler(resolved.values)
        except ValidationError as exc:
            problems[:0] = _field_problems(exc)
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
        for name in type(self).model_fields:
            variable, source = self._sources.get(name, (_VARIABLES[name].own, "default"))
            value = getattr(self, name)
            shown = "***" if isinstance(value, SecretStr) else format_value(value)
            rows.append((variable, shown, source))
        rows.append(("(kubernetes access)", str(self.kube_access), "derived"))
        rows.append(("(runner image mode)", self.runner_image_mode, "derived"))
        return rows


def _variables(field: FieldInfo) -> FieldVariables:
    alias = field.validation_alias
    names = alias.choices if isinstance(alias, AliasChoices) else [alias]
    assert all(isinstance(name, str) for name in names)
    assert field.examples
    return FieldVariables(tuple(str(name) for name in names), str(field.examples[0]))


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


_VARIABLES = {name: _variables(field) for name, field in Settings.model_fields.items()}
#: every variable that feeds a field, to its field's name and position
_FIELD_OF = {
    variable: (name, index)
    for index, (name, variables) in enumerate(_VARIABLES.items())
    for variable in variables.names
}
_SECRET = {name for name, field in Settings.model_fields.items() if _is_secret(field.annotation)}


def _field_problems(exc: ValidationError) -> list[Problem]:
    """One problem per fault; a field error is located at the variable that carried it."""
    problems: list[Problem] = []
    for error in exc.errors():
        variable = str(error["loc"][0]) if error["loc"] else ""
        if variable not in _FIELD_OF:
            continue
        name = _FIELD_OF[variable][0]
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "missing":
            faults: tuple[str, ...] = ("is required and not set",)
            variable = _VARIABLES[name].own
        elif isinstance(cause, ks.ShapeError):
            faults = cause.faults
        elif isinstance(cause, ValueError):
            faults = (str(cause),)
        else:
            faults = ("is not valid",) if name in _SECRET else (error["msg"],)
        problems += [Problem(variable, fault, _VARIABLES[name].example) for fault in faults]
    return problems


def _problem_order(problem: Problem) -> int:
    return _FIELD_OF.get(problem.variable, ("", len(_FIELD_OF)))[1]


def load_settings(environ: Mapping[str, str] | None = None, *, local: bool = False) -> Settings:
    """Read and check the configuration from ``environ`` (default: ``os.environ``).

    ``local=True`` is ``zwmd serve --local``: namespace and service account default to
    ``default`` and Kubernetes access is the embedded localkube.
    Raises :class:`SettingsError` listing every problem.
    """
    source = os.environ if environ is None else environ
    return Settings.model_validate(dict(source), context=LoadContext(local))
