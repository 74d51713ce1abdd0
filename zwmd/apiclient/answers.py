"""What the daemon answers, as the client hands it on: a :class:`Workload`, or an error.

:class:`DaemonUnreachable` (nothing answered, or the connection broke),
:class:`DaemonTimeout` (it did not answer in time) and :class:`ApiError` (it answered
with an HTTP error and a ``detail``) share the base :class:`ZwmdError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class ZwmdError(Exception):
    """Base of the errors raised by this client."""


class DaemonUnreachable(ZwmdError):
    """No daemon answered at the configured address, or the connection broke."""


class DaemonTimeout(ZwmdError):
    """The daemon accepted the connection but did not answer in time."""


class ApiError(ZwmdError):
    """The daemon answered with an HTTP error; ``detail`` is its explanation."""

    def __init__(self, status: int, detail: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method else ""
        hint = ""
        if status == 401:
            hint = " — check ZWMD_API_TOKEN / ZWMD_API_TOKEN_FILE against the daemon's token"
        super().__init__(f"zwmd answered {status}{where}: {detail}{hint}")


@dataclass(frozen=True)
class Workload:
    """A workload as the daemon reports it; ``raw`` keeps every field it sent.

    ``kind`` is ``runner`` or ``builder`` and ``attempt`` counts reuses of the id, when
    the daemon says so.
    """

    id: str
    state: str
    reason: str | None = None
    message: str | None = None
    image: str | None = None
    job_name: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    aliases: tuple[str, ...] = ()
    kind: str | None = None
    attempt: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Workload:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            id=str(data.get("id", "")),
            state=str(data.get("state", "")),
            reason=text("reason"),
            message=text("message"),
            image=text("image"),
            job_name=text("job_name"),
            created_at=text("created_at"),
            started_at=text("started_at"),
            finished_at=text("finished_at"),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
            kind=text("kind"),
            attempt=int(data["attempt"]) if isinstance(data.get("attempt"), int) else None,
            raw=dict(data),
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    def describe(self) -> str:
        """One line for an error message: state, reason and the daemon's message."""
        parts = [f"workload {self.id} {self.state}"]
        if self.reason:
            parts.append(self.reason)
        if self.message:
            parts.append(self.message)
        return ": ".join(parts)
