"""PATCH bodies: JSON merge patch, strategic merge patch and JSON patch (RFC 6902).

Design notes:

* kubernetes-asyncio sends a dict or model as ``application/strategic-merge-patch+json``
  and a list as ``application/json-patch+json``; kubectl may also send
  ``application/merge-patch+json``. Server-side apply is not served (415).
* Strategic merge is a merge patch with one refinement that matters to controllers: a
  list of objects that all carry a merge key (``name`` for containers, env, volumes,
  ports; ``type`` for conditions; ``uid`` for ownerReferences) is merged item by item
  instead of replaced, and ``$patch: delete`` in such an item removes it. Everything
  else (``$retainKeys``, ``$setElementOrder``) is ignored, which real clients rarely use.
* Functions never mutate their inputs: they return a new document.
"""

from __future__ import annotations

import copy
from typing import Any

from zwmd.localkube.errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_MERGE_KEYS = ("name", "type", "uid")


def apply_patch(document: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply ``patch`` of the given content type to a copy of ``document``."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        return json_patch(document, patch)
    if media_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise bad_request("merge patch must be a JSON object")
        result = merge_patch(document, patch, strategic=media_type == STRATEGIC_MERGE_PATCH)
        assert isinstance(result, dict)
        return result
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}",
    )


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge of ``patch`` into ``target`` (optionally merging keyed lists)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif strategic and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value)
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _merge_key(items: list[Any]) -> str | None:
    for key in _MERGE_KEYS:
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def _merge_keyed_list(current: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(patch)
    if key is None or _merge_key(current) != key:
        return copy.deepcopy(patch)
    merged = list(current)
    positions = {item[key]: index for index, item in enumerate(merged)}
    deleted: set[Any] = set()
    for item in patch:
        if item.get("$patch") == "delete":
            deleted.add(item[key])
        elif item[key] in positions:
            index = positions[item[key]]
            merged[index] = merge_patch(merged[index], item, strategic=True)
        else:
            positions[item[key]] = len(merged)
            merged.append(merge_patch({}, item, strategic=True))
    return [item for item in merged if item[key] not in deleted]


# --- RFC 6902 -------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _failed(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request: {message}")


def _container(document: Any, parts: list[str], path: str) -> Any:
    node = document
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _failed(f"path {path!r} does not exist")
    return node


def _get(document: Any, path: str) -> Any:
    return _container(document, _pointer(path), path)


def _add(document: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _container(document, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _failed(f"index {last!r} out of range in {path!r}")
    else:
        raise _failed(f"cannot add to {path!r}")
    return document


def _remove(document: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise _failed("cannot remove the whole document")
    parent = _container(document, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return document, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return document, parent.pop(int(last))
    raise _failed(f"path {path!r} does not exist")


def json_patch(document: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """Apply RFC 6902 operations to a copy of ``document``; a failed ``test`` is a 422."""
    result: Any = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid JSON patch operation {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise bad_request(f"JSON patch operation {op!r} needs a value")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            result, _ = _remove(result, path)
        elif op == "replace":
            result, _ = _remove(result, path) if _pointer(path) else (result, None)
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise bad_request(f"JSON patch operation {op!r} needs 'from'")
            if op == "move":
                result, value = _remove(result, source)
            else:
                value = copy.deepcopy(_get(result, source))
            result = _add(result, path, value)
        elif op == "test":
            if _get(result, path) != operation["value"]:
                raise _failed(f"test operation failed at {path!r}")
        else:
            raise bad_request(f"unknown JSON patch operation {op!r}")
    if not isinstance(result, dict):
        raise _failed("the patched document is not an object")
    return result
