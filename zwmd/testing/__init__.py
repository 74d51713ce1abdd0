"""zwmd.testing: what zwmd's tests and plugin authors' tests share.

- :mod:`zwmd.testing.pytest_plugin` -- pytest fixtures (``localkube``, ``kube_namespace``,
  ``kube_api_client``), installed as the ``zwmd`` pytest plugin.
- :mod:`zwmd.testing.memorybackend` -- an in-memory object-store backend with an outage
  switch, for log store tests.
"""
