"""zwmd.zenml (being built)."""
