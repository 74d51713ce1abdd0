"""The OCI existence check against a real registry: anonymous, Basic, and Bearer tokens.

What an operator relies on: an image that exists is found (so nothing is built), one
that does not is reported missing, refused credentials are named as such (not taken
for "missing"), and an unreachable registry is "unknown" (zwmd then builds).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.daemon_process import free_port
from tests.images.registries import PASSWORD, USER, Registry, push_image, start_registry
from zwmd.images.registry import ImageRef, RegistryAuthError, RegistryClient, parse_challenge

pytestmark = pytest.mark.anyio


def auths(registry: Registry, password: str = PASSWORD) -> dict[str, dict[str, str]]:
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return {registry.host: {"auth": token}}


async def test_anonymous_registry_finds_a_pushed_tag_and_misses_another(tmp_path: Path) -> None:
    with start_registry(tmp_path, "none") as registry:
        push_image(registry, "team/zenml-runner", "present")
        client = RegistryClient(insecure_registries=(registry.host,))
        try:
            assert await client.exists(f"{registry.host}/team/zenml-runner:present") is True
            assert await client.exists(f"{registry.host}/team/zenml-runner:absent") is False
            assert await client.exists(f"{registry.host}/team/other:present") is False
        finally:
            await client.aclose()


async def test_basic_auth_with_the_right_password(basic_registry: Registry) -> None:
    push_image(basic_registry, "team/basic", "v1")
    client = RegistryClient(insecure_registries=(basic_registry.host,))
    try:
        image = f"{basic_registry.host}/team/basic"
        assert await client.exists(f"{image}:v1", auths(basic_registry)) is True
        assert await client.exists(f"{image}:v2", auths(basic_registry)) is False
        # learned: Basic is sent at once the second time, and still answers right
        assert await client.exists(f"{image}:v1", auths(basic_registry)) is True
    finally:
        await client.aclose()


async def test_basic_auth_refusals_are_named(basic_registry: Registry) -> None:
    client = RegistryClient(insecure_registries=(basic_registry.host,))
    image = f"{basic_registry.host}/team/basic:v1"
    try:
        with pytest.raises(RegistryAuthError, match="refused the configured credentials"):
            await client.exists(image, auths(basic_registry, "wrong"))
        with pytest.raises(RegistryAuthError, match="requires credentials and none are configured"):
            await RegistryClient(insecure_registries=(basic_registry.host,)).exists(image)
    finally:
        await client.aclose()


async def test_bearer_token_flow(token_registry: Registry) -> None:
    push_image(token_registry, "team/tokened", "v1")
    assert token_registry.token_server is not None
    asked = token_registry.token_server.requests
    client = RegistryClient(insecure_registries=(token_registry.host,))
    try:
        image = f"{token_registry.host}/team/tokened"
        before = len(asked)
        assert await client.exists(f"{image}:v1", auths(token_registry)) is True
        assert await client.exists(f"{image}:v2", auths(token_registry)) is False
        # one token for the repository's pull scope, kept for the second check
        assert asked[before:] == ["repository:team/tokened:pull"]
    finally:
        await client.aclose()


async def test_bearer_token_service_refusal_is_named(token_registry: Registry) -> None:
    client = RegistryClient(insecure_registries=(token_registry.host,))
    try:
        with pytest.raises(RegistryAuthError, match=r"token service .* refused"):
            await client.exists(
                f"{token_registry.host}/team/tokened:v1", auths(token_registry, "wrong")
            )
    finally:
        await client.aclose()


async def test_an_unreachable_registry_is_unknown() -> None:
    host = f"127.0.0.1:{free_port()}"
    client = RegistryClient(insecure_registries=(host,), timeout=2)
    try:
        assert await client.exists(f"{host}/team/zenml-runner:abc") is None
    finally:
        await client.aclose()


def test_image_names_and_challenges_are_split() -> None:
    ref = ImageRef.parse("registry.example:5000/team/zenml-runner:abc")
    assert (ref.registry, ref.repository, ref.reference) == (
        "registry.example:5000",
        "team/zenml-runner",
        "abc",
    )
    assert ImageRef.parse("registry.example/app").reference == "latest"
    assert ImageRef.parse("registry.example/app@sha256:00").reference == "sha256:00"
    with pytest.raises(ValueError, match="registry host"):
        ImageRef.parse("zenml-runner:abc")
    scheme, params = parse_challenge(
        'Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "http://127.0.0.1:1/token",
        "service": "svc",
        "scope": "repository:a/b:pull",
    }
