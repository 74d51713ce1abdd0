"""zwmd.daemon (being built)."""
