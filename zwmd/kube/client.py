"""A thin client for the few Kubernetes calls zwmd makes, speaking plain dicts.

Design notes:

- Connection, TLS and authentication come from kubernetes-asyncio unchanged
  (``KUBECONFIG`` or the in-cluster service account), but every call goes through
  ``ApiClient.call_api(..., _preload_content=False)`` and the body is parsed with
  orjson. kubernetes-asyncio's typed methods build model objects for every response,
  which costs ~440 µs an event on the watch path and validates on the
  client; zwmd reads Kubernetes objects as the JSON they are.
- Errors become :class:`KubeError` carrying the status code, the ``Status`` reason and
  ``Retry-After`` when the server sent one, so callers can tell 404 from 409 from 429
  without parsing strings.
- Only namespaced resources of one namespace are reached: zwmd works in one namespace.
- Every call is bounded in time. A short call has ``request_timeout`` for all of it
  (connect, send, answer, body). A stream (a watch, a log follow) has
  ``inactivity_timeout``: its headers must come within it, and so must every next byte
  (:meth:`WatchStream.chunks`), else :class:`StreamStalled`. One mechanism for both
  kinds of stream: a silent partition stops old connections without closing them, and
  only a timeout can tell. Each timeout, and each answer after one, is told to
  :class:`~zwmd.kube.connectivity.Connectivity` (the readiness probe's reason).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from zwmd.kube.connectivity import Connectivity
from zwmd.kube.instrumentation import classify

Obj = dict[str, Any]

# plural resource name -> URL prefix of its API group
_GROUPS: Mapping[str, str] = {
    "jobs": "/apis/batch/v1",
    "pods": "/api/v1",
    "secrets": "/api/v1",
    "configmaps": "/api/v1",
    "events": "/api/v1",
    "serviceaccounts": "/api/v1",
    "leases": "/apis/coordination.k8s.io/v1",
}

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(Exception):
    """A Kubernetes API call that did not succeed."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        *,
        request: str = "",
    ):
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.request = request  # what was asked, as RBAC says it: "create jobs"

    @property
    def refused(self) -> bool:
        """The apiserver would not let zwmd do it (401, 403): no retry helps."""
        return self.code in (401, 403)

    def explained(self) -> str:
        """The error in words an operator acts on: for a refusal, what to grant or fix."""
        asked = f"zwmd's {self.request}" if self.request else "a request of zwmd"
        if self.code == 403:
            return (
                f"Kubernetes refused {asked} (403 Forbidden): {self.message}. Grant "
                f"{self.request or 'it'} to zwmd's service account in its Role "
                "(contrib/kubernetes/rbac.yaml; `zwmd doctor` checks every verb)"
            )
        if self.code == 401:
            return (
                f"Kubernetes did not accept zwmd's credentials for {asked} (401 "
                f"Unauthorized): {self.message}. Check the service account token or the "
                "kubeconfig zwmd uses"
            )
        if self.code == 0:
            return f"the Kubernetes API is unreachable: {self.message}"
        return f"the Kubernetes API answered {self.code} {self.reason}: {self.message}"


class StreamStalled(TimeoutError):
    """A stream moved no byte for its inactivity timeout (its connection may still be open)."""


async def load_api_client(
    kubeconfig: str | None = None, *, max_connections: int = 100
) -> k8s.ApiClient:
    """An ApiClient from ``kubeconfig``, ``$KUBECONFIG``, or the in-cluster account.

    ``max_connections`` caps its connection pool (0: no cap, for long-lived streams).
    """
    configuration = k8s.Configuration()
    configuration.connection_pool_maxsize = max_connections
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            await k8s_config.load_kube_config(config_file=path, client_configuration=configuration)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except Exception as exc:  # a missing, unreadable or malformed configuration, of any kind
        raise ClusterConfigError(path, exc) from exc
    return k8s.ApiClient(configuration)


class ClusterConfigError(Exception):
    """No usable cluster configuration: the kubeconfig ``path`` (None: in-cluster) failed."""

    def __init__(self, path: str | None, cause: Exception) -> None:
        super().__init__(str(cause) or repr(cause))
        self.path = path


