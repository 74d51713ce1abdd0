"""Parsers for the scalar values in zwmd's environment.

Every environment variable arrives as a string. These functions turn one string into a
typed value or raise :class:`ValueError` with a short phrase naming the fault (without
the variable's name and without an example: :mod:`zwmd.settings` adds both, and never
passes a secret here). They accept already-typed values too, so ``Settings(...)`` built
from Python keywords goes through the same checks.

Design notes:

- Pure functions, no I/O except :func:`parse_docker_config_file`, which only reads the
  file named by the operator; nothing else of zwmd is imported.
- Registries and images follow the OCI distribution grammar: a host with an optional
  port, then lower-case path components. ``..._DOCKER_REGISTRY`` may carry a path
  (``host:port/team``) and must not carry a scheme, a tag or a digest.
- Implementation sources: the seeds' three class paths, the family they follow
  (``zenml_cloud_plugins.<name>_kubernetes_workload_manager.<Name>KubernetesWorkloadManager``),
  our own adapter ``zwmd.zenml.WorkloadManager`` (the ZenML server reads the same
  variable) and bare plugin names all resolve to a short implementation name.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ADAPTER_SOURCE",
    "DEFAULT_SECRET_NAME_PATTERN",
    "SEED_SOURCES",
    "BucketLocation",
    "compile_name_pattern",
    "is_loopback",
    "parse_bucket",
    "parse_builder_args",
    "parse_docker_config_file",
    "parse_flag",
    "parse_host",
    "parse_image",
    "parse_implementation",
    "parse_name_pattern",
    "parse_number",
    "parse_region",
    "parse_registry",
    "parse_registry_hosts",
    "parse_whole_number",
]

ADAPTER_SOURCE = "zwmd.zenml.WorkloadManager"
#: Names of environment variables whose values are secret (searched, ignoring case).
DEFAULT_SECRET_NAME_PATTERN = "TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL"
SEED_SOURCES = {
    "zenml_cloud_plugins.kubernetes_workload_manager.KubernetesWorkloadManager": "kubernetes",
    "zenml_cloud_plugins.aws_kubernetes_workload_manager.AWSKubernetesWorkloadManager": "aws",
    "zenml_cloud_plugins.gcp_kubernetes_workload_manager.GCPKubernetesWorkloadManager": "gcp",
}
_SEED_FAMILY = re.compile(
    r"zenml_cloud_plugins\.(?:(?P<name>[a-z0-9]+)_)?kubernetes_workload_manager"
    r"\.[A-Za-z0-9]*KubernetesWorkloadManager"
)
_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _show(value: object) -> str:
    return json.dumps(value) if isinstance(value, str | int | float | None) else repr(value)


def parse_flag(value: object) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off, any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{_show(value)} is not a boolean (use true or false)")


def parse_whole_number(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    """A parser for whole numbers in ``[minimum, maximum]``."""

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(f"{_show(value)} is not a whole number")
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise ValueError(f"{_show(value)} is not a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise ValueError(f"{number} is out of range (must be {bound})")
        return number

    return parse


def parse_number(value: object) -> float:
    """A non-negative number of seconds (fractions allowed)."""
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise ValueError(f"{_show(value)} is not a number of seconds") from None
    if isinstance(value, bool) or not number >= 0 or number == float("inf"):
        raise ValueError(f"{_show(value)} must be a finite number of seconds, 0 or more")
    return number


def parse_implementation(value: object) -> str:
    """The implementation name for a seed class path, our adapter or a plugin name."""
    text = str(value).strip()
    if text in SEED_SOURCES:
        return SEED_SOURCES[text]
    if text == ADAPTER_SOURCE:
        return "kubernetes"
    family = _SEED_FAMILY.fullmatch(text)
    if family is not None:
        return (family["name"] or "kubernetes").lower()
    if _PLUGIN_NAME.fullmatch(text):
        return text
    raise ValueError(
        f"{_show(text)} is neither a workload manager class path zwmd knows "
        "nor a plugin name (kubernetes, aws, gcp, ...)"
    )


_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}")


def _host_fault(host: str) -> str | None:
    match = _HOST.fullmatch(host)
    if match is None:
        return f"host {_show(host)} is not a host name or address"
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        return f"port {match['port']} in {_show(host)} is out of range"
    return None


def parse_registry(value: object) -> str:
    """A registry with an optional path: ``host[:port][/path]``, no scheme, no tag."""
    text = str(value).strip().rstrip("/")
    if "://" in text:
        raise ValueError(f"{_show(text)} must not carry a scheme (drop {text.split('://')[0]}://)")
    host, _, path = text.partition("/")
    fault = _host_fault(host)
    if fault is None and path:
        bad = [part for part in path.split("/") if not _PATH_COMPONENT.fullmatch(part)]
        if bad:
            fault = f"path component {_show(bad[0])} must be lower-case letters, digits and . _ - separators (no tag or digest)"
    if fault is not None:
        raise ValueError(f"{_show(text)}: {fault}")
    return text


def parse_image(value: object) -> str:
    """An image reference: ``[host[:port]/]path[:tag][@digest]``."""
    text = str(value).strip()
    name, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise ValueError(f"{_show(text)} has an invalid digest {_show(digest)}")
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1 :]:
        name, _, tag = name.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{_show(text)} has an invalid tag {_show(tag)}")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        fault = _host_fault(first)
        if fault is not None:
            raise ValueError(f"{_show(text)}: {fault}")
        name = rest
    if not name or not all(_PATH_COMPONENT.fullmatch(part) for part in name.split("/")):
        raise ValueError(f"{_show(text)} is not an image reference")
    return text


def parse_registry_hosts(value: object) -> tuple[str, ...]:
    """Comma-separated ``host[:port]`` entries (empty entries are skipped)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    hosts: list[str] = []
    for raw in items:
        host = str(raw).strip()
        if not host:
            continue
        fault = _host_fault(host)
        if fault is not None:
            raise ValueError(fault)
        hosts.append(host)
    return tuple(hosts)


