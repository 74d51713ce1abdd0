"""Tests of the pure core of zwmd.engine: states, reasons, records, admission."""
