"""Fault injection: what a flaky or hostile apiserver does, on demand, for tests and benchmarks.

Design notes:

* One :class:`Faults` object per localkube, used in-process (``kube.faults.fail_next(3)``)
  or over HTTP through ``/localkube/faults/...`` (see :func:`routes`), so a localkube
  running in another process can be driven by a test too.
* Failures are queued rules: the next ``count`` requests matching ``(verb, resource)``
  (``None`` matches anything) are answered with the status (429 carries ``Retry-After``,
  as the apiserver's priority-and-fairness does). ``latency`` delays every API request.
  ``fail_fraction`` answers a random share of matching requests (by default the writes)
  with 500 or 429 for a while: an apiserver under load, as priority and fairness sheds
  it, or an etcd that times out. ``injected`` counts every failure answered.
  ``outage(seconds)`` takes the whole server down for a while, as an apiserver that
  restarts or a load balancer with no backend: connections are refused and open ones
  closed, then it listens again on the same port with its objects intact.
  ``drop_watches`` ends every open watch stream (the client sees the connection close);
  ``drop_pod_logs`` cuts every open pod log read mid-response (the logs are kept);
  ``compact_history`` makes every resumed watch from an earlier version get 410.
* ``stall`` is a silent partition: the connections open at that moment (watch streams,
  pod log follows, requests in flight, idle kept-alive connections) stop moving bytes,
  without a close and without an RST, while new connections are served as usual
  (``everything=True`` holds new ones too). ``match=(verb, resource)`` stalls only the
  connections serving such a request now, in RBAC's words (``("get", "pods/log")``,
  ``("watch", "jobs")``). The stall ends after ``seconds`` or with ``end_stall``: what
  was held moves on as a network that heals delivers it, unless ``drop=True`` resets the
  held connections (the server gave up on them meanwhile). A request that arrives on a
  stalled connection waits too. Held bytes are held in localkube, not in the kernel:
  the client cannot tell.
* Missing permissions are not a fault: bind a narrower Role (:mod:`zwmd.localkube.rbac`
  enforces it on every request and answers access reviews from it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from zwmd.localkube.errors import ApiError, bad_request
from zwmd.localkube.store import Store

_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    403: "Forbidden",
}


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@dataclass
class FractionRule:
    """Fail each matching request with probability ``fraction`` until ``until``."""

    fraction: float
    statuses: tuple[int, ...]
    verbs: frozenset[str]
    until: float  # time.monotonic()
    rng: random.Random

    def draw(self, verb: str) -> int | None:
        if verb not in self.verbs or time.monotonic() >= self.until:
            return None
        if self.rng.random() >= self.fraction:
            return None
        return self.rng.choice(self.statuses)


@dataclass
class FailureRule:
    remaining: int
    status: int
    retry_after: int | None
    verb: str | None
    resource: str | None
    message: str

    def matches(self, verb: str, resource: str) -> bool:
        return (self.verb is None or self.verb == verb) and (
            self.resource is None or self.resource == resource
        )


@dataclass
class _Stall:
    connections: set[asyncio.BaseTransport]
    everything: bool
    over: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None

    def holds(self, transport: asyncio.BaseTransport | None) -> bool:
        return self.everything or transport in self.connections


class Faults:
    """Injected failures, latency, stalls, dropped watches, compaction and access denials."""

    def __init__(self, store: Store, pod_logs: Any = None) -> None:
        self._store = store
        #: the kubelets' :class:`~zwmd.localkube.podlogs.PodLogs` (set by ``LocalKube``)
        self.pod_logs = pod_logs
        self.latency = 0.0
        self._rules: list[FailureRule] = []
        self._fractions: list[FractionRule] = []
        self.injected = 0  # failures answered so far
        #: set by the server: start an outage of the given seconds
        self.outage_handler: Callable[[float], None] | None = None
        #: open connections and what each serves now, ``(verb, resource)`` or None (idle)
        self._connections: dict[asyncio.BaseTransport, tuple[str, str] | None] = {}
        self._stall: _Stall | None = None
        self._befores: list[tuple[str | None, str | None, Callable[[], object]]] = []

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        match: tuple[str | None, str | None] | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``match=(verb, resource)`` with ``status``."""
        verb, resource = match if match is not None else (None, None)
        self._rules.append(
            FailureRule(
                count,
                status,
                retry_after if status == 429 else None,
                verb,
                resource,
                message or f"localkube: injected {status}",
            )
        )

    def fail_fraction(
        self,
        fraction: float,
        *,
        seconds: float,
        statuses: Sequence[int] = (500, 429),
        verbs: Sequence[str] = WRITE_VERBS,
        seed: int | None = None,
    ) -> None:
        """For ``seconds``, answer a ``fraction`` of the requests of ``verbs`` with one of
        ``statuses`` (429 with ``Retry-After: 1``)."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
        if not statuses:
            raise ValueError("statuses must name at least one status")
        self._fractions.append(
            FractionRule(
                fraction,
                tuple(statuses),
                frozenset(verbs),
                time.monotonic() + seconds,
                random.Random(seed),
            )
        )

    def before_next(
        self, action: Callable[[], object], *, match: tuple[str | None, str | None]
    ) -> None:
        """Run ``action()`` just before the next request matching ``(verb, resource)``."""
        self._befores.append((*match, action))

    def take_failure(self, verb: str, resource: str) -> ApiError | None:
        """The error to answer this request with, consuming one matching failure.

        A matching :meth:`before_next` action runs first (once).
        """
        for before in self._befores:
            if before[0] in (None, verb) and before[1] in (None, resource):
                self._befores.remove(before)
                before[2]()
                break
        for rule in self._rules:
            if rule.remaining > 0 and rule.matches(verb, resource):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return self._answer(rule.status, rule.message, rule.retry_after)
        for fraction in self._fractions:
            status = fraction.draw(verb)
            if status is not None:
                retry_after = 1 if status == 429 else None
                return self._answer(status, f"localkube: injected {status}", retry_after)
        return None

    def _answer(self, status: int, message: str, retry_after: int | None) -> ApiError:
        self.injected += 1
        reason = _REASONS.get(status, "InternalError")
        return ApiError(status, reason, message, retry_after=retry_after)

    @property
    def pending_failures(self) -> int:
        return sum(rule.remaining for rule in self._rules)

    def outage(self, seconds: float) -> None:
        """Refuse connections (and close the open ones) for ``seconds``."""
        if self.outage_handler is None:
            raise RuntimeError("the server is not serving: no outage to start")
        if not 0 < seconds <= 3600:
            raise ValueError(f"seconds must be between 0 and 3600, not {seconds}")
        self.outage_handler(seconds)

    def drop_watches(self) -> int:
        """Close every open watch; returns how many there were."""
        return self._store.close_watches()

    def drop_pod_logs(self) -> int:
        """Cut every open pod log stream; returns how many there were."""
        return 0 if self.pod_logs is None else int(self.pod_logs.drop_streams())

    def compact_history(self) -> None:
        """Forget the watch history: resuming from any earlier version gives 410 Expired."""
        self._store.compact()

    # --- silent stalls ------------------------------------------------------------------

    def serving(
        self, transport: asyncio.BaseTransport | None, what: tuple[str, str] | None
    ) -> None:
        """The server's note: ``transport`` now serves ``what`` (None: it is idle)."""
        if transport is None:
            return
        if len(self._connections) > 256:
            for each in [t for t in self._connections if t.is_closing()]:
                del self._connections[each]
        self._connections[transport] = what

    def stall(
        self,
        *,
        match: tuple[str | None, str | None] | None = None,
        everything: bool = False,
        seconds: float | None = None,
    ) -> int:
        """Stop moving bytes on the open connections; returns how many were stalled."""
        verb, resource = match if match is not None else (None, None)
        chosen = {
            transport
            for transport, what in self._connections.items()
            if not transport.is_closing()
            and (
                match is None
                or (what is not None and verb in (None, what[0]) and resource in (None, what[1]))
            )
        }
        if self._stall is not None:  # one stall at a time: a new one adds to it
            chosen |= self._stall.connections
            everything = everything or self._stall.everything
            self.end_stall()
        self._stall = _Stall(chosen, everything)
        if seconds is not None:
            self._stall.timer = asyncio.get_running_loop().call_later(seconds, self.end_stall)
        return len(chosen)

    def end_stall(self, *, drop: bool = False) -> int:
        """End the stall: held connections move on (``drop``: they are reset instead)."""
        stall, self._stall = self._stall, None
        if stall is None:
            return 0
        if stall.timer is not None:
            stall.timer.cancel()
        if drop:
            for transport in stall.connections:
                abort = getattr(transport, "abort", None)
                if abort is not None:
                    abort()
        stall.over.set()
        return len(stall.connections)

    @property
    def stalled(self) -> bool:
        return self._stall is not None

    async def hold(self, transport: asyncio.BaseTransport | None) -> None:
        """Return once ``transport`` may move bytes (at once when it is not stalled)."""
        while self._stall is not None and self._stall.holds(transport):
            await self._stall.over.wait()

    def reset(self) -> None:
        """Remove every injected fault."""
        self.latency = 0.0
        self._rules.clear()
        self._fractions.clear()
        self._befores.clear()
        self.end_stall()


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("fault request body must be JSON") from None
    if not isinstance(parsed, dict):
        raise bad_request("fault request body must be a JSON object")
    return parsed


