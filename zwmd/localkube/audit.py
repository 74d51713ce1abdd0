"""The audit trail: every API request localkube served, as the apiserver's audit log has it.

Modelled on the ``audit.k8s.io/v1`` ``Event`` at level ``Metadata``, stage
``ResponseComplete``: the verb as RBAC names it (``get``, ``list``, ``watch``,
``create``, ``update``, ``patch``, ``delete``, ``deletecollection``), the object
reference (resource, subresource, namespace, name), the request URI with its query, and
the response code, and who asked (``user.username``). Request and response bodies are not
kept (the apiserver's ``Metadata`` level does not keep them either, and they may hold
Secrets), unless the log's ``level`` is ``Request``: then the body of every create,
update and patch is kept too (``requestObject``, as upstream's ``Request`` level does),
for tests that check what a client writes.

Design notes:

- What a client asked for, not what it meant: tests read the trail to check how a
  client talks to Kubernetes (which verbs on which resources, which selectors), as an
  operator would read a real cluster's audit log.
- In memory, the last ``size`` events (a ring); ``GET /localkube/audit`` serves them to
  a client in another process, oldest first.
- Discovery and fault-control requests are not API requests and are not recorded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AuditEvent", "AuditLog"]


@dataclass(frozen=True)
class AuditEvent:
    """One served API request."""

    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    request_uri: str
    code: int
    user: str = ""  # the authenticated user's name (``system:serviceaccount:ns:name``)
    request_object: Any = None  # the write's body, at level ``Request`` only

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    """The last ``size`` API requests served, oldest first."""

    def __init__(self, size: int = 100_000, *, level: str = "Metadata") -> None:
        self._events: deque[AuditEvent] = deque(maxlen=size)
        self.level = level  # "Metadata", or "Request" to keep the bodies of writes

    def record(self, event: AuditEvent) -> None:
        self._events.append(event)

    def events(self) -> list[AuditEvent]:
        return list(self._events)

    def clear(self) -> None:
        self._events.clear()
