"""Exponential backoff with jitter, honouring ``Retry-After``: the one retry rule.

Every loop that asks something again after a failure (the watch loop, the reconciler's
per-key retries, the HTTP client's retries) takes its delay from a :class:`Backoff`.

Design notes:

- The base delay doubles from ``initial`` up to ``maximum`` with each failure and goes
  back to nothing after a success (:meth:`Backoff.reset`).
- The delay used is a random share (50 % to 100 %) of the base ("equal jitter"), so
  many clients that failed together do not come back together: an apiserver that shed
  load with 429 is not hit again by all of them in the same second.
- A ``Retry-After`` the server sent is a floor: the delay is never shorter than what
  the server asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """The delays of one retry loop (one instance per loop, or per retried key)."""

    initial: float = 0.5
    maximum: float = 30.0
    base: float = 0.0  # the current base delay (0: no failure since the last success)
    failures: int = 0  # consecutive failures since the last success

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"need 0 < initial <= maximum, not {self.initial}, {self.maximum}")

    def next(self, retry_after: float | None = None) -> float:
        """One more failure: the seconds to wait before the next try."""
        self.failures += 1
        self.base = min(self.maximum, max(self.initial, self.base * 2))
        delay = self.base * random.uniform(0.5, 1.0)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return delay

    def reset(self) -> None:
        """A success: the next failure starts from ``initial`` again."""
        self.base = 0.0
        self.failures = 0