def routes(faults: Faults) -> list[web.RouteDef]:
    """HTTP endpoints under ``/localkube/faults/`` driving ``faults``."""

    def ok(**extra: Any) -> web.Response:
        return web.json_response({"ok": True, **extra}, dumps=lambda o: orjson.dumps(o).decode())

    async def drop_watches(_: web.Request) -> web.Response:
        return ok(dropped=faults.drop_watches())

    async def drop_pod_logs(_: web.Request) -> web.Response:
        return ok(dropped=faults.drop_pod_logs())

    async def compact(_: web.Request) -> web.Response:
        faults.compact_history()
        return ok()

    async def fail_next(request: web.Request) -> web.Response:
        body = await _body(request)
        faults.fail_next(
            int(body.get("count", 1)),
            status=int(body.get("status", 429)),
            retry_after=body.get("retry_after", 1),
            match=(body.get("verb"), body.get("resource")),
            message=body.get("message"),
        )
        return ok()

    async def fail_fraction(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            faults.fail_fraction(
                float(body.get("fraction", 0.0)),
                seconds=float(body.get("seconds", 60.0)),
                statuses=[int(s) for s in body.get("statuses", (500, 429))],
                verbs=[str(v) for v in body.get("verbs", WRITE_VERBS)],
                seed=body.get("seed"),
            )
        except (TypeError, ValueError) as exc:
            raise bad_request(f"fail-fraction: {exc}") from None
        return ok()

    async def outage(request: web.Request) -> web.Response:
        try:
            faults.outage(float((await _body(request)).get("seconds", 0)))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"outage: {exc}") from None
        return ok()

    async def counts(_: web.Request) -> web.Response:
        return ok(injected=faults.injected, pending=faults.pending_failures)

    async def latency(request: web.Request) -> web.Response:
        faults.latency = float((await _body(request)).get("seconds", 0.0))
        return ok()

    async def stall(request: web.Request) -> web.Response:
        body = await _body(request)
        verb, resource = body.get("verb"), body.get("resource")
        seconds = body.get("seconds")
        if seconds is not None and not isinstance(seconds, int | float):
            raise bad_request("stall: seconds must be a number")
        stalled = faults.stall(
            match=None if verb is None and resource is None else (verb, resource),
            everything=bool(body.get("everything", False)),
            seconds=None if seconds is None else float(seconds),
        )
        return ok(stalled=stalled)

    async def end_stall(request: web.Request) -> web.Response:
        return ok(resumed=faults.end_stall(drop=bool((await _body(request)).get("drop", False))))

    async def reset(_: web.Request) -> web.Response:
        faults.reset()
        return ok()

    return [
        web.post("/localkube/faults/drop-watches", drop_watches),
        web.post("/localkube/faults/drop-pod-logs", drop_pod_logs),
        web.post("/localkube/faults/compact", compact),
        web.post("/localkube/faults/fail-next", fail_next),
        web.post("/localkube/faults/fail-fraction", fail_fraction),
        web.get("/localkube/faults", counts),
        web.post("/localkube/faults/outage", outage),
        web.post("/localkube/faults/latency", latency),
        web.post("/localkube/faults/stall", stall),
        web.post("/localkube/faults/end-stall", end_stall),
        web.post("/localkube/faults/reset", reset),
    ]