def parse_host(value: object) -> str:
    """A listening address: an IP address or a host name."""
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _HOST.fullmatch(text) is None or ":" in text:
        raise ValueError(f"{_show(text)} is not an IP address or host name")
    return text


def is_loopback(host: str) -> bool:
    """Whether a listening address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class BucketLocation:
    """A bucket and an object-name prefix, from ``s3://bucket/prefix`` or ``gs://...``."""

    scheme: str
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def parse_bucket(scheme: str) -> Callable[[object], BucketLocation]:
    """A parser for ``<scheme>://bucket[/prefix]`` with that provider's bucket-name rules."""
    pattern = _S3_BUCKET if scheme == "s3" else _GCS_BUCKET

    def parse(value: object) -> BucketLocation:
        if isinstance(value, BucketLocation):
            return value
        text = str(value).strip()
        if not text.startswith(f"{scheme}://"):
            raise ValueError(f"{_show(text)} must start with {scheme}://")
        bucket, _, prefix = text[len(scheme) + 3 :].partition("/")
        valid = pattern.fullmatch(bucket) and ".." not in bucket
        if scheme == "gs" and valid:
            valid = all(0 < len(part) <= 63 for part in bucket.split("."))
        if not valid:
            raise ValueError(
                f"bucket name {_show(bucket)} must be 3-63 lower-case letters, digits, "
                "'-' or '.', starting and ending alphanumeric"
            )
        return BucketLocation(scheme, bucket, prefix.strip("/"))

    return parse


_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")


def parse_region(value: object) -> str:
    """An AWS region name such as ``eu-central-1``."""
    text = str(value).strip()
    if not _REGION.fullmatch(text):
        raise ValueError(f"{_show(text)} is not an AWS region name")
    return text


def parse_builder_args(value: object) -> tuple[str, ...]:
    """Extra builder arguments: a JSON list of strings, or a shell-quoted string."""
    if isinstance(value, list | tuple):
        items: object = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not a valid JSON list ({exc.msg})") from None
        else:
            try:
                items = shlex.split(text)
            except ValueError as exc:
                raise ValueError(f"cannot be split like a shell command line ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ValueError("must be a list of strings")
    return tuple(items)


def parse_docker_config_file(value: object) -> Path:
    """A readable docker ``config.json``: a JSON object whose ``auths`` is an object.

    The file's content holds credentials and never appears in a message.
    """
    path = Path(str(value).strip()).expanduser()
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a JSON docker config file") from None
    if not isinstance(content, dict) or not isinstance(content.get("auths", {}), dict):
        raise ValueError(f'{path} is not a docker config file (expected {{"auths": {{...}}}})')
    return path


def compile_name_pattern(pattern: str) -> re.Pattern[str]:
    """A name pattern (a regular expression, searched in names, ignoring case), compiled.

    :raises ValueError: when ``pattern`` is not a regular expression, or matches the
        empty name and so every name (an empty alternative such as ``TOKEN|``): ``.``
        says that on purpose.
    """
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{_show(pattern)} is not a regular expression ({exc})") from None
    if compiled.search("") is not None:
        raise ValueError(
            f"{_show(pattern)} matches the empty name, so every variable (write '.' for that)"
        )
    return compiled


def parse_name_pattern(value: object) -> str:
    """A pattern for :func:`compile_name_pattern`, checked."""
    text = str(value).strip()
    compile_name_pattern(text)
    return text
