"""zwmd.hookspecs (being built)."""
