"""Run with the zenml venv's python: what the adapter reads from a server's store (mode 3).

Opens the SQL store named by ``ZENML_STORE_URL`` the way the server does, then prints,
for each ``ID:KIND`` argument (KIND ``snapshot``, ``run`` or ``-`` for unknown), the
images ``zwmd.zenml.WorkloadManager.candidate_images`` finds, as one JSON object.
"""

from __future__ import annotations

import json
import sys

from zenml.zen_server.utils import initialize_zen_store

from zwmd.zenml import WorkloadManager


def main(pairs: list[str]) -> None:
    initialize_zen_store()
    manager = WorkloadManager()
    found = {}
    for pair in pairs:
        workload_id, _, kind = pair.partition(":")
        found[pair] = manager.candidate_images(workload_id, None if kind == "-" else kind)
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1:])
