"""Count and time every Kubernetes API request a kubernetes-asyncio ``ApiClient`` makes.

Responsibility: ``instrument_api_client(api_client, recorder)`` wraps the client's REST
layer so that each request ends in one ``recorder.kube_request(verb, resource, code,
seconds)`` call, and ``classify`` turns a method, URL and query into bounded labels.

Design notes:

- Where to hook. Every typed API method, and ``Watch().stream()``, ends in
  ``api_client.rest_client.request(method, url, query_params=…, …)``: one place that sees
  the method, the path without the query, the query as a list of pairs, and either the
  response (status in hand) or an ``ApiException`` carrying the status. Wrapping that bound
  method on one client instance touches no class and no other client. An aiohttp
  ``TraceConfig`` would need to be attached to the client's already-built session through
  a private attribute, and would see only URLs with the query already encoded.
- What is measured. For buffered calls, the time to the full body; for streams
  (``_preload_content=False``: watches, log follows) the time to the response headers.
  A cancelled request is not recorded (it has no outcome); a transport failure is
  recorded with code ``error``.
- Bounded labels. The verb is the Kubernetes verb (``get``, ``list``, ``watch``,
  ``create``, ``update``, ``patch``, ``delete``, ``deletecollection``), as RBAC and
  ``zwmd doctor`` speak it. The resource is the plural resource name with its subresource
  (``jobs``, ``jobs/status``, ``pods/log``); namespaces and object names, which carry
  workload ids, never reach a label. Paths that are not resource paths become
  ``version``, ``discovery`` or ``other``.
- This module imports nothing of zwmd: the recorder is a protocol that
  ``zwmd.metrics.Metrics`` satisfies, which keeps zwmd.kube and zwmd.metrics independent
  as the layers contract wants.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = ["RequestRecorder", "classify", "instrument_api_client", "resource_of"]

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_MARK = "_zwmd_instrumented"
_NON_RESOURCE = frozenset({"version", "discovery", "other"})


class RequestRecorder(Protocol):
    """What the instrumentation reports to (``zwmd.metrics.Metrics`` is one)."""

    def kube_request(
        self, verb: str, resource: str, code: int | str | None, seconds: float
    ) -> None: ...


def resource_of(path: str) -> tuple[str, bool, bool]:
    """``(resource, named, watch_path)`` for an apiserver URL path.

    ``named`` says whether the path names one object; ``watch_path`` whether it uses the
    legacy ``/watch/`` prefix. Examples: ``/apis/batch/v1/namespaces/x/jobs`` →
    ``("jobs", False, False)``; ``/api/v1/namespaces/x/pods/p/log`` →
    ``("pods/log", True, False)``; ``/api/v1/namespaces/x`` → ``("namespaces", True, False)``.
    """
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "discovery", False, False
    if parts[0] == "version":
        return "version", False, False
    if parts[0] == "api":
        rest = parts[2:]  # drop "api", "<version>"
    elif parts[0] == "apis":
        rest = parts[3:]  # drop "apis", "<group>", "<version>"
    else:
        return "other", False, False
    if not rest:
        return "discovery", False, False
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        rest = rest[2:]  # drop "namespaces", "<namespace>": a namespaced resource follows
    if not rest:
        return "other", False, watch_path
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    if len(rest) > 3 or not all(_SEGMENT.match(p) for p in resource.split("/")):
        return "other", named, watch_path
    return resource, named, watch_path


def _truthy(value: object) -> bool:
    return str(value).lower() in ("true", "1")


def classify(
    method: str, url: str, query_params: Iterable[tuple[str, Any]] | None = None
) -> tuple[str, str]:
    """``(verb, resource)`` of a request: bounded labels for metrics.

    Query parameters may also be in ``url`` (they are, for plain aiohttp callers).
    """
    split = urlsplit(url)
    resource, named, watch_path = resource_of(split.path)
    query: list[tuple[str, Any]] = list(query_params or [])
    query.extend(parse_qsl(split.query, keep_blank_values=True))
    watching = watch_path or any(k == "watch" and _truthy(v) for k, v in query)
    method = method.upper()
    if method == "GET":
        if resource in _NON_RESOURCE:
            verb = "get"
        elif watching:
            verb = "watch"
        else:
            verb = "get" if named else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = method.lower() if method in ("HEAD", "OPTIONS") else "other"
    return verb, resource


def instrument_api_client(api_client: Any, recorder: RequestRecorder) -> None:
    """Record every request of ``api_client`` (a kubernetes-asyncio ``ApiClient``).

    Idempotent: instrumenting the same client twice records each request once.
    """
    rest = api_client.rest_client
    if getattr(rest, _MARK, False):
        return
    original = rest.request

    async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        query = kwargs.get("query_params")
        if query is None and args:
            query = args[0]
        verb, resource = classify(method, url, query)
        started = time.perf_counter()
        try:
            response = await original(method, url, *args, **kwargs)
        except ApiException as exc:
            recorder.kube_request(verb, resource, exc.status or None, time.perf_counter() - started)
            raise
        except (aiohttp.ClientError, OSError):  # OSError covers TimeoutError
            recorder.kube_request(verb, resource, None, time.perf_counter() - started)
            raise
        recorder.kube_request(
            verb, resource, getattr(response, "status", None), time.perf_counter() - started
        )
        return response

    rest.request = request
    setattr(rest, _MARK, True)
