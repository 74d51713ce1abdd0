"""``zwmd doctor``'s registry row against a real registry: Debian's ``docker-registry``
with htpasswd Basic auth on 127.0.0.1, the cluster a localkube in the test's event loop.

What an operator sees: with the right credentials in ``ZWMD_REGISTRY_CONFIG`` the row
passes and the exit code is 0; with a wrong password, or none, the row fails, the fix
line names the registry and where the credentials came from, and the exit code is 1.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.images.registries import Registry, start_registry
from tests.ops.test_doctor import K, doctor, environment, namespace_with
from zwmd.localkube import LocalKube

pytestmark = pytest.mark.anyio


@pytest.fixture
async def kube() -> AsyncIterator[LocalKube]:
    async with LocalKube(kubelet=None) as localkube:
        yield localkube


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(tmp_path_factory.mktemp("registry-basic"), "basic") as running:
        yield running


def fix_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("fix (")]


def registry_env(
    kube: LocalKube, tmp_path: Path, registry: Registry, config: Path | None
) -> dict[str, str]:
    """Build runner images into ``registry`` (path ``team``) over plain HTTP."""
    extra = {
        f"{K}BUILD_RUNNER_IMAGE": "true",
        f"{K}DOCKER_REGISTRY": f"{registry.host}/team",
        "ZWMD_INSECURE_REGISTRIES": registry.host,
    }
    if config is not None:
        extra["ZWMD_REGISTRY_CONFIG"] = str(config)
    namespace = namespace_with(kube, service_account=True)
    return environment(kube, tmp_path, namespace, extra=extra)


async def test_right_credentials_pass(kube: LocalKube, tmp_path: Path, registry: Registry) -> None:
    config = registry.docker_config(tmp_path / "config.json")
    code, rows, output = await doctor(registry_env(kube, tmp_path, registry, config))
    assert code == 0, output
    assert rows["registry"] == ("ok", f"{registry.url} answers with credentials")
    assert {name for name, (status, _) in rows.items() if status != "ok"} == {"namespace"}, output
    assert "fix" not in output


async def test_a_wrong_password_fails_naming_the_registry_and_the_credentials_file(
    kube: LocalKube, tmp_path: Path, registry: Registry
) -> None:
    config = registry.docker_config(tmp_path / "config.json", password="not-the-password")
    code, rows, output = await doctor(registry_env(kube, tmp_path, registry, config))
    assert code == 1, output
    assert rows["registry"] == (
        "FAIL",
        f"the registry {registry.host} refused the configured credentials for "
        "team/zwmd-doctor: HTTP 401",
    )
    assert fix_lines(output) == [
        f"fix (registry): the credentials for {registry.host} from "
        f"ZWMD_REGISTRY_CONFIG ({config}) were refused: correct them there"
    ]
    # every other check still passes: only the credentials are wrong
    assert {name for name, (status, _) in rows.items() if status != "ok"} == {
        "namespace",
        "registry",
    }


async def test_no_credentials_for_a_registry_that_wants_them_fails_saying_where_to_put_them(
    kube: LocalKube, tmp_path: Path, registry: Registry
) -> None:
    code, rows, output = await doctor(registry_env(kube, tmp_path, registry, None))
    assert code == 1, output
    assert rows["registry"][0] == "FAIL", output
    assert registry.host in rows["registry"][1]
    assert fix_lines(output) == [
        f"fix (registry): no credentials for {registry.host}: set ZWMD_REGISTRY_CONFIG to a "
        f"docker config.json with auths for {registry.host}, or set ZWMD_REGISTRY_SECRET to a "
        "kubernetes.io/dockerconfigjson Secret"
    ]


async def test_a_credentials_file_for_other_registries_only_is_named_in_the_fix(
    kube: LocalKube, tmp_path: Path, registry: Registry
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "dTpw"}}}))
    code, rows, output = await doctor(registry_env(kube, tmp_path, registry, config))
    assert code == 1, output
    assert rows["registry"][0] == "FAIL", output
    assert fix_lines(output) == [
        f"fix (registry): no credentials for {registry.host}: add an auths entry for "
        f"{registry.host} to ZWMD_REGISTRY_CONFIG ({config}), or set ZWMD_REGISTRY_SECRET to a "
        "kubernetes.io/dockerconfigjson Secret"
    ]


async def test_a_wrong_password_in_the_secret_names_the_secret(
    kube: LocalKube, tmp_path: Path, registry: Registry
) -> None:
    config = registry.docker_config(tmp_path / "config.json", password="not-the-password")
    env = registry_env(kube, tmp_path, registry, None)
    namespace = env[f"{K}NAMESPACE"]
    kube.store.create(
        "secrets",
        namespace,
        {
            "metadata": {"name": "registry-push"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(config.read_bytes()).decode()},
        },
    )
    code, rows, output = await doctor({**env, "ZWMD_REGISTRY_SECRET": "registry-push"})
    assert code == 1, output
    assert rows["registry"][0] == "FAIL", output
    assert fix_lines(output) == [
        f"fix (registry): the credentials for {registry.host} from "
        "ZWMD_REGISTRY_SECRET (registry-push) were refused: correct them there"
    ]
