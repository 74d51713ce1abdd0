"""A container's environment and command line, resolved as a kubelet resolves them.

Design notes:

* Order is Kubernetes': ``envFrom`` sources first (in order, each key optionally with a
  ``prefix``), then ``env`` entries, which win over ``envFrom``. Keys that are not valid
  environment variable names are skipped, as the kubelet does (it reports them in an
  Event; localkube does not).
* ``valueFrom``: ``secretKeyRef`` and ``configMapKeyRef`` (with ``optional``) and
  ``fieldRef`` (``metadata.name``, ``metadata.namespace``, ``metadata.uid``,
  ``metadata.labels['k']``, ``metadata.annotations['k']``, ``spec.nodeName``,
  ``spec.serviceAccountName``, ``status.podIP``, ``status.hostIP``). Secret values come
  from base64 ``data``, overlaid with ``stringData`` (which a real apiserver merges into
  ``data`` on write).
* A missing Secret/ConfigMap or key that is not ``optional`` raises
  :class:`ConfigError` with the kubelet's message (``secret "x" not found``,
  ``couldn't find key k in Secret ns/x``); the kubelet shows it as a waiting container
  with reason ``CreateContainerConfigError`` and retries.
* ``$(VAR)`` references in values, ``command`` and ``args`` expand to variables defined
  earlier; ``$$`` escapes; unknown references stay as written.
* The host process gets a minimal base environment (``PATH``, ``HOME``, ``LANG``,
  ``LC_ALL``, ``TMPDIR``, ``VIRTUAL_ENV`` and every ``PYTHON*`` variable of the host) so
  that ``python -c ...`` works as on the host; ``HOSTNAME`` is the pod's name.
"""

from __future__ import annotations

import base64
import os
import re
from typing import TYPE_CHECKING, Any

from zwmd.localkube.errors import ApiError

if TYPE_CHECKING:
    from zwmd.localkube.store import Store

JsonDict = dict[str, Any]

_BASE = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_REFERENCE_RE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_FIELD_RE = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(Exception):
    """The container cannot be configured yet (``CreateContainerConfigError``)."""


def base_environment(pod_name: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in _BASE if key in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PYTHON")})
    env.setdefault("PATH", os.defpath)
    env["HOSTNAME"] = pod_name
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Expand ``$(VAR)`` from ``env``; ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE_RE.sub(replace, value)


def _source(store: Store, resource: str, namespace: str, name: str) -> dict[str, str] | None:
    try:
        obj = store.get(resource, namespace, name)
    except ApiError as error:
        if error.code == 404:
            return None
        raise
    values: dict[str, str] = {}
    if resource == "secrets":
        for key, encoded in (obj.get("data") or {}).items():
            values[key] = base64.b64decode(encoded or "").decode("utf-8", "replace")
        values.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
    else:
        values.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
        for key, encoded in (obj.get("binaryData") or {}).items():
            values[key] = base64.b64decode(encoded or "").decode("utf-8", "replace")
    return values


_KINDS = {"secrets": ("secret", "Secret"), "configmaps": ("configmap", "ConfigMap")}


def _lookup(store: Store, resource: str, namespace: str, ref: JsonDict) -> str | None:
    name = str(ref.get("name", ""))
    key = str(ref.get("key", ""))
    values = _source(store, resource, namespace, name)
    lower, title = _KINDS[resource]
    if values is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{lower} "{name}" not found')
    if key not in values:
        if ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {key} in {title} {namespace}/{name}")
    return values[key]


def _field(pod: JsonDict, path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD_RE.match(path)
    if match is not None:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path}")


def container_environment(store: Store, pod: JsonDict, container: JsonDict) -> dict[str, str]:
    """The environment of ``container``'s process; raises :class:`ConfigError`."""
    namespace = str(pod["metadata"]["namespace"])
    env = base_environment(str(pod["metadata"]["name"]))
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for field, resource in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
            ref = source.get(field)
            if ref is None:
                continue
            values = _source(store, resource, namespace, str(ref.get("name", "")))
            if values is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{_KINDS[resource][0]} "{ref.get("name")}" not found')
            for key, value in values.items():
                if _NAME_RE.match(prefix + key):
                    declared[prefix + key] = value
    for entry in container.get("env") or []:
        name = str(entry.get("name", ""))
        value_from = entry.get("valueFrom")
        if value_from is None:
            declared[name] = expand(str(entry.get("value") or ""), declared)
            continue
        found: str | None
        if "secretKeyRef" in value_from:
            found = _lookup(store, "secrets", namespace, value_from["secretKeyRef"])
        elif "configMapKeyRef" in value_from:
            found = _lookup(store, "configmaps", namespace, value_from["configMapKeyRef"])
        elif "fieldRef" in value_from:
            found = _field(pod, str(value_from["fieldRef"].get("fieldPath", "")))
        else:
            found = ""
        if found is not None:
            declared[name] = found
    env.update(declared)
    return env


def command_line(container: JsonDict, env: dict[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded (``args`` alone if no command)."""
    argv = [str(a) for a in (container.get("command") or [])]
    argv += [str(a) for a in (container.get("args") or [])]
    return [expand(a, env) for a in argv]
