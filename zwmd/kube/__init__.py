"""zwmd.kube: the Kubernetes side of zwmd, speaking plain dicts.

- :mod:`zwmd.kube.client` -- the namespaced calls zwmd makes, over kubernetes-asyncio's
  transport, without model objects.
- :mod:`zwmd.kube.watching` -- one list+watch per kind (bookmarks, 410, backoff).
- :mod:`zwmd.kube.naming` -- labels, annotations and deterministic names: zwmd's schema.
- :mod:`zwmd.kube.jobs` -- the runner Job and its environment Secret.
- :mod:`zwmd.kube.instrumentation` -- request counts and latencies for metrics.
"""
