"""Tests of zwmd.logs: framing, the file store, merging and de-duplication."""
