"""zwmd.client (being built)."""
