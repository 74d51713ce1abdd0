"""From raw environment strings to the values :class:`~zwmd.settings.Settings` validates.

This step runs before field validation and does what no single field can:

- picks which variable feeds a field when two may (``ZWMD_IMPLEMENTATION`` over the
  seeds' implementation source; ``..._SNAPSHOT_RUNS`` over ``..._TEMPLATE_RUNS``);
- reads ``ZWMD_API_TOKEN_FILE`` (the token never appears in a message);
- fills the defaults that depend on the environment (state directory, local mode,
  the log store implied by ``..._ENABLE_EXTERNAL_LOGS``, Kubernetes access);
- applies the seeds' conditional rules and the daemon's own (registry when building,
  bucket with external logs, region on AWS, a token off loopback, distinct ports).

Rules look at raw values through the same parsers the fields use; a value that does
not parse is skipped here (its field reports it), so one load lists every problem.
It records, per field, which variable it came from and whether from the environment,
a file, a default or a derivation, for ``zwmd config``. Its output is keyed by variable,
so the model's ``validation_alias`` maps each value to its field (and a field error is
located at the variable that carried the value).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from zwmd.settings import envvalues as ev

__all__ = [
    "EXTERNAL_LOG_STORES",
    "FieldVariables",
    "KubeAccess",
    "Problem",
    "Resolved",
    "SettingsError",
    "resolve",
]

IMPLEMENTATION_SOURCE = "ZENML_SERVER_WORKLOAD_MANAGER_IMPLEMENTATION_SOURCE"
IMPLEMENTATION_OVERRIDE = "ZWMD_IMPLEMENTATION"
TEMPLATE_RUNS = "ZENML_SERVER_MAX_CONCURRENT_TEMPLATE_RUNS"
SNAPSHOT_RUNS = "ZENML_SERVER_MAX_CONCURRENT_SNAPSHOT_RUNS"
EXTERNAL_LOGS = "ZENML_KUBERNETES_WORKLOAD_MANAGER_ENABLE_EXTERNAL_LOGS"
BUILD = "ZENML_KUBERNETES_WORKLOAD_MANAGER_BUILD_RUNNER_IMAGE"
#: the log store ``..._ENABLE_EXTERNAL_LOGS=true`` selects per implementation
#: (another plugin's implementation selects the store of the same name)
EXTERNAL_LOG_STORES = {"aws": "s3", "gcp": "gcs", "kubernetes": "file"}
LOCAL_DEFAULTS = {"namespace": "default", "service_account": "default"}


@dataclass(frozen=True)
class FieldVariables:
    """The variables that may feed one field, the one that wins first, and an example.

    The last name is the field's own (the one shown when the field is unset); names
    before it override it, in the order pydantic's ``AliasChoices`` tries them.
    """

    names: tuple[str, ...]
    example: str

    @property
    def own(self) -> str:
        return self.names[-1]


@dataclass(frozen=True)
class Problem:
    """One fault of one variable; ``str()`` gives the line an operator sees."""

    variable: str
    fault: str
    example: str

    def __str__(self) -> str:
        example = f" (e.g. {self.example})" if self.example else ""
        return f"{self.variable}: {self.fault}{example}"


class SettingsError(Exception):
    """Invalid configuration; ``problems`` holds every fault found, in variable order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class KubeAccess:
    """How the daemon will reach Kubernetes; decided from the environment only."""

    mode: Literal["kubeconfig", "in-cluster", "local", "none"]
    kubeconfig: tuple[Path, ...] = ()

    def __str__(self) -> str:
        if self.mode == "kubeconfig":
            return "kubeconfig " + os.pathsep.join(str(path) for path in self.kubeconfig)
        return self.mode


