"""Long-lived responses: watch streams and pod logs, written chunked.

Design notes:

* A watch is one ``200`` chunked response with one ``{"type","object"}`` JSON per line,
  exactly what kubernetes-asyncio reads with ``readline()``. Events come from the store
  in batches (:class:`~zwmd.localkube.watching.WatchStream`) and each batch goes out as
  one write of pre-encoded lines, so the cost per event is a ``bytes.join``.
* A resourceVersion older than the history gives a single ``ERROR`` event carrying a
  410 Expired Status, then the stream ends (the apiserver's behaviour).
* ``allowWatchBookmarks`` adds a ``BOOKMARK`` every ``bookmark_interval`` seconds while
  the stream is idle, carrying the store's current version (safe: nothing is pending).
* ``timeoutSeconds`` ends the stream; ``Faults.drop_watches`` ends it from the store side.
* Pod logs come from a :class:`PodLogSource`; the first chunk is awaited before the
  response starts so that its 400/404 still become proper Status responses.
* Every write first passes ``hold`` (:meth:`zwmd.localkube.faults.Faults.hold`): while
  the connection is stalled, nothing more goes out, and the stream neither ends nor
  closes; what comes meanwhile goes out when the stall ends.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from zwmd.localkube.errors import ApiError, bad_request
from zwmd.localkube.resources import RESOURCES
from zwmd.localkube.store import Store
from zwmd.localkube.watching import WatchEvent, event_line

_MAX_WRITE = 1 << 20  # split very large batches (e.g. a huge initial list) into ~1 MiB writes

Hold = Callable[[asyncio.BaseTransport | None], Awaitable[None]]


async def _no_hold(_: asyncio.BaseTransport | None) -> None:
    return None


class PodLogSource(Protocol):
    """Where pod logs come from (implemented by the kubelets' log keeper)."""

    def stream(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None,
        follow: bool,
        timestamps: bool,
        tail_lines: int | None,
        since_time: str | None,
        previous: bool,
    ) -> AsyncIterator[bytes]: ...


def query_bool(query: Any, name: str) -> bool:
    """Booleans in any case: kubernetes-asyncio sends ``True``, kubectl ``true``."""
    return str(query.get(name, "")).lower() in ("true", "1", "yes")


def query_int(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"invalid {name} {raw!r}: must be an integer") from None


async def _start(request: web.Request, content_type: str, hold: Hold) -> web.StreamResponse:
    await hold(request.transport)
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def _write(
    request: web.Request, response: web.StreamResponse, data: bytes, hold: Hold
) -> None:
    await hold(request.transport)
    await response.write(data)


async def watch(
    request: web.Request,
    store: Store,
    resource: str,
    namespace: str | None,
    *,
    bookmark_interval: float,
    hold: Hold = _no_hold,
) -> web.StreamResponse:
    """Serve ``?watch=true`` on a collection."""
    query = request.query
    timeout = query_int(query, "timeoutSeconds")
    bookmarks = query_bool(query, "allowWatchBookmarks")
    try:
        stream = store.watch(
            resource,
            namespace,
            resource_version=query.get("resourceVersion"),
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
        )
    except ApiError as error:
        if error.code != 410:
            raise
        response = await _start(request, "application/json", hold)
        await _write(request, response, event_line("ERROR", orjson.dumps(error.status())), hold)
        await response.write_eof()
        return response
    kind = RESOURCES[resource]
    response = await _start(request, "application/json", hold)
    loop_time = time.monotonic
    deadline = loop_time() + timeout if timeout else None
    next_bookmark = loop_time() + bookmark_interval if bookmarks else None
    try:
        while True:
            now = loop_time()
            waits = [t - now for t in (deadline, next_bookmark) if t is not None]
            wait_seconds = max(0.0, min(waits)) if waits else None
            if deadline is not None and now >= deadline:
                break
            batch = await stream.next_batch(wait_seconds)
            if batch is None:
                break
            if batch:
                await _write_events(request, response, batch, hold)
            elif next_bookmark is not None and loop_time() >= next_bookmark:
                bookmark = {
                    "kind": kind.kind,
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": store.resource_version},
                }
                await _write(
                    request, response, event_line("BOOKMARK", orjson.dumps(bookmark)), hold
                )
                next_bookmark = loop_time() + bookmark_interval
        await hold(request.transport)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        stream.close()
    return response


async def _write_events(
    request: web.Request, response: web.StreamResponse, events: list[WatchEvent], hold: Hold
) -> None:
    parts: list[bytes] = []
    size = 0
    for event in events:
        parts.extend(event.wire_parts())
        size += len(event.encoded)
        if size >= _MAX_WRITE:
            await _write(request, response, b"".join(parts), hold)
            parts, size = [], 0
    if parts:
        await _write(request, response, b"".join(parts), hold)


async def pod_log(
    request: web.Request,
    store: Store,
    source: PodLogSource | None,
    namespace: str,
    pod: str,
    *,
    hold: Hold = _no_hold,
) -> web.StreamResponse:
    """Serve ``GET .../pods/{name}/log``."""
    store.get("pods", namespace, pod)  # 404 for a missing pod, whatever the source
    if source is None:
        return web.Response(body=b"", content_type="text/plain")
    query = request.query
    since_time = query.get("sinceTime") or None
    since_seconds = query_int(query, "sinceSeconds")
    if since_time is None and since_seconds is not None:
        moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=since_seconds)
        since_time = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    chunks = source.stream(
        namespace,
        pod,
        container=query.get("container") or None,
        follow=query_bool(query, "follow"),
        timestamps=query_bool(query, "timestamps"),
        tail_lines=query_int(query, "tailLines"),
        since_time=since_time,
        previous=query_bool(query, "previous"),
    )
    # ``stream`` has validated the request already: the headers go out at once, as a
    # kubelet sends them, even while a followed container has written nothing yet
    iterator = aiter(chunks)
    response = await _start(request, "text/plain", hold)
    try:
        async for chunk in iterator:
            await _write(request, response, chunk, hold)
        await hold(request.transport)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    return response
