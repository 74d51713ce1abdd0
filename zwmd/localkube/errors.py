"""API errors as a Kubernetes apiserver reports them: an HTTP code and a ``Status`` body.

Design notes:

* One exception type, :class:`ApiError`, carries the code, the machine-readable reason
  and the human message; :meth:`ApiError.status` renders the ``kind: Status`` body that
  kubernetes-asyncio turns into ``ApiException``. Constructors for the common cases
  (:func:`not_found`, :func:`already_exists`, :func:`conflict`, :func:`invalid`, ...) keep
  the wording identical to a real server's, which clients and humans grep for.
* ``group`` and ``kind`` in ``details`` use the resource's plural and group, as the
  apiserver does (``"kind": "jobs"``, ``"group": "batch"``).
"""

from __future__ import annotations

from typing import Any

from zwmd.localkube.resources import group_of

JsonDict = dict[str, Any]


def qualified(resource: str) -> str:
    """``jobs.batch`` for grouped resources, ``pods`` for the core group."""
    group = group_of(resource)
    return f"{resource}.{group}" if group else resource


class ApiError(Exception):
    """An error answered with ``code`` and a ``Status`` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        resource: str | None = None,
        causes: list[JsonDict] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.name = name
        self.resource = resource
        self.causes = causes
        self.retry_after = retry_after

    def status(self) -> JsonDict:
        body: JsonDict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: JsonDict = {}
        if self.name is not None:
            details["name"] = self.name
        if self.resource is not None:
            group = group_of(self.resource)
            if group:
                details["group"] = group
            details["kind"] = self.resource
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified(resource)} "{name}" not found', name=name, resource=resource
    )


def already_exists(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource)} "{name}" already exists',
        name=name,
        resource=resource,
    )


def conflict(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        name=name,
        resource=resource,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def invalid(kind: str, resource: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 for an object a real apiserver would reject; causes are (field, reason, message)."""
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {summary}'
        if not group_of(resource)
        else f'{kind}.{group_of(resource)} "{name}" is invalid: {summary}',
        name=name,
        resource=resource,
        causes=[
            {"reason": reason, "message": message, "field": field}
            for field, reason, message in causes
        ],
    )