@dataclass
class Resolved:
    """Raw values by variable, where each field's value came from, what the rules found."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kube_access: KubeAccess = KubeAccess("none")


class _Invalid:
    """A raw value its parser refused; rules that need it are skipped."""


INVALID = _Invalid()
T = TypeVar("T")


class _Resolver:
    def __init__(
        self,
        fields: Mapping[str, FieldVariables],
        environ: Mapping[str, object],
        keywords: Mapping[str, Any],
        local: bool,
    ) -> None:
        self.fields = fields
        # empty variables count as unset (Helm charts often render "")
        self.environ = {
            name: value
            for name, value in environ.items()
            if isinstance(value, str) and value.strip()
        }
        self.kwargs = {name: value for name, value in keywords.items() if name in fields}
        self.local = local
        self.raw: dict[str, Any] = {}
        self.out = Resolved()

    def env(self, name: str) -> str:
        return self.fields[name].own

    def problem(self, name: str, fault: str, example: str | None = None) -> None:
        variable = self.out.sources.get(name, (self.env(name), ""))[0]
        self.out.problems.append(Problem(variable, fault, example or self.fields[name].example))

    def set(self, name: str, value: Any, variable: str, source: str) -> None:
        self.raw[name] = value
        self.out.sources[name] = (variable, source)

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def parsed(self, name: str, parse: Callable[[Any], T], default: T) -> T | _Invalid:
        if not self.has(name):
            return default
        try:
            return parse(self.raw[name])
        except ValueError:
            return INVALID

    # --- steps ---------------------------------------------------------------------

    def collect(self) -> None:
        for name, variables in self.fields.items():
            if name in self.kwargs:
                self.set(name, self.kwargs[name], variables.own, "argument")
                continue
            found = next(
                (variable for variable in variables.names if variable in self.environ), None
            )
            if found is not None:
                self.set(name, self.environ[found], found, "env")
        snapshot, template = self.environ.get(SNAPSHOT_RUNS), self.environ.get(TEMPLATE_RUNS)
        if (
            "max_concurrent_runs" not in self.kwargs
            and snapshot is not None
            and template is not None
            and template.strip() != snapshot.strip()
        ):
            self.out.notes.append(
                f"{SNAPSHOT_RUNS}={snapshot.strip()} overrides {TEMPLATE_RUNS}="
                f"{template.strip()} (the newer name wins)"
            )

    def read_token_file(self) -> None:
        if not self.has("api_token_file") or "api_token" in self.kwargs:
            return
        if self.has("api_token"):
            self.problem("api_token_file", "is set together with ZWMD_API_TOKEN; set only one")
            return
        path = Path(str(self.raw["api_token_file"]).strip()).expanduser()
        if not path.is_absolute():
            return  # the field reports it
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
            self.problem("api_token_file", f"cannot read {path}: {reason}")
            return
        if not token:
            self.problem("api_token_file", f"{path} is empty")
        elif any(char.isspace() or not char.isprintable() for char in token):
            self.problem("api_token_file", f"{path} holds whitespace or control characters")
        else:
            self.set("api_token", token, self.env("api_token"), f"file {path}")

    def fill_defaults(self) -> None:
        if self.local:
            for name, value in LOCAL_DEFAULTS.items():
                if not self.has(name):
                    self.set(name, value, self.env(name), "default (local mode)")
        if not self.has("state_dir"):
            home = Path(self.environ.get("HOME") or Path.home())
            systemd = self.environ.get("STATE_DIRECTORY", "").split(os.pathsep)[0].strip()
            xdg = self.environ.get("XDG_STATE_HOME", "").strip()
            if systemd:
                path, source = Path(systemd), "default ($STATE_DIRECTORY)"
            elif xdg and Path(xdg).is_absolute():
                path, source = Path(xdg) / "zwmd", "default ($XDG_STATE_HOME/zwmd)"
            else:
                path, source = home / ".local/state/zwmd", "default (~/.local/state/zwmd)"
            self.set("state_dir", path, self.env("state_dir"), source)

    def kubernetes_access(self) -> None:
        if self.local:
            self.out.kube_access = KubeAccess("local")
        elif self.has("kubeconfig"):
            raw = str(self.raw["kubeconfig"])
            paths = tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip())
            if not any(path.is_file() for path in paths):
                self.problem("kubeconfig", f"no file exists at {raw}")
            self.out.kube_access = KubeAccess("kubeconfig", paths)
        elif self.environ.get("KUBERNETES_SERVICE_HOST"):
            self.out.kube_access = KubeAccess("in-cluster")
        else:
            default = Path(self.environ.get("HOME") or Path.home()) / ".kube" / "config"
            if default.is_file():
                self.set("kubeconfig", str(default), self.env("kubeconfig"), "default")
                self.out.kube_access = KubeAccess("kubeconfig", (default,))

    def log_store(self) -> str | _Invalid:
        implementation = self.parsed("implementation", ev.parse_implementation, "kubernetes")
        external = self.parsed("enable_external_logs", ev.parse_flag, False)
        if self.has("log_store"):
            return str(self.raw["log_store"]).strip()
        if external is not True:
            return "file" if external is False else INVALID
        if isinstance(implementation, _Invalid):
            return INVALID
        store = EXTERNAL_LOG_STORES.get(implementation, implementation)
        self.set("log_store", store, self.env("log_store"), f"derived from {EXTERNAL_LOGS}")
        if implementation == "kubernetes":
            self.out.notes.append(
                f"{EXTERNAL_LOGS}=true with the kubernetes implementation keeps logs "
                "in the file store under ZWMD_STATE_DIR"
            )
        return store

    def rules(self, store: str | _Invalid) -> None:
        implementation = self.parsed("implementation", ev.parse_implementation, "kubernetes")
        build = self.parsed("build_runner_image", ev.parse_flag, False)
        if build is True and not self.has("docker_registry"):
            self.problem("docker_registry", f"is required when {BUILD} is true")
        if build is True and self.has("runner_image"):
            self.out.notes.append(
                f"ZENML_KUBERNETES_WORKLOAD_MANAGER_RUNNER_IMAGE is ignored while {BUILD} is true"
            )
        for bucket, store_name, what in (("aws_bucket", "s3", "S3"), ("gcp_bucket", "gcs", "GCS")):
            if store == store_name and not self.has(bucket):
                cause = self.out.sources.get("log_store", ("", "env"))[1]
                why = f"{EXTERNAL_LOGS} is true" if cause.startswith("derived") else None
                why = why or f"ZWMD_LOG_STORE is {store_name}"
                self.problem(bucket, f"is required when {why} (logs go to {what})")
        if (
            implementation == "aws"
            and (build is True or store == "s3")
            and not self.has("aws_region")
        ):
            self.problem(
                "aws_region",
                "is required with the aws implementation when building or storing logs",
            )
        self.api_rules()

    def api_rules(self) -> None:
        host = self.parsed("api_host", ev.parse_host, "127.0.0.1")
        socket = self.has("api_socket")
        token = self.has("api_token") or self.has("api_token_file")
        if not socket and isinstance(host, str) and not ev.is_loopback(host) and not token:
            self.problem(
                "api_host",
                f"{host} is not a loopback address, so ZWMD_API_TOKEN or ZWMD_API_TOKEN_FILE is required",
                "127.0.0.1",
            )
        if socket and (self.has("api_host") or self.has("api_port")):
            self.out.notes.append(
                "ZWMD_API_HOST and ZWMD_API_PORT are ignored: ZWMD_API_SOCKET is set"
            )
        api_port = self.parsed("api_port", ev.parse_whole_number(0, 65535), 8390)
        metrics_port = self.parsed("metrics_port", ev.parse_whole_number(0, 65535), None)
        if (
            not socket
            and isinstance(metrics_port, int)
            and metrics_port
            and metrics_port == api_port
        ):
            self.problem("metrics_port", f"must differ from ZWMD_API_PORT ({api_port})")
        if self.has("metrics_host") and not self.has("metrics_port"):
            self.out.notes.append("ZWMD_METRICS_HOST is ignored: ZWMD_METRICS_PORT is not set")


def resolve(
    fields: Mapping[str, FieldVariables],
    environ: Mapping[str, object],
    keywords: Mapping[str, Any] | None = None,
    *,
    local: bool = False,
) -> Resolved:
    """Raw values for the model, by variable, with the rules' problems and notes.

    :param fields: field name -> the variables that feed it and an example
    :param environ: the whole environment (the fields' variables and the ones the rules
        read: ``HOME``, ``STATE_DIRECTORY``, ``XDG_STATE_HOME``, ``KUBERNETES_SERVICE_HOST``)
    :param keywords: values given by field name, which win over the environment
    :param local: ``zwmd serve --local`` (default names, the embedded Kubernetes)
    """
    resolver = _Resolver(fields, environ, keywords or {}, local)
    resolver.collect()
    resolver.read_token_file()
    resolver.fill_defaults()
    resolver.kubernetes_access()
    resolver.rules(resolver.log_store())
    out = resolver.out
    out.values = {out.sources[name][0]: value for name, value in resolver.raw.items()}
    return out
