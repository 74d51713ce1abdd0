"""Tokens that expire, fetched again shortly before they do: for plugins' registry credentials.

Design notes:

- :class:`ExpiringToken` keeps one value and the time it expires; :meth:`get` fetches
  again once ``refresh_margin`` (or half the remaining lifetime, when that is shorter)
  before expiry, so a token is never handed out about to die.
- A token that arrives already expired (moto's ECR tokens say 2015) is used and kept
  for ``minimum_ttl``: a clock or a server that disagrees with us must never make every
  call fetch again.
- The clock and the fetch function are parameters, so the refresh rules are tested
  without waiting and without real credentials.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ExpiringToken", "Fetched"]

T = TypeVar("T")


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """A fetched value and when it expires (seconds since the epoch)."""

    value: T
    expires_at: float


class ExpiringToken(Generic[T]):
    """One value from ``fetch``, refreshed before it expires.

    :param fetch: returns a :class:`Fetched` value.
    :param refresh_margin: refresh this many seconds before expiry (at most half the
        lifetime left when fetched).
    :param minimum_ttl: keep any value at least this long.
    :param clock: seconds since the epoch.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Fetched[T]]],
        *,
        refresh_margin: float = 900.0,
        minimum_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetch = fetch
        self.refresh_margin = refresh_margin
        self.minimum_ttl = minimum_ttl
        self.clock = clock
        self.fetches = 0
        self._current: Fetched[T] | None = None
        self._refresh_at = 0.0

    @property
    def refresh_at(self) -> float:
        """When the next :meth:`get` fetches again (0 before the first)."""
        return self._refresh_at

    async def get(self) -> Fetched[T]:
        """The current value, fetched again when it is due."""
        now = self.clock()
        if self._current is not None and now < self._refresh_at:
            return self._current
        fetched = await self.fetch()
        self.fetches += 1
        now = self.clock()
        left = fetched.expires_at - now
        margin = min(self.refresh_margin, left / 2)
        self._refresh_at = max(now + self.minimum_ttl, fetched.expires_at - margin)
        self._current = fetched
        return fetched

    def forget(self) -> None:
        """Drop the value (e.g. the registry refused it): the next get fetches."""
        self._current = None
        self._refresh_at = 0.0
