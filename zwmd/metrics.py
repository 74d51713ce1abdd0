"""zwmd.metrics (being built)."""
