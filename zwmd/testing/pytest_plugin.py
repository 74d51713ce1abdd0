"""pytest fixtures for zwmd and its plugin authors (entry point ``pytest11``).

Filled in by the localkube work: a running localkube, its kubeconfig, an ApiClient.
"""
