"""Names, labels and annotations that zwmd puts on the Kubernetes objects it owns.

Kubernetes is zwmd's only database, so these keys are its schema: labels select and
identify (workload id, kind), annotations carry the state machine's record (state,
reason, message, aliases, timestamps, checkpoints). Names are deterministic, so a
retried create answers 409 instead of making a duplicate.
"""

from __future__ import annotations

import hashlib
import uuid

DOMAIN = "zwmd.io"

# labels
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "zwmd"
LABEL_WORKLOAD_ID = f"{DOMAIN}/workload-id"
LABEL_KIND = f"{DOMAIN}/kind"  # "runner" or "builder"
KIND_RUNNER = "runner"
KIND_BUILDER = "builder"

# annotations (the workload record)
ANN_STATE = f"{DOMAIN}/state"
ANN_REASON = f"{DOMAIN}/reason"
ANN_MESSAGE = f"{DOMAIN}/message"
ANN_ALIASES = f"{DOMAIN}/aliases"  # JSON list of strings
ANN_SPEC_HASH = f"{DOMAIN}/spec-hash"
ANN_IMAGE = f"{DOMAIN}/image"
ANN_SUBMITTED_AT = f"{DOMAIN}/submitted-at"  # RFC 3339, orders the queue
ANN_STARTED_AT = f"{DOMAIN}/started-at"
ANN_FINISHED_AT = f"{DOMAIN}/finished-at"
ANN_ATTEMPT = f"{DOMAIN}/attempt"
ANN_REQUEST_KEY = f"{DOMAIN}/request-key"  # the run request's Idempotency-Key, if any
ANN_LOGS_FLUSHED = f"{DOMAIN}/logs-flushed"

SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def job_name(workload_id: uuid.UUID | str, kind: str = KIND_RUNNER) -> str:
    """The Job name for a workload: deterministic, DNS-1123, at most 63 characters."""
    return f"zwmd-{kind}-{uuid.UUID(str(workload_id)).hex}"


def secret_name(job: str) -> str:
    """The name of the Secret that carries a Job's environment."""
    return f"{job}-env"


def builder_job_name(image: str) -> str:
    """The builder Job for one full image name: equal images share one Job."""
    return f"zwmd-{KIND_BUILDER}-{hashlib.sha256(image.encode()).hexdigest()[:32]}"
