"""The HTTP face of localkube: an aiohttp application speaking the Kubernetes REST API.

Design notes:

* One catch-all route parses ``/api/v1/...`` and ``/apis/{group}/{version}/...`` into
  (resource, namespace, name, subresource) and dispatches on the HTTP method; the
  resource table in :mod:`zwmd.localkube.admission` decides what is served.
* Reads answer from the store's pre-encoded bytes: a list is assembled with
  ``bytes.join`` and never re-serialised. Errors are ``ApiError`` rendered as ``Status``.
* Deletion follows the apiserver: ``propagationPolicy`` from the query or a
  DeleteOptions body; without one, ``batch/v1`` Jobs orphan their pods (the API's
  historical default that catches clients which forget to ask for Background); the
  answer is ``202`` with the object while finalizers hold it, else the deleted Pod or a
  Success Status.
* Admission that needs the requester (OwnerReferencesPermissionEnforcement, when on:
  :mod:`zwmd.localkube.ownerrefs`) is handed to the store's create/replace/patch as a
  callback, which sees the object after defaulting and validation, as upstream's
  validating admission does; PodSecurity needs only the namespace and runs in the store,
  so pods the Job controller creates pass through it too.
* Pagination: ``continue`` is an opaque token encoding the last key served; items are
  ordered by (namespace, name) as etcd orders its keys.
* A middleware applies injected faults (latency, 429/500) before any API request, notes
  what each connection serves (what a stall matches) and holds a stalled connection's
  request and its answer; the streams hold their writes (:mod:`zwmd.localkube.streaming`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from zwmd.localkube import discovery, faults, openapi, streaming, tables
from zwmd.localkube.audit import AuditEvent, AuditLog
from zwmd.localkube.authn import Authenticator
from zwmd.localkube.errors import ApiError, JsonDict, bad_request
from zwmd.localkube.faults import Faults
from zwmd.localkube.ownerrefs import OwnerReferencesEnforcement
from zwmd.localkube.rbac import Attributes, Authorizer, User, forbidden
from zwmd.localkube.resources import RESOURCES
from zwmd.localkube.routing import Route, attributes, parse_path, route_for
from zwmd.localkube.store import Admit, Store
from zwmd.localkube.streaming import PodLogSource, query_bool, query_int
from zwmd.localkube.versions import FieldValidation, warning_header

STORE: web.AppKey[Store] = web.AppKey("store", Store)
FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit", AuditLog)
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator", Authenticator)
AUTHORIZER: web.AppKey[Authorizer] = web.AppKey("authorizer", Authorizer)
_USER: web.RequestKey[User] = web.RequestKey("user", User)
POD_LOGS: web.AppKey[Any] = web.AppKey("pod_logs", object)
#: the OwnerReferencesPermissionEnforcement plugin, None when it is off
OWNER_REFERENCES: web.AppKey[Any] = web.AppKey("owner_references", object)
BOOKMARK_INTERVAL: web.AppKey[float] = web.AppKey("bookmark_interval", float)
_JSON = "application/json"
_PROTOBUF = "application/vnd.kubernetes.protobuf"
_SUBJECT_REVIEWS = "selfsubjectaccessreviews"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON, headers=headers)


def written_response(
    body: JsonDict, validation: FieldValidation, status: int = 200
) -> web.Response:
    """The answer to a write, with a ``Warning`` header for each thing it warned about."""
    response = json_response(body, status)
    for text in validation.warnings:
        response.headers.add("Warning", warning_header(text))
    return response


def field_validation(request: web.Request) -> FieldValidation:
    return FieldValidation.resolve(request.app[STORE].version, request.query.get("fieldValidation"))


def admission(request: web.Request, route: Route) -> Admit | None:
    """The requester's admission of a write (None: no plugin that needs the requester)."""
    plugin: OwnerReferencesEnforcement | None = request.app[OWNER_REFERENCES]
    if plugin is None:
        return None
    user, resource, namespace = request[_USER], route.resource, route.namespace

    def admit(old: JsonDict | None, new: JsonDict) -> None:
        plugin.check(user, resource, namespace, old, new)

    return admit


def raw_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON)


def error_response(error: ApiError) -> web.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return json_response(error.status(), error.code, headers)


