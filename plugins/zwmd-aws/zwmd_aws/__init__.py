"""zwmd-aws: the `aws` implementation for zwmd (ECR credentials and image checks, S3 log storage)."""

__version__ = "0.1.0"
