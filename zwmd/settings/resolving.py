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
a file, a default or a derivation, for ``zwmd config``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from zwmd.settings import envvalues as ev

__all__ = [
    "ENVIRON_KEY",
    "EXTERNAL_LOG_STORES",
    "KNOWN_CONTEXT_VARIABLES",
    "LOCAL_KEY",
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
KNOWN_CONTEXT_VARIABLES = (
    IMPLEMENTATION_OVERRIDE,
    SNAPSHOT_RUNS,
    "HOME",
    "STATE_DIRECTORY",
    "XDG_STATE_HOME",
    "KUBERNETES_SERVICE_HOST",
)
ENVIRON_KEY = "__environ__"
LOCAL_KEY = "__local__"
LOCAL_DEFAULTS = {"namespace": "default", "service_account": "default"}


@dataclass(frozen=True)
class Problem:
    """One fault of one variable; ``str()`` gives the line an operator sees."""

    variable: str
    fault: str
    example: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.fault} (e.g. {self.example})"


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
    """Raw values by field name, plus where each came from and what the rules found."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kube_access: KubeAccess = KubeAccess("none")


class _Invalid:
    """A raw value its parser refused; rules that need it are skipped."""


INVALID = _Invalid()
T = TypeVar("T")


class _Resolver:
    def __init__(self, variables: Mapping[str, tuple[str, str]], data: Mapping[str, Any]) -> None:
        self.variables = variables
        self.environ: Mapping[str, str] = data.get(ENVIRON_KEY) or {}
        self.local = bool(data.get(LOCAL_KEY))
        self.kwargs = {name: value for name, value in data.items() if name in variables}
        self.out = Resolved()

    def env(self, name: str) -> str:
        return self.variables[name][0]

    def problem(self, name: str, fault: str, example: str | None = None) -> None:
        variable = self.out.origins.get(name, self.env(name))
        self.out.problems.append(Problem(variable, fault, example or self.variables[name][1]))

    def set(self, name: str, value: Any, variable: str, source: str) -> None:
        self.out.values[name] = value
        self.out.origins[name] = variable
        self.out.sources[name] = (variable, source)

    def has(self, name: str) -> bool:
        return self.out.values.get(name) is not None

    def parsed(self, name: str, parse: Callable[[Any], T], default: T) -> T | _Invalid:
        if not self.has(name):
            return default
        try:
            return parse(self.out.values[name])
        except ValueError:
            return INVALID

    # --- steps ---------------------------------------------------------------------

    def collect(self) -> None:
        for name in self.variables:
            if name in self.kwargs:
                self.set(name, self.kwargs[name], self.env(name), "argument")
            elif self.env(name) in self.environ:
                self.set(name, self.environ[self.env(name)], self.env(name), "env")
        if "implementation" not in self.kwargs and IMPLEMENTATION_OVERRIDE in self.environ:
            value = self.environ[IMPLEMENTATION_OVERRIDE]
            self.set("implementation", value, IMPLEMENTATION_OVERRIDE, "env")
        if "max_concurrent_runs" not in self.kwargs and SNAPSHOT_RUNS in self.environ:
            snapshot, template = self.environ[SNAPSHOT_RUNS], self.environ.get(TEMPLATE_RUNS)
            self.set("max_concurrent_runs", snapshot, SNAPSHOT_RUNS, "env")
            if template is not None and template.strip() != snapshot.strip():
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
        path = Path(str(self.out.values["api_token_file"]).strip()).expanduser()
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
            self.set("api_token", token, "ZWMD_API_TOKEN", f"file {path}")

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
            raw = str(self.out.values["kubeconfig"])
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
            return str(self.out.values["log_store"]).strip()
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


def resolve(variables: Mapping[str, tuple[str, str]], data: Mapping[str, Any]) -> Resolved:
    """Raw values for the model, by field name, with the rules' problems and notes.

    :param variables: field name -> (environment variable, example of a valid value)
    :param data: the settings sources' output: field-name keywords, the environment
        under ``ENVIRON_KEY`` and the local-mode flag under ``LOCAL_KEY``
    """
    resolver = _Resolver(variables, data)
    resolver.collect()
    resolver.read_token_file()
    resolver.fill_defaults()
    resolver.kubernetes_access()
    resolver.rules(resolver.log_store())
    return resolver.out
