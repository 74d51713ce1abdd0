"""Mode decisions and credential lookup, without a registry or a cluster."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from zwmd.images.credentials import CredentialSource, dockerconfigjson
from zwmd.images.modes import ImageConfig, decide, full_image_name

pytestmark = pytest.mark.anyio


def test_registry_paths_are_kept_in_the_full_name() -> None:
    assert (
        full_image_name("registry.example:5000/team/", "zenml-runner:abc")
        == "registry.example:5000/team/zenml-runner:abc"
    )


def test_local_mode_builds_nothing_and_says_what_it_would_build() -> None:
    config = ImageConfig(mode="build", docker_registry="registry.example/team", local=True)
    decision = decide(config, "zenml-runner:abc", {})
    assert decision.image == "zenml-runner:abc"
    assert decision.build is None
    assert "would build registry.example/team/zenml-runner:abc" in decision.message
    reuse = decide(ImageConfig(local=True), "zenml-runner:abc", {})
    assert reuse.image == "zenml-runner:abc"


def test_reuse_falls_back_to_the_one_image_all_keys_share() -> None:
    images = {"step_a": "registry.example/app:1", "step_b": "registry.example/app:1"}
    assert decide(ImageConfig(), "zenml-runner:abc", images).image == "registry.example/app:1"
    mixed = {"step_a": "registry.example/app:1", "step_b": "registry.example/app:2"}
    failure = decide(ImageConfig(), "zenml-runner:abc", mixed).failure
    assert failure is not None
    assert "image keys: step_a, step_b" in failure


async def test_the_config_file_wins_and_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"https://registry.example/v1/": {"auth": "YTpi"}}}))
    asked: list[str] = []

    async def hook(host: str) -> dict[str, Any]:
        asked.append(host)
        return {host: {"auth": "cGx1Z2luOng="}}

    source = CredentialSource(config_path=path, hook=hook)
    assert await source.entry("registry.example") == {"auth": "YTpi"}
    assert await source.entry("other.example") == {"auth": "cGx1Z2luOng="}
    assert asked == ["other.example"]
    path.write_text(json.dumps({"auths": {"registry.example": {"auth": "Yzpk"}}}))
    os.utime(path, (1, 1))
    assert await source.entry("registry.example") == {"auth": "Yzpk"}


async def test_hook_credentials_are_refreshed_before_they_expire() -> None:
    now = [1_000_000.0]
    answers: list[float] = []

    async def hook(host: str) -> dict[str, Any]:
        answers.append(now[0])
        return {host: {"username": "AWS", "password": "t", "expires_at": now[0] + 12 * 3600}}

    source = CredentialSource(hook=hook, clock=lambda: now[0])
    await source.entry("registry.example")
    now[0] += 11 * 3600  # within the 12 hours, before the 10-minute margin
    await source.entry("registry.example")
    assert len(answers) == 1
    now[0] += 3600 - 300  # 5 minutes before the expiry: asked again
    await source.entry("registry.example")
    assert len(answers) == 2


async def test_an_expiry_in_the_past_is_used_without_a_refresh_loop() -> None:
    calls = 0

    async def hook(host: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {host: {"auth": "YTpi", "expires_at": "2015-01-01T00:00:00Z"}}

    source = CredentialSource(hook=hook)
    for _ in range(5):
        assert await source.entry("registry.example") is not None
    assert calls == 1


def test_secrets_never_carry_the_expiry() -> None:
    body = dockerconfigjson(
        {"registry.example": {"username": "u", "password": "p", "expires_at": 1.0}}
    )
    auth = base64.b64encode(b"u:p").decode()
    assert json.loads(body) == {"auths": {"registry.example": {"auth": auth}}}
