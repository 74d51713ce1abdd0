"""Variables that carry one of zwmd's prefixes but that nothing in zwmd reads.

Such a variable is nearly always a misspelling (``..._NAMSPACE``) or a setting of
another version, and ignoring it would run the daemon with a default the operator did
not choose. So :func:`unknown_variables` makes each one a problem of its own, with the
nearest known name when there is a close one, and ``zwmd config``, ``zwmd doctor`` and
``zwmd serve`` refuse it alike (exit 2).

Design notes:

- The prefixes are those of the seeds' variables and zwmd's own (:data:`PREFIXES`).
  ``ZENML_SERVER_*`` is the ZenML server's namespace, shared with a server whose other
  variables zwmd does not read, so it is not checked.
- The known names are every variable of a :class:`~zwmd.settings.Settings` field, plus
  :data:`READ_ELSEWHERE`: the few zwmd reads outside its settings (the CLI's client,
  plugin blocking). A test checks that list against the modules that read them.
- ``ZWMD_TEST_*`` is reserved for zwmd's own test suite and never flagged.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from zwmd.settings.resolving import Problem

__all__ = ["PREFIXES", "READ_ELSEWHERE", "unknown_variables"]

PREFIXES: tuple[str, ...] = (
    "ZENML_KUBERNETES_WORKLOAD_MANAGER_",
    "ZENML_AWS_KUBERNETES_WORKLOAD_MANAGER_",
    "ZENML_GCP_KUBERNETES_WORKLOAD_MANAGER_",
    "ZWMD_",
)
RESERVED_PREFIX = "ZWMD_TEST_"

#: variables zwmd reads outside its settings, and who reads them
READ_ELSEWHERE: Mapping[str, str] = {
    "ZWMD_URL": "zwmd.apiclient (the CLI's client)",
    "ZWMD_CLIENT_TIMEOUT": "zwmd.apiclient (the CLI's client)",
    "ZWMD_CLIENT_RETRY_SECONDS": "zwmd.apiclient (the CLI's client)",
    "ZWMD_DISABLE_PLUGINS": "zwmd.plugins",
}


def unknown_variables(environ: Mapping[str, object], known: Iterable[str]) -> list[Problem]:
    """A problem for each variable with a zwmd prefix that is not in ``known``."""
    names = set(known) | set(READ_ELSEWHERE)
    problems = []
    for variable in sorted(environ):
        if not variable.startswith(PREFIXES) or variable.startswith(RESERVED_PREFIX):
            continue
        if variable in names:
            continue
        # case counts in a name (``ZWMD_Api_Port`` is not read), not in a suggestion
        by_upper = {name.upper(): name for name in names}
        nearest = [
            by_upper[match]
            for match in difflib.get_close_matches(variable.upper(), by_upper, n=1, cutoff=0.8)
        ]
        fault = "is not a variable zwmd reads"
        fault += f"; did you mean {nearest[0]}?" if nearest else "; unset it"
        problems.append(Problem(variable, fault, ""))
    return problems
