"""The attempt number: which attempt of a workload id the next request or message joins.

ZenML reuses a workload id when it resumes a run, and asks for the image build and the
run under the same id. Each *attempt* has a log of its own (the log store's key is the
id and the attempt), so every caller must agree on the number. This is the one rule:

- A workload zwmd knows (active, finished lately, or read back from its Job):
  while it is not terminal, requests join its attempt. A build that succeeded leaves its
  attempt open for the run that follows it (its notes and the runner's lines form one
  stream). Any other terminal workload is done: the next request starts ``attempt + 1``.
- An id zwmd does not know (its Job is gone, the daemon restarted): the log store says.
  No attempt stored: the first. The latest attempt still open (its log not closed: a
  build succeeded, or only messages arrived): that one. Closed: the one after it.
- A message (ZenML's ``log()``) for a known workload goes to that workload's attempt,
  even after it ended ("Run succeeded." belongs to the run); for an unknown id it goes
  where the next request will go.
"""

from __future__ import annotations

from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.logs.store import LogKey, LogStore
from zwmd.states import State

__all__ = ["FIRST_ATTEMPT", "message_attempt", "next_attempt"]

FIRST_ATTEMPT = 1


async def next_attempt(store: LogStore, workload_id: str, known: Workload | None) -> int:
    """The attempt that a new build or run request under ``workload_id`` belongs to."""
    if known is not None:
        if not known.is_terminal:
            return known.attempt
        if known.kind == naming.KIND_BUILDER and known.state is State.SUCCEEDED:
            return known.attempt
        return known.attempt + 1
    attempts = await store.attempts(workload_id)
    if not attempts:
        return FIRST_ATTEMPT
    last = max(attempts)
    checkpoint = await store.checkpoint(LogKey(workload_id, last))
    return last + 1 if checkpoint is not None and checkpoint.closed else last


async def message_attempt(store: LogStore, workload_id: str, known: Workload | None) -> int:
    """The attempt that a message posted for ``workload_id`` belongs to."""
    if known is not None:
        return known.attempt
    return await next_attempt(store, workload_id, None)
