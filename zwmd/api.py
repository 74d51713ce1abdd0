"""The daemon's HTTP API (FastAPI), as the ZenML adapter and the ``zwmd`` CLI use it.

Design notes:

- The API is a thin translation: it validates the request body (pydantic, so a 422
  ``detail`` names the field), asks the :class:`Operations` behind it, and renders the
  workload as :meth:`zwmd.engine.workload.Workload.to_api` defines it. It owns no state.
- Authentication: a bearer token on TCP. ``/healthz``, ``/readyz`` and ``/metrics`` need
  none (probes and scrapers); :func:`create_probe_app` serves only those three, for the
  metrics listener that kubelets and Prometheus reach from other hosts. Over a Unix socket (created 0600 by the daemon) the file
  permissions are the authentication, and no token is asked.
- Ids: a run is submitted under a UUID; everywhere else an id may also be an alias (the
  ``--run_id``/``--snapshot_id`` values from the run's arguments), because ZenML asks for
  logs by any of the three.
- A request the Kubernetes API could not serve is never a bare 500: throttling, server
  errors and an unreachable apiserver answer 503 with ``Retry-After`` (send it again: runs
  are idempotent by workload id); other refusals answer 502 with Kubernetes' words. So
  is a log store that cannot say which attempts of an id exist (503).
- Input is bounded (:class:`ApiLimits`) before it costs memory, disk or a write to
  Kubernetes: a body over ``ZWMD_API_MAX_BODY_BYTES`` is 413 before it is read
  (:class:`BodyLimit`, in front of the app); a run whose Job or Secret Kubernetes would
  refuse is 422 naming the field (:mod:`zwmd.kube.sizes`); an id the log store cannot
  hold is 422 where it would be written and 404 where it is read; log messages for ids
  no workload has are bounded by the daemon (:class:`Refused`, 413 or 429).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zwmd import __version__
from zwmd.kube.client import KubeError
from zwmd.kube.sizes import ObjectTooLarge
from zwmd.logs.store import InvalidKey, StoreUnavailable

log = logging.getLogger(__name__)

STORE_RETRY_AFTER_SECONDS = 2  # a log store that could not answer: ask again after
UNAVAILABLE_RETRY_AFTER_SECONDS = 5  # zwmd cannot follow workloads (a refused watch)

INT64_MAX = 2**63 - 1  # Kubernetes' integers (activeDeadlineSeconds) are int64


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be Unicode text that UTF-8 can encode (no lone surrogate)") from None
    return text


def _printable(part: object) -> object:
    if isinstance(part, str):
        return part.encode("utf-8", "backslashreplace").decode("utf-8")
    return part


#: A request string: JSON may escape a lone surrogate (``"\ud800"``), which nothing
#: downstream (Kubernetes, the log store) can write; refused as 422 naming the field.
Text = Annotated[str, AfterValidator(_encodable)]


class RunRequest(BaseModel):
    """A runner container to run: ``POST /v1/workloads/{id}/run``."""

    model_config = ConfigDict(extra="forbid")

    image: Text = Field(
        default="",
        description="the runner image; required unless the daemon runs in local mode "
        "(zwmd serve --local), where the process kubelet ignores images",
    )
    command: list[Text] = Field(default_factory=list)
    arguments: list[Text] = Field(default_factory=list)
    environment: dict[Text, Text] = Field(default_factory=dict, description="secret: never shown")
    timeout_seconds: int = Field(
        default=0, ge=0, le=INT64_MAX, description="the Job's deadline; 0 = none"
    )


class BuildRequest(BaseModel):
    """A runner image to provide: ``POST /v1/workloads/{id}/build``."""

    model_config = ConfigDict(extra="forbid")

    workload_type: Literal["snapshot", "run"] | None = None
    dockerfile: Text = ""
    image_name: Text = Field(min_length=1)
    timeout_seconds: int = Field(default=0, ge=0, le=INT64_MAX)
    reuse_images: dict[Text, Text] = Field(default_factory=dict)


class LogMessage(BaseModel):
    """A message for a workload's log stream: ``POST /v1/workloads/{id}/logs``."""

    model_config = ConfigDict(extra="forbid")

    message: Text
    level: Literal["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"] = "INFO"


@dataclass(frozen=True)
class ApiLimits:
    """How much one request may bring (the ``ZWMD_API_*`` and ``ZWMD_*_LOG_*`` settings).

    :param body_bytes: a request body (``ZWMD_API_MAX_BODY_BYTES``).
    :param message_bytes: one posted log message, UTF-8 (``ZWMD_LOG_MESSAGE_MAX_BYTES``).
    :param unknown_ids: ids no workload has whose messages are kept (``ZWMD_UNKNOWN_LOG_IDS``).
    :param unknown_id_bytes: the messages kept for one such id (``ZWMD_UNKNOWN_LOG_BYTES``).
    """

    body_bytes: int = 4 * 1024 * 1024
    message_bytes: int = 64 * 1024
    unknown_ids: int = 1000
    unknown_id_bytes: int = 1024 * 1024


