"""What the daemon's requests and streams say about reaching the apiserver right now.

Responsibility: :class:`Connectivity` keeps the troubles that timeouts reveal (a request
that got no answer in time, a stream that went silent for its inactivity timeout) until
the same thing works again, and says why the daemon is not ready while any remains.

Design notes:

- A silent partition breaks no connection: old connections stop moving bytes, no RST
  arrives, and new connections may well work. Only a timeout shows it, and only to the
  caller that waited. So every timeout is noted here by who saw it, and the readiness
  probe reads the notes (an attribute read, no I/O).
- A trouble lasts until it is shown to be over, by the same party: a request timed out →
  until a request is answered (any HTTP status: the apiserver answered); a stream
  stalled → until that stream (the same watch, the same pod's log) is opened again and
  answered, or any request is answered after it. So ``/readyz`` is 503 from the moment
  a stall is seen until the daemon has got through again: at once when new connections
  work, for as long as the partition lasts when they do not.
- What counts as a stall: a request or a stream's headers that do not come in time, and
  a watch that is silent for its inactivity timeout (the apiserver sends bookmarks while
  nothing changes). A pod log that is silent is no evidence: a container may print
  nothing for hours, so its follower renews the stream without a word here.
- Keys are the stream's own words (``watch jobs``, ``log of pod p``): they name pods, so
  they go to the probe's detail and the daemon's log, never to a metric label.
- Connection errors (refused, reset, 5xx) are the watches' ``reachable``, not this.
"""

from __future__ import annotations

import time

__all__ = ["Connectivity"]

_REQUESTS = "requests"


class Connectivity:
    """Timeouts seen and not yet shown to be over, by who saw them."""

    def __init__(self) -> None:
        self._troubles: dict[str, tuple[float, str]] = {}

    def request_timed_out(self, what: str, seconds: float) -> None:
        """A request (``what``: its method and resource) got no answer in ``seconds``."""
        self._troubles[_REQUESTS] = (
            time.monotonic(),
            f"a Kubernetes request ({what}) got no answer in {seconds:g}s",
        )

    def stream_stalled(self, stream: str, seconds: float) -> None:
        """``stream`` (``watch jobs``, ``log of pod p``) moved no byte for ``seconds``."""
        self._troubles[stream] = (time.monotonic(), f"the {stream} stream stalled ({seconds:g}s)")

    def answered(self, stream: str | None = None) -> None:
        """A request was answered (opening ``stream``, if it is one): that works again."""
        if self._troubles:
            self._troubles.pop(_REQUESTS, None)
            if stream is not None:
                self._troubles.pop(stream, None)

    def problem(self) -> str | None:
        """Why the apiserver cannot be relied on now (the oldest trouble), or None."""
        if not self._troubles:
            return None
        since, reason = min(self._troubles.values())
        return f"{reason}, {time.monotonic() - since:.0f}s ago, and has not recovered"
