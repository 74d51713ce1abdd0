"""zwmd.build."""
