"""The client itself: each endpoint described once (:class:`_Call`), sent with retries."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

import httpx

from zwmd.apiclient.answers import (
    ApiError,
    DaemonTimeout,
    DaemonUnreachable,
    Workload,
)
from zwmd.apiclient.config import ClientConfig
from zwmd.backoff import Backoff

IDEMPOTENCY_KEY = "Idempotency-Key"
WAIT_SLICE_SECONDS = 60.0
WAIT_MARGIN_SECONDS = 15.0
_BACKOFF_MAX_SECONDS = 5.0
LogFormat = Literal["text", "zenml", "raw"]


T = TypeVar("T")


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request to the daemon and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] | None = None
    json: Any = None
    timeout: float | None = None
    idempotent: bool = True  # sending it twice does what sending it once does
    headers: Mapping[str, str] | None = None


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


def _workload(response: httpx.Response) -> Workload:
    return Workload.from_json(response.json())


def _workloads(response: httpx.Response) -> list[Workload]:
    return [Workload.from_json(item) for item in response.json().get("items", [])]


def _nothing(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _json(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _wid(workload_id: object) -> str:
    """Workload ids arrive as UUIDs or strings; the path segment is their text."""
    text = str(workload_id)
    if not text or "/" in text:
        raise ValueError(f"invalid workload id {text!r}")
    return text


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors
        items = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                items.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg")))
            else:
                items.append(str(item))
        return "; ".join(items)
    return str(detail)


class _Calls:
    """Builds the :class:`_Call` of the endpoints that take a body or a long timeout."""

    timeout: float

    def _run_call(
        self,
        workload_id: object,
        image: str,
        command: Sequence[str],
        arguments: Sequence[str],
        environment: Mapping[str, str],
        timeout_seconds: int,
    ) -> _Call[Workload]:
        body = {
            "image": image,
            "command": list(command),
            "arguments": list(arguments),
            "environment": dict(environment),
            "timeout_seconds": int(timeout_seconds),
        }
        # One key per call, sent again with each retry of it: a retry that reaches a daemon
        # which already ran the request gets that run back, not a second attempt.
        key = {IDEMPOTENCY_KEY: str(uuid.uuid4())}
        path = f"/v1/workloads/{_wid(workload_id)}/run"
        return _Call("POST", path, _workload, json=body, headers=key)

    def _build_call(
        self,
        workload_id: object,
        dockerfile: str,
        image_name: str,
        workload_type: str | None,
        timeout_seconds: int,
        reuse_images: Mapping[str, str] | None,
    ) -> _Call[Workload]:
        body = {
            "workload_type": workload_type,
            "dockerfile": dockerfile,
            "image_name": image_name,
            "timeout_seconds": int(timeout_seconds),
            "reuse_images": dict(reuse_images or {}),
        }
        return _Call("POST", f"/v1/workloads/{_wid(workload_id)}/build", _workload, json=body)

    def _wait_call(self, workload_id: object, timeout: float) -> _Call[Workload]:
        timeout = max(0.0, float(timeout))
        return _Call(
            "GET",
            f"/v1/workloads/{_wid(workload_id)}/wait",
            _workload,
            params={"timeout": f"{timeout:g}"},
            timeout=timeout + WAIT_MARGIN_SECONDS,
        )

    def _logs_call(self, workload_id: object, format: LogFormat) -> _Call[str]:
        return _Call(
            "GET",
            f"/v1/workloads/{_wid(workload_id)}/logs",
            _text,
            params={"format": format, "follow": "false"},
        )


class Client(_Calls):
    """Synchronous, thread-safe client; one instance may serve many threads."""

    def __init__(
        self, config: ClientConfig | None = None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.config = config or ClientConfig.from_env()
        self.timeout = self.config.timeout
        self._token = self.config.read_token()
        if transport is None and self.config.socket:
            transport = httpx.HTTPTransport(uds=self.config.socket)
        base = "http://zwmd" if self.config.socket else self.config.url
        self._http = httpx.Client(base_url=base, transport=transport, timeout=self.timeout)
        self._answered = False  # whether the daemon ever answered this client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _send(self, call: _Call[Any]) -> httpx.Response:
        """One call, retried while the trouble is passing (see the module notes)."""
        deadline = time.monotonic() + self.config.retry_seconds
        backoff = Backoff(0.25, _BACKOFF_MAX_SECONDS)
        while True:
            retry_after: float | None = None
            try:
                response = self._send_once(call)
            except (DaemonTimeout, DaemonUnreachable) as exc:
                if not self._may_ask_again(call, exc) or time.monotonic() >= deadline:
                    raise
            else:
                self._answered = True
                if response.status_code != 503 or time.monotonic() >= deadline:
                    break
                retry_after = _retry_after(response)
            time.sleep(min(backoff.next(retry_after), max(0.0, deadline - time.monotonic())))
        if response.status_code >= 400:
            raise ApiError(
                response.status_code, _detail(response), method=call.method, path=call.path
            )
        return response

    def _may_ask_again(self, call: _Call[Any], exc: DaemonTimeout | DaemonUnreachable) -> bool:
        """Whether a call that got no answer may be sent again.

        A timeout: when the call is idempotent (the daemon may be waiting on a stalled
        apiserver). No connection: only once the daemon has answered this client (a
        wrong address fails at once), and when the call is idempotent or the connection
        was refused (then the request cannot have reached the daemon).
        """
        if isinstance(exc, DaemonTimeout):
            return call.idempotent
        refused = isinstance(exc.__cause__, httpx.ConnectError)
        return self._answered and (refused or call.idempotent)

    def _send_once(self, call: _Call[Any]) -> httpx.Response:
        for attempt in (1, 2):
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    headers={**self._headers(), **(call.headers or {})},
                    timeout=call.timeout or self.timeout,
                )
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    raise _unreachable(self.config, exc) from exc
                raise _timed_out(self.config, call, exc) from exc
            except httpx.TransportError as exc:
                raise _unreachable(self.config, exc) from exc
            if response.status_code == 401 and attempt == 1 and self.config.token_file:
                fresh = self.config.read_token()
                if fresh and fresh != self._token:
                    self._token = fresh
                    continue
            break
        return response

    def _do(self, call: _Call[T]) -> T:
        return call.parse(self._send(call))

    # -- the API -----------------------------------------------------------------------

    def healthz(self) -> Any:
        """``GET /healthz``; raises when the daemon is not there."""
        return self._do(_Call("GET", "/healthz", _json))

    def readyz(self) -> Any:
        return self._do(_Call("GET", "/readyz", _json))

    def run(
        self,
        workload_id: object,
        image: str,
        command: Sequence[str],
        arguments: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        timeout_seconds: int = 0,
    ) -> Workload:
        """Submit a runner; the same id and spec again returns the existing workload."""
        call = self._run_call(
            workload_id, image, command, arguments, environment or {}, timeout_seconds
        )
        return self._do(call)

    def get(self, workload_id: object) -> Workload:
        """A workload by its id or an alias (``--run_id``/``--snapshot_id`` values)."""
        return self._do(_Call("GET", f"/v1/workloads/{_wid(workload_id)}", _workload))

    def list(self, state: str | None = None) -> list[Workload]:
        params = {"state": state} if state else None
        return self._do(_Call("GET", "/v1/workloads", _workloads, params=params))

    def wait(self, workload_id: object, timeout: float) -> Workload:
        """One long poll: the workload once terminal, or as it stands after ``timeout``."""
        return self._do(self._wait_call(workload_id, timeout))

    def wait_terminal(
        self,
        workload_id: object,
        timeout: float | None = None,
        *,
        until: Callable[[Workload], bool] | None = None,
        slice_seconds: float = WAIT_SLICE_SECONDS,
    ) -> Workload:
        """Long-poll in slices until terminal (or ``until`` holds) or ``timeout`` passes.

        Each slice is one bounded request; ``until`` is checked between slices, so a
        short ``slice_seconds`` suits conditions the daemon does not wait for (an image
        that became known). Returns the last state seen: check :attr:`Workload.terminal`.
        """
        done = until or (lambda w: w.terminal)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_seconds if deadline is None else deadline - time.monotonic()
            workload = self.wait(workload_id, max(0.0, min(slice_seconds, left)))
            if done(workload) or workload.terminal:
                return workload
            if deadline is not None and time.monotonic() >= deadline:
                return workload

    def cancel(self, workload_id: object) -> None:
        self._do(_Call("DELETE", f"/v1/workloads/{_wid(workload_id)}", _nothing))

    def log(self, workload_id: object, message: str, level: str = "INFO") -> None:
        """Append a message to the workload's log stream (the id need not exist yet)."""
        body = {"message": message, "level": level}
        path = f"/v1/workloads/{_wid(workload_id)}/logs"
        self._do(_Call("POST", path, _nothing, json=body, idempotent=False))

    @overload
    def logs(
        self, workload_id: object, format: LogFormat = ..., follow: Literal[False] = ...
    ) -> str: ...
    @overload
    def logs(
        self, workload_id: object, format: LogFormat = ..., *, follow: Literal[True]
    ) -> Iterator[str]: ...

    def logs(
        self, workload_id: object, format: LogFormat = "text", follow: bool = False
    ) -> str | Iterator[str]:
        """The log stream as text; with ``follow`` an iterator of lines until the end.

        Following holds one request open until the workload is terminal: it has a
        connect timeout, but no read timeout, since a quiet runner is not an error.
        """
        if not follow:
            return self._do(self._logs_call(workload_id, format))
        return self._follow(workload_id, format)

    def _follow(self, workload_id: object, format: LogFormat) -> Iterator[str]:
        path = f"/v1/workloads/{_wid(workload_id)}/logs"
        params = {"format": format, "follow": "true"}
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            with self._http.stream(
                "GET", path, params=params, headers=self._headers(), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, _detail(response), method="GET", path=path)
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise _unreachable(self.config, exc) from exc

    def build(
        self,
        workload_id: object,
        dockerfile: str,
        image_name: str,
        workload_type: str | None = None,
        timeout_seconds: int = 0,
        reuse_images: Mapping[str, str] | None = None,
    ) -> Workload:
        """Ask for a runner image; ``image`` is set at once when no build is needed."""
        call = self._build_call(
            workload_id, dockerfile, image_name, workload_type, timeout_seconds, reuse_images
        )
        return self._do(call)


def _unreachable(config: ClientConfig, exc: Exception) -> DaemonUnreachable:
    return DaemonUnreachable(
        f"cannot reach zwmd at {config.address} ({type(exc).__name__}: {exc or 'no answer'}); "
        "is the daemon running? Start it with `zwmd serve` (or `zwmd serve --local`) "
        "and point ZWMD_URL or ZWMD_API_SOCKET at it"
    )


def _timed_out(config: ClientConfig, call: _Call[Any], exc: Exception) -> DaemonTimeout:
    seconds = call.timeout or config.timeout
    return DaemonTimeout(
        f"zwmd at {config.address} did not answer {call.method} {call.path} "
        f"within {seconds:g} s ({type(exc).__name__})"
    )
