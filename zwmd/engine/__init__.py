"""zwmd.engine."""
