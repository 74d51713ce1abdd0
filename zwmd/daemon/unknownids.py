"""The budget of log messages posted for ids that no workload has (yet).

Design notes:

- ZenML posts a message ("Starting pipeline run.") before it asks for the run, so the
  API must take messages for an id it has never seen; each such id becomes a directory
  or prefix in the log store. Without a bound, anyone with the token could fill the disk
  with ids that never run. :class:`UnknownIds` bounds what is kept for them: at most
  ``ApiLimits.unknown_ids`` distinct ids at once, at most ``unknown_id_bytes`` of
  messages for each. Beyond that a message is refused (429 with ``Retry-After``: it
  passes once a run makes the id known, or the daemon restarts), and nothing is written.
- An id leaves the budget when a run or build is submitted under it; messages for ids
  that some workload has are bounded only by the size of one message. The budget lives
  in memory: a restarted daemon starts with an empty one (what was kept stays stored).
- A message is reserved before it is written and given back if the write fails, so two
  messages posted at once cannot both take the last place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from zwmd.api import ApiLimits, Refused

__all__ = ["UnknownIds"]

_RETRY_SECONDS = 30


class UnknownIds:
    """What is kept for ids without a workload: bytes per id, at most ``unknown_ids`` ids."""

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self._bytes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._bytes)

    @contextmanager
    def reserve(self, workload_id: str, size: int) -> Iterator[None]:
        """Count ``size`` bytes for ``workload_id`` while the block writes them; raise
        :class:`~zwmd.api.Refused` (429) when the id or the count of ids is over budget."""
        kept = self._bytes.get(workload_id)
        if kept is None and len(self._bytes) >= self.limits.unknown_ids:
            raise Refused(
                429,
                "workload_id",
                f"messages are kept for {len(self._bytes)} ids that no workload has, the most "
                f"ZWMD_UNKNOWN_LOG_IDS allows; submit the run first, or post again later",
                retry_after=_RETRY_SECONDS,
            )
        if (kept or 0) + size > self.limits.unknown_id_bytes:
            raise Refused(
                429,
                "message",
                f"{kept or 0} bytes of messages are kept for {workload_id!r}, which no "
                f"workload has; this one would pass ZWMD_UNKNOWN_LOG_BYTES "
                f"({self.limits.unknown_id_bytes}); submit the run first",
                retry_after=_RETRY_SECONDS,
            )
        self._bytes[workload_id] = (kept or 0) + size
        try:
            yield
        except BaseException:
            if workload_id in self._bytes:  # not forgotten meanwhile
                left = self._bytes[workload_id] - size
                if left > 0 or kept is not None:
                    self._bytes[workload_id] = max(0, left)
                else:
                    del self._bytes[workload_id]
            raise

    def forget(self, workload_id: str) -> None:
        """A workload now has this id: its messages no longer count here."""
        self._bytes.pop(workload_id, None)