async def read_json(request: web.Request) -> Any:
    media_type = request.headers.get("Content-Type", _JSON).split(";", 1)[0].strip().lower()
    if media_type == _PROTOBUF:  # kubectl 1.32+ sends it to 1.32+ servers; JSON only here
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {_JSON}, application/yaml",
        )
    raw = await request.read()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None


def _encode_continue(key: tuple[str, str], resource_version: str) -> str:
    token = orjson.dumps({"k": list(key), "rv": resource_version})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        namespace, name = data["k"]
        return str(namespace), str(name)
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise bad_request("continue key is not valid: invalid continue token") from None


def list_response(store: Store, route: Route, query: Any, accept: str = "") -> web.Response:
    limit = query_int(query, "limit")
    token = query.get("continue")
    page = store.list_page(
        route.resource,
        route.namespace,
        label_selector=query.get("labelSelector"),
        field_selector=query.get("fieldSelector"),
        limit=limit if limit and limit > 0 else None,
        after=_decode_continue(token) if token else None,
    )
    kind = RESOURCES[route.resource]
    metadata: JsonDict = {"resourceVersion": page.resource_version}
    if page.next_key is not None:
        metadata["continue"] = _encode_continue(page.next_key, page.resource_version)
        metadata["remainingItemCount"] = page.remaining
    head = orjson.dumps(
        {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": metadata}
    )
    if tables.wants_table(accept):
        items = [orjson.loads(item) for item in page.encoded_items]
        include = query.get("includeObject", "Metadata")
        return json_response(tables.table(route.resource, items, include, metadata))
    body = head[:-1] + b',"items":[' + b",".join(page.encoded_items) + b"]}"
    return raw_response(body)


def delete_options(query: Any, body: Any, resource: str) -> tuple[str, int | None, str | None]:
    options = body if isinstance(body, dict) else {}
    policy = query.get("propagationPolicy") or options.get("propagationPolicy")
    orphan = query.get("orphanDependents") or options.get("orphanDependents")
    if policy is None and orphan is not None:
        policy = "Orphan" if str(orphan).lower() == "true" else "Background"
    if policy is None:
        policy = "Orphan" if resource == "jobs" else "Background"
    grace = query_int(query, "gracePeriodSeconds")
    if grace is None and isinstance(options.get("gracePeriodSeconds"), int):
        grace = options["gracePeriodSeconds"]
    preconditions = options.get("preconditions") or {}
    return policy, grace, preconditions.get("resourceVersion")


async def handle_object(request: web.Request, store: Store, route: Route) -> web.StreamResponse:
    method, query = request.method, request.query
    resource, namespace, name = route.resource, route.namespace, route.name
    assert name is not None
    kind = RESOURCES[resource]
    status_only = route.subresource == "status"
    if route.subresource == "log" and resource == "pods" and method == "GET":
        assert namespace is not None
        return await streaming.pod_log(
            request, store, request.app[POD_LOGS], namespace, name, hold=request.app[FAULTS].hold
        )
    if route.subresource == "token" and resource == "serviceaccounts" and method == "POST":
        assert namespace is not None
        answer = request.app[AUTHENTICATOR].token_request(namespace, name, await read_json(request))
        return json_response(answer, 201)
    if route.subresource is not None and not (status_only and kind.status_subresource):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if method == "GET":
        encoded = store.get_encoded(resource, namespace, name)
        if tables.wants_table(request.headers.get("Accept", "")):
            include = query.get("includeObject", "Metadata")
            return json_response(tables.table(resource, [orjson.loads(encoded)], include, {}))
        return raw_response(encoded)
    if method == "PUT":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise bad_request("the body of a PUT must be an object")
        if status_only:
            version = (body.get("metadata") or {}).get("resourceVersion")
            return json_response(
                store.update_status(
                    resource, namespace, name, body.get("status") or {}, resource_version=version
                )
            )
        validation = field_validation(request)
        replaced = store.replace(
            resource, namespace, name, body, validation, admit=admission(request, route)
        )
        return written_response(replaced, validation)
    if method == "PATCH":
        body = await read_json(request)
        content_type = request.headers.get("Content-Type", "application/merge-patch+json")
        validation = field_validation(request)
        validation.patch_type, validation.patch_body = content_type.split(";")[0].strip(), body
        patched = store.patch(
            resource,
            namespace,
            name,
            body,
            content_type,
            status=status_only,
            validation=validation,
            admit=admission(request, route),
        )
        return written_response(patched, validation)
    if method == "DELETE" and not status_only:
        policy, grace, precondition = delete_options(query, await read_json(request), resource)
        result = store.delete(
            resource, namespace, name, policy, grace, resource_version=precondition
        )
        metadata = result["metadata"]
        if metadata.get("deletionTimestamp") and metadata.get("finalizers"):
            return json_response(result, 202)
        if resource == "pods":
            return json_response(result)
        details = {"name": name, "kind": resource, "uid": metadata["uid"]}
        if kind.group:
            details["group"] = kind.group
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )
    raise ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


