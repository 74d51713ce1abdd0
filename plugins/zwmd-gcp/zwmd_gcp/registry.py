"""Container Registry and Artifact Registry credentials from Google's default credentials.

Docker's ``oauth2accesstoken`` scheme: the user name is ``oauth2accesstoken``, the
password an OAuth2 access token of the default credentials (workload identity, the
metadata server, a key file in ``GOOGLE_APPLICATION_CREDENTIALS``). Tokens last about an
hour; one :class:`~zwmd.tokens.ExpiringToken` keeps the current one and fetches the next
10 minutes before expiry.

Which registries: ``gcr.io`` and its regional hosts (``*.gcr.io``), and Artifact
Registry's ``<location>-docker.pkg.dev``.

The token source is a parameter (:func:`set_token_source`): tests give one that counts
and never needs a key; the default asks gcloud-aio-auth.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

from zwmd.tokens import ExpiringToken, Fetched

__all__ = ["SCOPES", "auths_for", "google_token", "is_google_registry", "set_token_source"]

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
USER = "oauth2accesstoken"

TokenSource = Callable[[], Awaitable[Fetched[str]]]


def is_google_registry(host: str) -> bool:
    """``gcr.io``, ``*.gcr.io`` or ``*-docker.pkg.dev`` (no port)."""
    host = host.lower()
    return host == "gcr.io" or host.endswith(".gcr.io") or host.endswith("-docker.pkg.dev")


async def google_token() -> Fetched[str]:
    """An access token of Google's default credentials, and when it expires."""
    from gcloud.aio.auth import Token

    token = Token(scopes=SCOPES)
    try:
        response = await token.refresh(timeout=30)
    finally:
        await token.close()
    return Fetched(response.value, time.time() + response.expires_in)


_token: ExpiringToken[str] = ExpiringToken(google_token, refresh_margin=600)


def set_token_source(
    source: TokenSource, *, clock: Callable[[], float] = time.time
) -> ExpiringToken[str]:
    """Use ``source`` for tokens from now on (tests); returns the new cache."""
    global _token
    _token = ExpiringToken(source, refresh_margin=600, clock=clock)
    return _token


async def auths_for(registry: str) -> dict[str, Any]:
    """Docker config ``auths`` for ``registry``, with ``expires_at``."""
    fetched = await _token.get()
    auth = base64.b64encode(f"{USER}:{fetched.value}".encode()).decode()
    return {registry: {"auth": auth, "expires_at": fetched.expires_at}}
