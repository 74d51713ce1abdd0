"""zwmd.localkube."""
