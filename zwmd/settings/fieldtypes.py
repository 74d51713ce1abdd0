"""The annotated types of :class:`~zwmd.settings.Settings`' fields.

Each type pairs a Python type with a ``BeforeValidator`` that turns one environment
string (or an already-typed keyword value) into that type, or raises :class:`ValueError`
with a short phrase naming the fault. JSON shapes raise :class:`~zwmd.settings.kubeshapes.ShapeError`
(a ``ValueError`` carrying several faults). The variable's name and an example are added
by :mod:`zwmd.settings` from the field's ``validation_alias`` and ``examples``.

The scalar parsers live in :mod:`~zwmd.settings.envvalues` and the Kubernetes shapes in
:mod:`~zwmd.settings.kubeshapes`; this module only adapts them to pydantic and adds the
few checks that belong to one field alone (the token, the log store name, paths).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

from zwmd.settings import envvalues as ev
from zwmd.settings import kubeshapes as ks
from zwmd.settings.envvalues import BucketLocation

__all__ = [
    "AbsolutePath",
    "BuilderArgs",
    "Count",
    "DnsLabel",
    "DnsSubdomain",
    "DockerConfigFile",
    "Flag",
    "GcsBucket",
    "Host",
    "Image",
    "Implementation",
    "LogStore",
    "NamePattern",
    "NodeSelector",
    "PathList",
    "PodFailurePolicy",
    "Port",
    "Positive",
    "Region",
    "Registry",
    "RegistryHosts",
    "Resources",
    "S3Bucket",
    "Seconds",
    "SocketPath",
    "Token",
    "Tolerations",
]

_STORE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


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


#: Pod Security Standards levels a runner pod can be made to pass (ZWMD_RUNNER_POD_SECURITY)
POD_SECURITY_LEVELS = ("restricted", "baseline")


def _parse_pod_security(value: object) -> str:
    text = str(value).strip().lower()
    if text not in POD_SECURITY_LEVELS:
        raise ValueError(f"{ks.quote(text)} is not restricted or baseline")
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
Implementation = Annotated[str, BeforeValidator(ev.parse_implementation)]
DnsLabel = Annotated[str, BeforeValidator(_name_check(ks.check_dns_label))]
DnsSubdomain = Annotated[str, BeforeValidator(_name_check(ks.check_dns_subdomain))]
Registry = Annotated[str, BeforeValidator(ev.parse_registry)]
RegistryHosts = Annotated[tuple[str, ...], BeforeValidator(ev.parse_registry_hosts)]
Image = Annotated[str, BeforeValidator(ev.parse_image)]
Region = Annotated[str, BeforeValidator(ev.parse_region)]
S3Bucket = Annotated[BucketLocation, BeforeValidator(ev.parse_bucket("s3"))]
GcsBucket = Annotated[BucketLocation, BeforeValidator(ev.parse_bucket("gs"))]
Host = Annotated[str, BeforeValidator(ev.parse_host)]
Token = Annotated[SecretStr, BeforeValidator(_parse_token)]
LogStore = Annotated[str, BeforeValidator(_parse_store)]
PodSecurity = Annotated[str, BeforeValidator(_parse_pod_security)]
NamePattern = Annotated[str, BeforeValidator(ev.parse_name_pattern)]
AbsolutePath = Annotated[Path, BeforeValidator(_parse_absolute_path)]
SocketPath = Annotated[Path, BeforeValidator(_parse_socket_path)]
PathList = Annotated[tuple[Path, ...], BeforeValidator(_parse_path_list)]
DockerConfigFile = Annotated[Path, BeforeValidator(ev.parse_docker_config_file)]
BuilderArgs = Annotated[tuple[str, ...], BeforeValidator(ev.parse_builder_args)]
Resources = Annotated[
    dict[str, dict[str, str]], BeforeValidator(_json_shape(ks.validate_resources))
]
NodeSelector = Annotated[dict[str, str], BeforeValidator(_json_shape(ks.validate_node_selector))]
Tolerations = Annotated[list[dict[str, Any]], BeforeValidator(_json_shape(ks.validate_tolerations))]
PodFailurePolicy = Annotated[
    dict[str, Any], BeforeValidator(_json_shape(ks.validate_pod_failure_policy))
]
