"""zwmd.plugins (being built)."""
