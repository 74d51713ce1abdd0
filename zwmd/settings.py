"""zwmd.settings (being built)."""
