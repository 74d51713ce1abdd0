"""zwmd.testing."""
