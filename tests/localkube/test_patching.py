"""The patch functions on their own: RFC 6902 operations, RFC 7386 and keyed-list merges."""

from __future__ import annotations

from typing import Any

import pytest

from zwmd.localkube.errors import ApiError
from zwmd.localkube.patching import apply_patch, json_patch, merge_patch

DOCUMENT: dict[str, Any] = {"a": {"b": [1, 2, 3], "c/d": "slash", "e~f": "tilde"}, "g": "h"}


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ({"op": "add", "path": "/a/b/1", "value": 9}, [1, 9, 2, 3]),
        ({"op": "add", "path": "/a/b/-", "value": 9}, [1, 2, 3, 9]),
        ({"op": "replace", "path": "/a/b/0", "value": 9}, [9, 2, 3]),
        ({"op": "remove", "path": "/a/b/2"}, [1, 2]),
        ({"op": "copy", "from": "/a/b/0", "path": "/a/b/0"}, [1, 1, 2, 3]),
        ({"op": "move", "from": "/a/b/2", "path": "/a/b/0"}, [3, 1, 2]),
    ],
)
def test_json_patch_array_operations(operation: dict[str, Any], expected: list[int]) -> None:
    assert json_patch(DOCUMENT, [operation])["a"]["b"] == expected
    assert DOCUMENT["a"]["b"] == [1, 2, 3]  # the input is left alone


def test_json_pointer_escapes() -> None:
    patched = json_patch(
        DOCUMENT,
        [
            {"op": "replace", "path": "/a/c~1d", "value": "x"},
            {"op": "remove", "path": "/a/e~0f"},
        ],
    )
    assert patched["a"] == {"b": [1, 2, 3], "c/d": "x"}


@pytest.mark.parametrize(
    ("operations", "code"),
    [
        ([{"op": "test", "path": "/g", "value": "nope"}], 422),
        ([{"op": "remove", "path": "/missing"}], 422),
        ([{"op": "jump", "path": "/g"}], 400),
        ([{"op": "add", "path": "/g"}], 400),
        ([{"op": "add", "path": "no-slash", "value": 1}], 400),
    ],
)
def test_json_patch_errors(operations: list[Any], code: int) -> None:
    with pytest.raises(ApiError) as caught:
        json_patch(DOCUMENT, operations)
    assert caught.value.code == code


def test_merge_patch_removes_nulls_and_replaces_lists() -> None:
    patched = merge_patch(DOCUMENT, {"a": {"b": [7], "c/d": None}, "new": {"x": 1}})
    assert patched == {"a": {"b": [7], "e~f": "tilde"}, "g": "h", "new": {"x": 1}}


def test_strategic_merge_merges_keyed_lists_and_deletes_items() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    patch = {
        "spec": {
            "containers": [
                {"name": "b", "image": "2"},
                {"name": "c", "image": "3"},
                {"name": "a", "$patch": "delete"},
            ]
        }
    }
    patched = apply_patch(pod, patch, "application/strategic-merge-patch+json")
    assert patched["spec"]["containers"] == [
        {"name": "b", "image": "2"},
        {"name": "c", "image": "3"},
    ]
    merged = apply_patch(pod, patch, "application/merge-patch+json")
    assert len(merged["spec"]["containers"]) == 3  # a plain merge patch replaces the list


def test_server_side_apply_is_unsupported() -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch({}, {}, "application/apply-patch+yaml")
    assert caught.value.code == 415
