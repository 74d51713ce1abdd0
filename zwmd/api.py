"""zwmd.api (being built)."""