def _said(exc: BaseException) -> str:
    """An exception in its own words (``Cannot connect to host ...``), or its repr."""
    return str(exc) or repr(exc)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _raise_for_status(response: aiohttp.ClientResponse, request: str) -> None:
    if 200 <= response.status < 300:
        return
    body = await response.read()
    reason, message = response.reason or "", body.decode("utf-8", "replace")
    try:
        status = orjson.loads(body)
        reason = status.get("reason", reason)
        message = status.get("message", message)
    except orjson.JSONDecodeError:
        pass
    raise KubeError(
        response.status, reason, message, _retry_after(response.headers), request=request
    )


@dataclass(frozen=True, slots=True)
class WatchStream:
    """An open stream (a watch, a log): raw chunks or lines, closed by leaving the ``async with``."""

    response: aiohttp.ClientResponse
    #: seconds without a byte after which a read raises :class:`StreamStalled` (None: never)
    inactivity_timeout: float | None = None
    name: str = "stream"
    #: told of a stall (None: silence is no evidence of one, e.g. a quiet container's log)
    connectivity: Connectivity | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each read bounded by ``inactivity_timeout``."""
        content = self.response.content
        while True:
            if self.inactivity_timeout is None:
                chunk = await content.readany()
            else:
                with anyio.move_on_after(self.inactivity_timeout) as waited:
                    chunk = await content.readany()
                if waited.cancelled_caught:
                    if self.connectivity is not None:
                        self.connectivity.stream_stalled(self.name, self.inactivity_timeout)
                    raise StreamStalled(
                        f"{self.name}: no byte for {self.inactivity_timeout:g}s (inactivity timeout)"
                    )
            if not chunk:
                return
            yield chunk

    async def lines(self) -> AsyncIterator[bytes]:
        """Complete lines, however long (aiohttp's ``readline`` caps a line's length)."""
        pending = bytearray()
        async for chunk in self.chunks():
            if b"\n" not in chunk:
                pending += chunk
                continue
            *complete, tail = chunk.split(b"\n")
            if pending:
                complete[0] = bytes(pending) + complete[0]
                pending.clear()
            for line in complete:
                if line:
                    yield line
            pending += tail
        if pending:
            yield bytes(pending)

    async def __aenter__(self) -> WatchStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.response.release()
        self.response.close()


class KubeClient:
    """The Kubernetes calls of one namespace, as dicts in and dicts out.

    Watches and pod log follows are long-lived: one per running container. They go
    through ``stream_api`` (its own connection pool, uncapped) so that hundreds of them
    never take the connections that short calls need; without it, ``api`` serves both.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        namespace: str,
        *,
        stream_api: k8s.ApiClient | None = None,
        request_timeout: float = 30.0,
        max_concurrent: int = 32,
        connectivity: Connectivity | None = None,
    ):
        self.api = api
        self.stream_api = stream_api or api
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.connectivity = connectivity or Connectivity()
        # Short calls wait for one of these slots (watches and log streams do not): a burst
        # of hundreds of workloads queues here instead of timing out in the connection pool.
        self._slots = anyio.Semaphore(max_concurrent)

    def path(self, resource: str, name: str | None = None, sub: str | None = None) -> str:
        base = f"{_GROUPS[resource]}/namespaces/{self.namespace}/{resource}"
        if name is not None:
            base += f"/{name}"
        if sub is not None:
            base += f"/{sub}"
        return base

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        read_timeout: Any = None,
        stream: str | None = None,
    ) -> aiohttp.ClientResponse:
        """One request; ``stream`` names a stream (its own pool, answered when opened)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        api = self.stream_api if stream else self.api
        try:
            response: aiohttp.ClientResponse = await api.call_api(
                path,
                method,
                query_params=[(k, _query_value(v)) for k, v in (query or {}).items()],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=read_timeout if read_timeout is not None else self.request_timeout,
            )
        except TimeoutError as exc:
            if stream is None:
                self.connectivity.request_timed_out(f"{method} {path}", self.request_timeout)
            raise KubeError(0, "Unreachable", f"{method} {path}: timed out ({exc!r})") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeError(0, "Unreachable", f"{method} {path}: {_said(exc)}") from exc
        self.connectivity.answered(stream)
        await _raise_for_status(
            response, " ".join(classify(method, path, query.items() if query else None))
        )
        return response

    async def _stream(
        self,
        path: str,
        query: Mapping[str, Any],
        name: str,
        inactivity_timeout: float | None,
        *,
        silence_is_stall: bool,
    ) -> WatchStream:
        """Open a stream whose headers must come within ``inactivity_timeout``.

        Headers that do not come are a stall whatever the stream; silence afterwards is
        one only when the server would have sent something (``silence_is_stall``).
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout)
        with anyio.move_on_after(inactivity_timeout) as waited:
            response = await self._call("GET", path, query=query, read_timeout=timeout, stream=name)
        if waited.cancelled_caught:
            assert inactivity_timeout is not None
            self.connectivity.stream_stalled(name, inactivity_timeout)
            raise StreamStalled(f"{name}: no answer for {inactivity_timeout:g}s")
        return WatchStream(
            response, inactivity_timeout, name, self.connectivity if silence_is_stall else None
        )

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Obj:
        """Any call by absolute path (``/version``, access reviews), as a dict."""
        async with self._slots:
            response = await self._call(method, path, **kwargs)
            try:
                data: Obj = orjson.loads(await response.read())
            finally:
                response.release()
        return data

    async def get(self, resource: str, name: str) -> Obj:
        return await self.request_json("GET", self.path(resource, name))

    async def list(
        self,
        resource: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> tuple[list[Obj], str]:
        """All objects (following ``continue``) and the list's resourceVersion."""
        items: list[Obj] = []
        query: dict[str, Any] = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = await self.request_json("GET", self.path(resource), query=query)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = token

    async def create(self, resource: str, obj: Obj) -> Obj:
        return await self.request_json("POST", self.path(resource), body=obj)

    async def create_or_replace(self, resource: str, obj: Obj, *, tries: int = 5) -> Obj:
        """Create ``obj``; if one of its name exists, replace it whole (an update).

        The replacement takes the new object's labels, ownerReferences and data: an
        object left by an earlier owner (a Job since deleted, whose dependents the
        garbage collector has not reached yet) becomes the new owner's, instead of
        keeping a reference that would get it collected. The collector may still get
        there first: an update answered 404 (deleted between the create and the update),
        or answered with an object being deleted (the update removed its last finalizer,
        so it went), is followed by a new create. Only create, update and get are used.
        """
        name = obj["metadata"]["name"]
        for attempt in range(tries):
            try:
                return await self.create(resource, obj)
            except KubeError as exc:
                if exc.code != 409:
                    raise
            try:
                replaced = await self.request_json("PUT", self.path(resource, name), body=obj)
            except KubeError as exc:
                if exc.code != 404:
                    raise
                continue  # collected meanwhile: create it again
            if not (replaced.get("metadata") or {}).get("deletionTimestamp"):
                return replaced
            await anyio.sleep(0.1 * (attempt + 1))  # on its way out: create once it is gone
        raise KubeError(
            409, "Conflict", f"{resource} {name} kept being deleted while it was written"
        )

    async def patch(
        self, resource: str, name: str, patch: Any, *, content_type: str = MERGE_PATCH
    ) -> Obj:
        return await self.request_json(
            "PATCH", self.path(resource, name), body=patch, content_type=content_type
        )

    async def delete(self, resource: str, name: str, *, propagation: str = "Background") -> None:
        """Delete ``name``; an object that is already gone is not an error."""
        async with self._slots:
            try:
                response = await self._call(
                    "DELETE", self.path(resource, name), query={"propagationPolicy": propagation}
                )
            except KubeError as exc:
                if exc.code == 404:
                    return
                raise
            response.release()

    async def watch(
        self,
        resource: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        inactivity_timeout: float | None = None,
    ) -> WatchStream:
        """Open a watch from ``resource_version``; read it with :meth:`WatchStream.lines`."""
        query: dict[str, Any] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        return await self._stream(
            self.path(resource),
            query,
            f"watch {resource}",
            inactivity_timeout,
            silence_is_stall=True,  # bookmarks come while nothing changes
        )

    async def pod_log(
        self,
        pod: str,
        *,
        container: str | None = None,
        follow: bool = False,
        since_time: str | None = None,
        tail_lines: int | None = None,
        inactivity_timeout: float | None = None,
    ) -> WatchStream:
        """A pod's log with timestamps, as a stream of raw lines."""
        query: dict[str, Any] = {"timestamps": True, "follow": follow}
        if container:
            query["container"] = container
        if since_time:
            query["sinceTime"] = since_time
        if tail_lines is not None:
            query["tailLines"] = tail_lines
        return await self._stream(
            self.path("pods", pod, "log"),
            query,
            f"log of pod {pod}",
            inactivity_timeout,
            silence_is_stall=False,  # a container may print nothing for hours
        )


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
