"""zwmd.logs."""
