"""zwmd.kube."""
