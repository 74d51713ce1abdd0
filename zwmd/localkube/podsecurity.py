"""PodSecurity admission: the baseline and restricted profiles, chosen by namespace labels.

Design notes (modelled on upstream's ``pod-security-admission``, written anew):

* A namespace chooses a level per mode with ``pod-security.kubernetes.io/<mode>``
  (``enforce``, ``warn``, ``audit``) and ``<mode>-version``; a missing level is
  ``privileged`` (nothing checked), a missing version ``latest``. An enforce label whose
  level is not one of the three is evaluated as ``restricted:latest``, as upstream does
  for a label it cannot parse. Every check here exists at every version localkube
  serves (1.24 on), so the version only appears in the message.
* Pods: a violation of the enforce level refuses the create with 403 ``pods "x" is
  forbidden: violates PodSecurity "<level>:<version>": <check> (<detail>), ...``; a
  violation of the warn level (when enforce allowed it) is a ``Warning`` header
  ``would violate PodSecurity "<level>:<version>": ...``. Audit annotates an audit event
  upstream; localkube's audit log has no annotations, so audit labels are read and
  ignored.
* Workloads (Jobs): never refused, but their pod template is checked against both the
  enforce and the warn level, and a violation becomes a warning, so the client learns at
  create time that its pods will be refused. The pods themselves are refused when the
  Job controller creates them: :mod:`zwmd.localkube.podcreation` turns the 403 into the
  Job's ``FailedCreate`` Event and retries, as the upstream controller does.
* Checks: baseline forbids privileged containers, host namespaces, hostPath volumes,
  host ports and capabilities added beyond the default set; restricted adds: only the
  volume types of its list, ``allowPrivilegeEscalation: false``, ``runAsNonRoot: true``
  (pod or every container), a ``RuntimeDefault``/``Localhost`` seccomp profile (pod or
  every container) and ``capabilities.drop: [ALL]`` with nothing added but
  ``NET_BIND_SERVICE``. Each check's wording follows upstream's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zwmd.localkube.errors import ApiError

__all__ = ["LEVELS", "Policy", "admit", "check_pod", "policy_of"]

JsonDict = dict[str, Any]
LEVELS = ("privileged", "baseline", "restricted")
_LABEL = "pod-security.kubernetes.io/"
_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_RESTRICTED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)


class Policy:
    """The (level, version) of each mode of one namespace."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.modes: dict[str, tuple[str, str]] = {}
        for mode in ("enforce", "warn", "audit"):
            level = labels.get(_LABEL + mode, "privileged")
            version = labels.get(f"{_LABEL}{mode}-version", "latest")
            if level not in LEVELS:
                level, version = "restricted", "latest"
            self.modes[mode] = (level, version)

    def describe(self, mode: str) -> str:
        level, version = self.modes[mode]
        return f"{level}:{version}"


def policy_of(namespace: JsonDict) -> Policy:
    return Policy(dict((namespace.get("metadata") or {}).get("labels") or {}))


def _containers(spec: JsonDict) -> list[JsonDict]:
    found = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        found += [c for c in spec.get(field) or () if isinstance(c, dict)]
    return found


def _names(kind: str, names: list[str]) -> str:
    quoted = ", ".join(f'"{n}"' for n in names)
    return f"{kind}s {quoted}" if len(names) > 1 else f"{kind} {quoted}"


def _context(container: JsonDict) -> JsonDict:
    return container.get("securityContext") or {}


def _privileged(spec: JsonDict) -> str | None:
    bad = [c.get("name", "") for c in _containers(spec) if _context(c).get("privileged")]
    if not bad:
        return None
    return f"privileged ({_names('container', bad)} must not set securityContext.privileged=true)"


def _host_namespaces(spec: JsonDict) -> str | None:
    bad = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    return f"host namespaces ({', '.join(bad)})" if bad else None


def _host_path(spec: JsonDict) -> str | None:
    bad = [v.get("name", "") for v in spec.get("volumes") or () if "hostPath" in v]
    return f"hostPath volumes ({_names('volume', bad)})" if bad else None


def _host_ports(spec: JsonDict) -> str | None:
    ports: list[str] = []
    names: list[str] = []
    for container in _containers(spec):
        used = [str(p["hostPort"]) for p in container.get("ports") or () if p.get("hostPort")]
        if used:
            names.append(container.get("name", ""))
            ports += used
    if not names:
        return None
    return f"hostPort ({_names('container', names)} uses hostPorts {', '.join(ports)})"


def _added(container: JsonDict) -> list[str]:
    return list((_context(container).get("capabilities") or {}).get("add") or ())


def _baseline_capabilities(spec: JsonDict) -> str | None:
    names, caps = [], []
    for container in _containers(spec):
        extra = [c for c in _added(container) if c not in _BASELINE_CAPABILITIES]
        if extra:
            names.append(container.get("name", ""))
            caps += [c for c in extra if c not in caps]
    if not names:
        return None
    quoted = ", ".join(f'"{c}"' for c in caps)
    return (
        f"non-default capabilities ({_names('container', names)} must not include {quoted} "
        "in securityContext.capabilities.add)"
    )


