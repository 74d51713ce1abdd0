"""zwmd-gcp: the `gcp` implementation for zwmd (Artifact Registry/GCR credentials, GCS log storage)."""

__version__ = "0.1.0"