class Refused(Exception):
    """A request zwmd does not take as it is: ``status`` (413, 429), naming ``field``."""

    def __init__(
        self, status: int, field: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.message = status, field, message
        self.retry_after = retry_after


class Invalid(Exception):
    """A request body that is well formed but that this daemon does not take as it is:
    422 naming ``field``, shaped like a validation error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class NotFound(Exception):
    """No workload has that id or alias."""


class Misconfigured(Exception):
    """Something only an operator can mend (the message names it) keeps zwmd from serving
    the request: 500 with that message (sending it again would not help)."""


class Unavailable(Exception):
    """zwmd cannot take the request now, for a reason that may pass (the message names
    it): 503 with ``Retry-After``; nothing was done."""


class Conflict(Exception):
    """The request contradicts a workload that exists (e.g. another spec under its id)."""


class Operations(Protocol):
    """What the API asks of the daemon."""

    def readiness(self) -> tuple[bool, str]: ...

    def healthy(self) -> tuple[bool, str]: ...

    async def run(
        self, workload_id: str, request: RunRequest, request_key: str = ""
    ) -> tuple[dict[str, Any], bool]: ...

    async def build(self, workload_id: str, request: BuildRequest) -> dict[str, Any]: ...

    def get(self, id_or_alias: str) -> dict[str, Any]: ...

    def list(self, state: str | None) -> list[dict[str, Any]]: ...

    async def wait(self, id_or_alias: str, timeout: float) -> dict[str, Any]: ...

    async def cancel(self, id_or_alias: str) -> dict[str, Any] | None: ...

    async def log(self, id_or_alias: str, message: str, level: str) -> None: ...

    async def logs(self, id_or_alias: str, *, fmt: str, follow: bool) -> AsyncIterator[bytes]:
        """Resolve the id (raising :class:`NotFound`), then return the log stream."""
        ...

    def metrics_exposition(self) -> tuple[bytes, str]: ...


def _add_probes(app: FastAPI, ops: Operations) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``: no token, no secret, cheap.

    They are ``async``: answered on the event loop itself, so a loop that is stuck cannot
    answer at all (the probe times out and fails), and one that is merely slow is
    measured by ``ops.healthy()``.
    """

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> JSONResponse:
        ok, why = ops.healthy()
        return JSONResponse(status_code=200 if ok else 503, content={"ok": ok, "detail": why})

    @app.get("/readyz", tags=["probes"])
    async def readyz() -> JSONResponse:
        ready, detail = ops.readiness()
        return JSONResponse(
            status_code=200 if ready else 503, content={"ok": ready, "detail": detail}
        )

    @app.get("/metrics", tags=["probes"])
    async def metrics() -> Response:
        body, content_type = ops.metrics_exposition()
        return Response(content=body, media_type=content_type)


def create_probe_app(ops: Operations) -> FastAPI:
    """Only the probes and ``/metrics``: what ``ZWMD_METRICS_PORT`` serves to kubelets and
    scrapers, on an address they can reach. No workload is visible or writable there."""
    app = FastAPI(
        title="zwmd probes",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    _add_probes(app, ops)
    return app


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413, unread.

    A declared ``Content-Length`` is judged before a byte is read; a chunked body is
    read up to the limit (never more is kept) and handed on whole. The server discards
    the rest of a refused body as it arrives, so a client that sends it all before it
    reads (most do) still gets the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(send, f"{int(declared)} bytes")
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes} bytes")
                return
            more = bool(message.get("more_body"))

        async def replay() -> Message:
            return held.pop(0) if held else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        detail = f"request body: {size}, more than ZWMD_API_MAX_BODY_BYTES ({self.max_bytes})"
        response = JSONResponse(status_code=413, content={"detail": detail})
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _invalid(location: str, field: str, message: str) -> JSONResponse:
    """A 422 shaped like FastAPI's own validation errors (``loc`` names the field)."""
    content = {"detail": [{"type": "value_error", "loc": [location, field], "msg": message}]}
    return JSONResponse(status_code=422, content=content)


def create_app(ops: Operations, *, token: str | None, limits: ApiLimits | None = None) -> FastAPI:
    """The API application for ``ops``; ``token`` (if any) is required on every /v1 call."""
    limits = limits or ApiLimits()

    def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token (Authorization: Bearer <ZWMD_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(title="zwmd", version=__version__, summary="ZenML workload manager daemon")
    v1 = [Depends(authorize)]

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(Misconfigured)
    async def misconfigured(_: Request, exc: Misconfigured) -> JSONResponse:
        log.error("%s", exc)
        return JSONResponse(status_code=500, content={"detail": str(exc)})

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)}
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers=headers)

    @app.exception_handler(KubeError)
    async def kube_failed(_: Request, exc: KubeError) -> JSONResponse:
        return _kube_error_response(exc)

    @app.exception_handler(ObjectTooLarge)
    async def too_large_for_kubernetes(_: Request, exc: ObjectTooLarge) -> JSONResponse:
        return _invalid("body", exc.field, exc.message)

    @app.exception_handler(Invalid)
    async def invalid_here(_: Request, exc: Invalid) -> JSONResponse:
        return _invalid("body", exc.field, exc.message)

    @app.exception_handler(InvalidKey)
    async def not_storable(_: Request, exc: InvalidKey) -> JSONResponse:
        return _invalid("path", exc.field, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and the fault, never the input: it may be a secret, or text that
        # JSON cannot carry back (a lone surrogate).
        detail = [
            {"type": e.get("type"), "loc": [_printable(p) for p in e["loc"]], "msg": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        detail = f"{exc}; nothing was done, send the request again"
        headers = {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
        return JSONResponse(status_code=503, content={"detail": detail}, headers=headers)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse(status_code=exc.status, content={"detail": str(exc)}, headers=headers)

    app.add_middleware(BodyLimit, max_bytes=limits.body_bytes)

    _add_probes(app, ops)

    @app.post("/v1/workloads/{workload_id}/run", status_code=202, dependencies=v1)
    async def run(
        workload_id: uuid.UUID,
        body: RunRequest,
        response: Response,
        idempotency_key: str = Header(default="", max_length=255),
    ) -> dict[str, Any]:
        """``Idempotency-Key`` (optional): a retry of one request, with the same key, gets
        the workload that request made, even when the id's run has finished since."""
        workload, created = await ops.run(str(workload_id), body, idempotency_key)
        if not created:
            response.status_code = 200
        return workload

    @app.post("/v1/workloads/{workload_id}/build", status_code=202, dependencies=v1)
    async def build(workload_id: uuid.UUID, body: BuildRequest) -> dict[str, Any]:
        return await ops.build(str(workload_id), body)

    @app.get("/v1/workloads", dependencies=v1)
    def list_workloads(state: str | None = None) -> dict[str, Any]:
        return {"items": ops.list(state)}

    @app.get("/v1/workloads/{workload_id}", dependencies=v1)
    def get(workload_id: str) -> dict[str, Any]:
        return ops.get(workload_id)

    @app.get("/v1/workloads/{workload_id}/wait", dependencies=v1)
    async def wait(
        workload_id: str, timeout: float = Query(default=30.0, ge=0, le=3600)
    ) -> dict[str, Any]:
        return await ops.wait(workload_id, timeout)

    @app.delete(
        "/v1/workloads/{workload_id}",
        status_code=204,
        dependencies=v1,
        responses={202: {"description": "cancel under way: deleting the Job is retried"}},
    )
    async def cancel(workload_id: str) -> Response:
        pending = await ops.cancel(workload_id)
        if pending is None:
            return Response(status_code=204)
        return JSONResponse(pending, status_code=202)

    @app.post("/v1/workloads/{workload_id}/logs", status_code=204, dependencies=v1)
    async def post_log(workload_id: str, body: LogMessage) -> Response:
        await ops.log(workload_id, body.message, body.level)
        return Response(status_code=204)

    @app.get("/v1/workloads/{workload_id}/logs", dependencies=v1)
    async def get_logs(
        workload_id: str,
        format: Literal["text", "zenml", "raw"] = "text",
        follow: bool = False,
    ) -> StreamingResponse:
        stream = await ops.logs(workload_id, fmt=format, follow=follow)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")

    return app


def _kube_error_response(exc: KubeError) -> JSONResponse:
    """What a client hears when the Kubernetes API did not do what a request needed.

    Throttling (429), server trouble (5xx) and an unreachable apiserver are passing: 503
    with ``Retry-After``, and the same request may be sent again (it is idempotent by
    workload id). Anything else Kubernetes refused is 502, with its words (and, for a
    403, the verb zwmd's Role must grant).
    """
    detail = exc.explained()
    if exc.code in (0, 429) or exc.code >= 500:
        retry = max(1, round(exc.retry_after or 1))
        return JSONResponse(
            status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry)}
        )
    return JSONResponse(status_code=502, content={"detail": detail})
