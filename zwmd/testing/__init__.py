"""zwmd.testing: what zwmd's tests and plugin authors' tests share.

- :mod:`zwmd.testing.pytest_plugin` -- pytest fixtures (``localkube``, ``kube_namespace``,
  ``kube_api_client``), installed as the ``zwmd`` pytest plugin.
- :mod:`zwmd.testing.memorybackend` -- an in-memory object-store backend with an outage
  switch, for log store tests.
- :mod:`zwmd.testing.logstore_checks` -- what a log store plugin must show against its
  own emulator (read-back, follow, an outage), and a daemon end to end with its store.
"""
