"""Which Kubernetes versions zwmd supports, and what a given server lacks.

Responsibility: read the apiserver's ``/version`` answer into ``(major, minor)`` and say,
in an operator's words, why zwmd cannot work against it.

Design notes:

- **1.24 is the oldest supported version**: zwmd admits work by creating Jobs suspended
  and un-suspending them (``spec.suspend``), which is generally available from 1.24. Older
  servers would run every Job at once, past the concurrency limit.
- **1.34 is the newest tested**: newer servers are expected to work (zwmd uses only
  ``batch/v1`` and ``v1``), so they get a note, not a refusal.
- **A pod failure policy needs 1.26**: ``spec.podFailurePolicy`` is enabled by default
  from 1.26. Older servers drop the field without an error or a warning (1.24 does not
  know it, 1.25 has its feature gate off), so a configured policy would be ignored: that
  is refused, not left to chance.
- Managed clusters report minors such as ``"27+"``; the digits are the version.
- zwmd's pod lookups do not depend on the version (owner references and zwmd's own
  labels; see :mod:`zwmd.kube.informer`), nor do its Job conditions (FailureTarget before
  Failed from 1.31, Failed directly before).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "NEWEST_TESTED",
    "OLDEST_SUPPORTED",
    "POD_FAILURE_POLICY_SINCE",
    "UnsupportedCluster",
    "note",
    "problems",
    "server_version",
]

Version = tuple[int, int]

OLDEST_SUPPORTED: Version = (1, 24)
NEWEST_TESTED: Version = (1, 34)
POD_FAILURE_POLICY_SINCE: Version = (1, 26)

_DIGITS = re.compile(r"\d+")


class UnsupportedCluster(Exception):
    """The apiserver is a version zwmd cannot work with, as configured (the message says
    why and what to do)."""


def _text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def server_version(answer: Mapping[str, Any]) -> Version | None:
    """``(major, minor)`` of a ``/version`` answer, or None when it says neither."""
    major = _DIGITS.search(str(answer.get("major") or ""))
    minor = _DIGITS.search(str(answer.get("minor") or ""))
    if major and minor:
        return int(major.group()), int(minor.group())
    found = re.match(r"v?(\d+)\.(\d+)", str(answer.get("gitVersion") or ""))
    return (int(found.group(1)), int(found.group(2))) if found else None


def problems(version: Version, *, pod_failure_policy: bool) -> list[str]:
    """Why zwmd, configured with or without a pod failure policy, cannot use ``version``."""
    found = []
    if version < OLDEST_SUPPORTED:
        found.append(
            f"Kubernetes {_text(version)} is older than zwmd supports "
            f"({_text(OLDEST_SUPPORTED)} or later: zwmd queues work in suspended Jobs, "
            f"generally available from {_text(OLDEST_SUPPORTED)})"
        )
    elif pod_failure_policy and version < POD_FAILURE_POLICY_SINCE:
        found.append(
            f"ZENML_KUBERNETES_WORKLOAD_MANAGER_POD_FAILURE_POLICY needs Kubernetes "
            f"{_text(POD_FAILURE_POLICY_SINCE)} or later: Kubernetes {_text(version)} "
            "drops a Job's podFailurePolicy without an error, so the policy would be "
            "ignored; unset it or upgrade the cluster"
        )
    return found


def note(version: Version) -> str:
    """A remark on a supported version (empty when there is nothing to say)."""
    if version > NEWEST_TESTED:
        return f"newer than zwmd is tested against ({_text(NEWEST_TESTED)})"
    return ""
