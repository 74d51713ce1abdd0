"""The Kubernetes release the daemon's tests run against.

``ZWMD_TEST_KUBERNETES_VERSION`` (default: the newest localkube models) is passed to every
localkube the daemon, engine, image, log and client tests start; CI runs them once more
with the oldest release zwmd supports. A test of a feature the release lacks is skipped
with :data:`needs_pod_failure_policy`, saying so, rather than bent to pass.
"""

from __future__ import annotations

import os

import pytest

from zwmd.kube.cluster_version import POD_FAILURE_POLICY_SINCE
from zwmd.localkube.versions import NEWEST, KubernetesVersion

KUBERNETES_VERSION = KubernetesVersion.parse(
    os.environ.get("ZWMD_TEST_KUBERNETES_VERSION") or str(NEWEST)
)

needs_pod_failure_policy = pytest.mark.skipif(
    (KUBERNETES_VERSION.major, KUBERNETES_VERSION.minor) < POD_FAILURE_POLICY_SINCE,
    reason=f"Kubernetes {KUBERNETES_VERSION} has no pod failure policy (1.26+)",
)
