"""Authentication by bearer token: the cluster administrator, and service accounts.

Design notes:

* Two kinds of token, as on a cluster set up by kubeadm: the administrator's (the
  kubeconfig localkube writes; user ``localkube-admin`` in ``system:masters``), and
  service-account tokens minted by the TokenRequest API
  (``POST .../serviceaccounts/{name}/token``, what ``kubectl create token`` calls).
* A service-account token is bound to the account's uid: it stops working when the
  account is deleted (or deleted and created again), and when it expires. Tokens are
  opaque random strings, not signed JWTs: nothing in localkube's clients reads them.
* A request without an ``Authorization`` header acts as the ``unauthenticated`` user
  given: by default the administrator, as on the apiserver's former localhost insecure
  port (removed in 1.20). localkube speaks plain HTTP, and kubectl (client-go's
  clientcmd) sends no credentials over plain HTTP, so this is what lets kubectl work.
  ``unauthenticated="anonymous"`` gives what the secure port does: ``system:anonymous``
  in ``system:unauthenticated``, which RBAC lets read only ``/version`` and the health
  paths. The daemon's tests run that way, so a client that forgot its token is refused.
* A token that is not valid: 401 Unauthorized, as the apiserver answers.
"""

from __future__ import annotations

import datetime
import secrets
import time
from dataclasses import dataclass
from typing import Any

from zwmd.localkube.errors import ApiError, JsonDict
from zwmd.localkube.kubeconfig import ADMIN_TOKEN
from zwmd.localkube.rbac import ANONYMOUS, AUTHENTICATED, MASTERS, User

__all__ = ["ADMIN_TOKEN", "Authenticator"]

ADMIN = User("localkube-admin", (MASTERS, AUTHENTICATED))
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600


@dataclass(frozen=True)
class _Bound:
    namespace: str
    name: str
    uid: str
    expires: float


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


class Authenticator:
    """Maps a request's bearer token to the :class:`User` it stands for."""

    def __init__(self, store: Any, *, unauthenticated: str = "admin") -> None:
        if unauthenticated not in ("admin", "anonymous"):
            raise ValueError(f"unauthenticated: {unauthenticated!r} is not admin or anonymous")
        self.store = store
        self.unauthenticated = ADMIN if unauthenticated == "admin" else ANONYMOUS
        self._tokens: dict[str, _Bound] = {}

    def authenticate(self, authorization: str | None) -> User:
        if not authorization:
            return self.unauthenticated
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if secrets.compare_digest(token, ADMIN_TOKEN):
            return ADMIN
        bound = self._tokens.get(token)
        if bound is None or bound.expires < time.time():
            raise unauthorized()
        try:
            account = self.store.get("serviceaccounts", bound.namespace, bound.name)
        except ApiError:
            raise unauthorized() from None
        if account["metadata"]["uid"] != bound.uid:
            raise unauthorized()
        return User.service_account(bound.namespace, bound.name, bound.uid)

    def mint(self, namespace: str, name: str, expiration_seconds: int | None = None) -> JsonDict:
        """A token for service account ``namespace/name``: the TokenRequest's ``status``."""
        account = self.store.get("serviceaccounts", namespace, name)
        seconds = expiration_seconds or DEFAULT_EXPIRATION_SECONDS
        if seconds < MIN_EXPIRATION_SECONDS:
            raise ApiError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: '
                "spec.expirationSeconds: Invalid value: "
                f"{seconds}: may not specify a duration less than 10 minutes",
            )
        token = secrets.token_urlsafe(32)
        expires = time.time() + seconds
        self._tokens[token] = _Bound(namespace, name, account["metadata"]["uid"], expires)
        stamp = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        return {"token": token, "expirationTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def token_request(self, namespace: str, name: str, body: Any) -> JsonDict:
        """The answer to ``POST .../serviceaccounts/{name}/token``."""
        spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
        seconds = spec.get("expirationSeconds")
        status = self.mint(namespace, name, seconds if isinstance(seconds, int) else None)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"],
                "expirationSeconds": seconds or DEFAULT_EXPIRATION_SECONDS,
                "boundObjectRef": None,
            },
            "status": status,
        }
