"""Where the client finds the daemon, how long it waits, and for how long it retries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from zwmd.apiclient.answers import ZwmdError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8390
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ClientConfig:
    """Where the daemon is and how to authenticate; see :meth:`from_env`."""

    url: str = DEFAULT_URL
    socket: str | None = None
    token: str | None = None
    token_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    retry_seconds: float = DEFAULT_RETRY_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """Read ``ZWMD_URL`` (``unix:/path`` allowed; unset: ``http://ZWMD_API_HOST:ZWMD_API_PORT``,
        the daemon's own listen settings, 127.0.0.1 and 8390 by default), ``ZWMD_API_SOCKET``,
        ``ZWMD_API_TOKEN``, ``ZWMD_API_TOKEN_FILE``, ``ZWMD_CLIENT_TIMEOUT`` and
        ``ZWMD_CLIENT_RETRY_SECONDS``.

        A socket, when given, wins over the URL: it needs no token.
        """
        env = os.environ if environ is None else environ
        url = env.get("ZWMD_URL") or _listen_url(env)
        socket = env.get("ZWMD_API_SOCKET") or None
        if url.startswith("unix:"):
            socket = socket or url.removeprefix("unix:").removeprefix("//")
            url = DEFAULT_URL
        timeout = _seconds(env, "ZWMD_CLIENT_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)
        retry_seconds = _seconds(env, "ZWMD_CLIENT_RETRY_SECONDS", DEFAULT_RETRY_SECONDS)
        return cls(
            url=url.rstrip("/"),
            socket=socket,
            token=env.get("ZWMD_API_TOKEN") or None,
            token_file=env.get("ZWMD_API_TOKEN_FILE") or None,
            timeout=timeout,
            retry_seconds=retry_seconds,
        )

    @property
    def address(self) -> str:
        return f"unix socket {self.socket}" if self.socket else self.url

    def read_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as handle:
                    return handle.read().strip() or None
            except OSError as exc:
                raise ZwmdError(
                    f"cannot read ZWMD_API_TOKEN_FILE {self.token_file}: {exc}"
                ) from exc
        return None


def _listen_url(env: Mapping[str, str]) -> str:
    """The daemon's ``ZWMD_API_HOST``/``ZWMD_API_PORT``, as the client reaches them."""
    host = env.get("ZWMD_API_HOST") or DEFAULT_HOST
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it on loopback
        host = DEFAULT_HOST
    port = env.get("ZWMD_API_PORT") or str(DEFAULT_PORT)
    if not port.isdigit():
        raise ZwmdError(f"ZWMD_API_PORT must be a port number, not {port!r}")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ZwmdError(f"{name} must be a number of seconds (0 or more), not {raw!r}")
    return value