def _volume_types(spec: JsonDict) -> str | None:
    names, types = [], []
    for volume in spec.get("volumes") or ():
        kinds = [k for k in volume if k != "name" and k not in _RESTRICTED_VOLUMES]
        if kinds:
            names.append(volume.get("name", ""))
            types += [k for k in kinds if k not in types]
    if not names:
        return None
    quoted = ", ".join(f'"{t}"' for t in types)
    return (
        f"restricted volume types ({_names('volume', names)} uses restricted volume type {quoted})"
    )


def _escalation(spec: JsonDict) -> str | None:
    bad = [
        c.get("name", "")
        for c in _containers(spec)
        if _context(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return (
        f"allowPrivilegeEscalation != false ({_names('container', bad)} must set "
        "securityContext.allowPrivilegeEscalation=false)"
    )


def _restricted_capabilities(spec: JsonDict) -> str | None:
    undropped, adding, caps = [], [], []
    for container in _containers(spec):
        drop = (_context(container).get("capabilities") or {}).get("drop") or ()
        if "ALL" not in drop:
            undropped.append(container.get("name", ""))
        extra = [c for c in _added(container) if c != "NET_BIND_SERVICE"]
        if extra:
            adding.append(container.get("name", ""))
            caps += [c for c in extra if c not in caps]
    details = []
    if undropped:
        details.append(
            f'{_names("container", undropped)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        quoted = ", ".join(f'"{c}"' for c in caps)
        details.append(
            f"{_names('container', adding)} must not include {quoted} in "
            "securityContext.capabilities.add"
        )
    return f"unrestricted capabilities ({'; '.join(details)})" if details else None


def _pod_or_containers(
    spec: JsonDict, ok: Callable[[JsonDict], bool | None], title: str, field: str
) -> str | None:
    """A setting the pod makes for all containers unless a container says otherwise."""
    pod_value = ok(spec.get("securityContext") or {})
    if pod_value is False:
        return f"{title} (pod must not set {field})"
    bad = []
    for container in _containers(spec):
        value = ok(_context(container))
        if value is False or (value is None and not pod_value):
            bad.append(container.get("name", ""))
    if not bad:
        return None
    return f"{title} (pod or {_names('container', bad)} must set {field})"


def _non_root(context: JsonDict) -> bool | None:
    value = context.get("runAsNonRoot")
    return None if value is None else bool(value)


def _seccomp(context: JsonDict) -> bool | None:
    profile = context.get("seccompProfile")
    if not isinstance(profile, dict) or "type" not in profile:
        return None
    return profile["type"] in ("RuntimeDefault", "Localhost")


def _run_as_non_root(spec: JsonDict) -> str | None:
    return _pod_or_containers(
        spec, _non_root, "runAsNonRoot != true", "securityContext.runAsNonRoot=true"
    )


def _seccomp_profile(spec: JsonDict) -> str | None:
    return _pod_or_containers(
        spec,
        _seccomp,
        "seccompProfile",
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
    )


_Check = Callable[[JsonDict], "str | None"]
_BASELINE: tuple[_Check, ...] = (
    _privileged,
    _host_namespaces,
    _host_path,
    _host_ports,
    _baseline_capabilities,
)
_RESTRICTED: tuple[_Check, ...] = (
    *_BASELINE,
    _volume_types,
    _escalation,
    _restricted_capabilities,
    _run_as_non_root,
    _seccomp_profile,
)


def violations(level: str, spec: JsonDict) -> list[str]:
    """The failed checks of ``level`` for a pod ``spec``, in upstream's words."""
    checks = {"baseline": _BASELINE, "restricted": _RESTRICTED}.get(level, ())
    return [found for check in checks if (found := check(spec)) is not None]


def check_pod(policy: Policy, name: str, spec: JsonDict, *, workload: bool) -> list[str]:
    """Admit a pod (``workload`` False) or a Job's template: the warnings to send.

    Raises 403 when a pod violates the enforce level."""
    enforced = violations(policy.modes["enforce"][0], spec)
    if enforced and not workload:
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: violates PodSecurity '
            f'"{policy.describe("enforce")}": {", ".join(enforced)}',
            name=name,
            resource="pods",
        )
    warnings = []
    modes = ("enforce", "warn") if workload else ("warn",)
    for mode in modes:
        if mode == "warn" and workload and policy.modes["warn"] == policy.modes["enforce"]:
            continue
        found = violations(policy.modes[mode][0], spec)
        if found:
            warnings.append(
                f'would violate PodSecurity "{policy.describe(mode)}": {", ".join(found)}'
            )
    return warnings


def admit(namespace: JsonDict, resource: str, name: str, obj: JsonDict) -> list[str]:
    """Admit a new pod or Job in ``namespace``: the warnings to send (raises 403)."""
    policy = policy_of(namespace)
    if resource == "pods":
        return check_pod(policy, name, obj.get("spec") or {}, workload=False)
    template = (obj.get("spec") or {}).get("template") or {}
    return check_pod(policy, name, template.get("spec") or {}, workload=True)
