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
  are idempotent by workload id); other refusals answer 502 with Kubernetes' words.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from zwmd import __version__
from zwmd.kube.client import KubeError


class RunRequest(BaseModel):
    """A runner container to run: ``POST /v1/workloads/{id}/run``."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="the runner image")
    command: list[str] = Field(default_factory=list)
    arguments: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict, description="secret: never shown")
    timeout_seconds: int = Field(default=0, ge=0, description="the Job's deadline; 0 = none")


class BuildRequest(BaseModel):
    """A runner image to provide: ``POST /v1/workloads/{id}/build``."""

    model_config = ConfigDict(extra="forbid")

    workload_type: Literal["snapshot", "run"] | None = None
    dockerfile: str = ""
    image_name: str = Field(min_length=1)
    timeout_seconds: int = Field(default=0, ge=0)
    reuse_images: dict[str, str] = Field(default_factory=dict)


class LogMessage(BaseModel):
    """A message for a workload's log stream: ``POST /v1/workloads/{id}/logs``."""

    model_config = ConfigDict(extra="forbid")

    message: str
    level: Literal["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"] = "INFO"


class NotFound(Exception):
    """No workload has that id or alias."""


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

    async def cancel(self, id_or_alias: str) -> None: ...

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


def create_app(ops: Operations, *, token: str | None) -> FastAPI:
    """The API application for ``ops``; ``token`` (if any) is required on every /v1 call."""

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

    @app.exception_handler(KubeError)
    async def kube_failed(_: Request, exc: KubeError) -> JSONResponse:
        return _kube_error_response(exc)

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

    @app.delete("/v1/workloads/{workload_id}", status_code=204, dependencies=v1)
    async def cancel(workload_id: str) -> Response:
        await ops.cancel(workload_id)
        return Response(status_code=204)

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
    workload id). Anything else Kubernetes refused is 502, with its words.
    """
    detail = f"the Kubernetes API answered {exc.code} {exc.reason}: {exc.message}"
    if exc.code == 0:
        detail = f"the Kubernetes API is unreachable: {exc.message}"
    if exc.code in (0, 429) or exc.code >= 500:
        retry = max(1, round(exc.retry_after or 1))
        return JSONResponse(
            status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry)}
        )
    return JSONResponse(status_code=502, content={"detail": detail})