async def handle_collection(request: web.Request, store: Store, route: Route) -> web.StreamResponse:
    if request.method == "GET":
        if query_bool(request.query, "watch"):
            return await streaming.watch(
                request,
                store,
                route.resource,
                route.namespace,
                bookmark_interval=request.app[BOOKMARK_INTERVAL],
                hold=request.app[FAULTS].hold,
            )
        return list_response(store, route, request.query, request.headers.get("Accept", ""))
    if request.method == "POST":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise bad_request("the body of a POST must be an object")
        if request.query.get("dryRun"):
            raise bad_request("dryRun is not supported by localkube")
        validation = field_validation(request)
        created = store.create(
            route.resource, route.namespace, body, validation, admit=admission(request, route)
        )
        return written_response(created, validation, 201)
    raise ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


async def access_review(request: web.Request) -> web.Response:
    """A SelfSubjectAccessReview, answered for the asking user from the RBAC policy."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("the body of a SelfSubjectAccessReview must be an object")
    spec = body.get("spec") or {}
    wanted = spec.get("resourceAttributes") or {}
    other = spec.get("nonResourceAttributes") or {}
    user: User = request[_USER]
    if wanted:
        asked = Attributes(
            user,
            str(wanted.get("verb", "")),
            resource=str(wanted.get("resource", "")),
            group=str(wanted.get("group", "")),
            subresource=str(wanted.get("subresource", "")),
            namespace=str(wanted.get("namespace", "")),
            name=str(wanted.get("name", "")),
        )
    elif other:
        asked = Attributes(user, str(other.get("verb", "")), path=str(other.get("path", "")))
    else:
        raise ApiError(
            422,
            "Invalid",
            'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
            'spec.resourceAttributes: Invalid value: "null": exactly one of '
            "nonResourceAttributes or resourceAttributes must be specified",
        )
    decision = request.app[AUTHORIZER].authorize(asked)
    status: JsonDict = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    review = {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
    return json_response(review, 201)


async def discovery_document(
    request: web.Request, group_version: str | None, rest: list[str]
) -> web.Response | None:
    path = request.path.rstrip("/")
    if path == "/version":
        return json_response(request.app[STORE].version.version_info())
    if path == "/api":
        return json_response(discovery.core_versions(request.host))
    if path.startswith("/openapi/"):
        return openapi_document(request, path)
    if path == "/apis":
        return json_response(discovery.group_list())
    if group_version is not None and not rest:
        document = discovery.resource_list(group_version)
        return json_response(document) if document else None
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "apis":
        document = discovery.group(parts[1])
        return json_response(document) if document else None
    return None


def openapi_document(request: web.Request, path: str) -> web.Response | None:
    version = request.app[STORE].version
    if path == "/openapi/v2":
        return raw_response(openapi.swagger(version, request.headers.get("Accept", "")))
    if path == "/openapi/v3":
        return json_response(openapi.discovery(version))
    document = openapi.group_version_document(version, path.removeprefix("/openapi/v3/"))
    return raw_response(document) if document is not None else None


async def dispatch(request: web.Request) -> web.StreamResponse:
    parsed = parse_path(request.path)
    group_version, rest = parsed if parsed else (None, [])
    if request.method == "GET":
        document = await discovery_document(request, group_version, rest)
        if document is not None:
            return document
    if (
        group_version == "authorization.k8s.io/v1"
        and rest == [_SUBJECT_REVIEWS]
        and request.method == "POST"
    ):
        return await access_review(request)
    route = route_for(group_version, rest) if group_version else None
    if route is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    store = request.app[STORE]
    failure = request.app[FAULTS].take_failure(
        route.verb(request.method, request.query), route.resource
    )
    if failure is not None:
        raise failure
    if route.name is None:
        return await handle_collection(request, store, route)
    return await handle_object(request, store, route)


async def _audit(request: web.Request, code: int) -> None:
    parsed = parse_path(request.path)
    route = route_for(*parsed) if parsed else None
    if route is None:
        return  # discovery, or no such resource: not an API request on an object
    user: User | None = request.get(_USER)
    body = None
    if request.app[AUDIT].level == "Request" and request.method in ("POST", "PUT", "PATCH"):
        raw = await request.read()  # aiohttp keeps the body once read
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
    event = AuditEvent(
        verb=route.verb(request.method, request.query),
        resource=route.resource,
        subresource=route.subresource or "",
        namespace=route.namespace or "",
        name=route.name or "",
        request_uri=str(request.rel_url),
        code=code,
        user=user.name if user else "",
        request_object=body,
    )
    request.app[AUDIT].record(event)


def authorize(request: web.Request) -> None:
    """Authenticate the request and let RBAC decide it (401 or 403 when refused)."""
    user = request.app[AUTHENTICATOR].authenticate(request.headers.get("Authorization"))
    request[_USER] = user
    asked = attributes(user, request.method, request.path, request.query)
    decision = request.app[AUTHORIZER].authorize(asked)
    if not decision.allowed:
        raise forbidden(asked, decision.reason)


def rbac_words(request: web.Request) -> tuple[str, str]:
    """``(verb, resource)`` of an API request as RBAC names them (``get``, ``pods/log``)."""
    asked = attributes(User(""), request.method, request.path, request.query)
    if not asked.is_resource_request:
        return asked.verb, ""
    if asked.subresource:
        return asked.verb, f"{asked.resource}/{asked.subresource}"
    return asked.verb, asked.resource


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    faults_ = request.app[FAULTS]
    # fault control (``/localkube/...``) is never delayed or held
    transport = None if request.path.startswith("/localkube/") else request.transport
    try:
        if transport is not None:
            faults_.serving(transport, rbac_words(request))
            await faults_.hold(transport)
            if faults_.latency:
                await asyncio.sleep(faults_.latency)
        try:
            if transport is not None:
                authorize(request)
            response: web.StreamResponse = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except web.HTTPException:
            raise
        except Exception as error:  # a bug in localkube: answer as the apiserver would
            response = error_response(
                ApiError(500, "InternalError", f"Internal error occurred: {error!r}")
            )
        if transport is not None:
            await faults_.hold(transport)  # an answer due while stalled waits
            await _audit(request, response.status)
        return response
    finally:
        if transport is not None:
            faults_.serving(transport, None)


async def _audit_trail(request: web.Request) -> web.Response:
    events = [event.to_json() for event in request.app[AUDIT].events()]
    return json_response({"items": events})


def create_app(
    store: Store,
    faults_: Faults,
    *,
    pod_logs: PodLogSource | None = None,
    bookmark_interval: float = 5.0,
    audit: AuditLog | None = None,
    authenticator: Authenticator | None = None,
    owner_references_enforcement: bool = False,
) -> web.Application:
    """The aiohttp application serving ``store``."""
    app = web.Application(middlewares=[api_errors], client_max_size=64 * 1024 * 1024)
    app[STORE] = store
    app[FAULTS] = faults_
    app[AUDIT] = audit or AuditLog()
    app[AUTHENTICATOR] = authenticator or Authenticator(store)
    app[AUTHORIZER] = Authorizer(store)
    app[OWNER_REFERENCES] = (
        OwnerReferencesEnforcement(app[AUTHORIZER]) if owner_references_enforcement else None
    )
    app[POD_LOGS] = pod_logs
    app[BOOKMARK_INTERVAL] = bookmark_interval
    app.add_routes(faults.routes(faults_))
    app.router.add_get("/localkube/audit", _audit_trail)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app
