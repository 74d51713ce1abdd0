"""Real OCI registries for the tests: Debian's ``docker-registry`` on 127.0.0.1.

:func:`start_registry` runs ``docker-registry serve config.yml`` on a free loopback port
with one of three auth set-ups: none, htpasswd (Basic), or a Bearer token service
(:class:`TokenServer`, written here: it checks Basic credentials and issues ES256 JWTs
signed with a self-signed certificate, which the registry trusts through its
``auth.token.rootcertbundle``). :func:`push_image` makes a tag exist by hand (two blob
uploads and a manifest PUT), the way a builder would.

When the binary is missing the tests are skipped with the reason, unless ``CI`` is set:
then they fail, because CI installs it (``.ci/run``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.daemon_process import free_port

USER = "builder"
PASSWORD = "s3cret-push"
SERVICE = "zwmd-test-registry"
ISSUER = "zwmd-test-token-issuer"


def registry_binary() -> str:
    """The path of ``docker-registry``; skips (or fails under CI) when it is missing."""
    found = shutil.which("docker-registry")
    if found is None:
        why = "docker-registry is not installed (apt-get install -y docker-registry apache2-utils)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return found


def _htpasswd(path: Path) -> None:
    tool = shutil.which("htpasswd")
    if tool is None:
        why = "htpasswd is not installed (apt-get install -y apache2-utils)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    out = subprocess.run([tool, "-Bbn", USER, PASSWORD], check=True, capture_output=True)
    path.write_bytes(out.stdout)


# -- the Bearer token service ---------------------------------------------------------


@dataclass
class TokenServer:
    """A token endpoint: Basic credentials in, an ES256 JWT for the asked scope out."""

    directory: Path
    port: int = field(default_factory=free_port)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = self.directory / "token-ca.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, scope: str) -> str:
        access = []
        kind, _, rest = scope.partition(":")
        repo, _, actions = rest.rpartition(":")
        if kind == "repository" and repo:
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": SERVICE,
            "iat": now,
            "nbf": now - 10,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        headers = {"x5c": [base64.b64encode(der).decode()]}
        return jwt.encode(claims, self.key, algorithm="ES256", headers=headers)

    @contextmanager
    def serving(self) -> Iterator[TokenServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                scope = (query.get("scope") or [""])[0]
                server.requests.append(scope)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]})
                    return
                self._reply(200, {"token": server.token(scope), "expires_in": 300})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()


# -- the registry ----------------------------------------------------------------------


@dataclass
class Registry:
    """A running registry: where it is, and how to log in to it."""

    host: str  # 127.0.0.1:PORT
    auth: str  # "none" | "basic" | "token"
    process: subprocess.Popen[bytes]
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def docker_config(self, path: Path, *, password: str = PASSWORD) -> Path:
        """A docker ``config.json`` with credentials for this registry."""
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path

    def headers(self, repository: str) -> dict[str, str]:
        """Authorization for pushing to ``repository`` (what ``docker login`` would send)."""
        if self.auth == "basic":
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if self.auth == "token" and self.token_server is not None:
            bearer = self.token_server.token(f"repository:{repository}:pull,push")
            return {"Authorization": f"Bearer {bearer}"}
        return {}


@contextmanager
def start_registry(directory: Path, auth: str = "none") -> Iterator[Registry]:
    """``docker-registry serve`` on 127.0.0.1 with ``auth`` (none, basic, token)."""
    binary = registry_binary()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "zwmd-test"},
    }
    token_server: TokenServer | None = None
    with contextlib.ExitStack() as stack:
        if auth == "basic":
            _htpasswd(directory / "htpasswd")
            config["auth"] = {
                "htpasswd": {"realm": "zwmd-test", "path": str(directory / "htpasswd")}
            }
        elif auth == "token":
            token_server = stack.enter_context(TokenServer(directory).serving())
            config["auth"] = {
                "token": {
                    "realm": token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(token_server.cert_path),
                }
            }
        (directory / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (directory / "registry.log").open("wb")
        process = subprocess.Popen(
            [binary, "serve", str(directory / "config.yml")], stdout=log, stderr=log
        )
        registry = Registry(f"127.0.0.1:{port}", auth, process, token_server)
        try:
            _wait_ready(registry, directory)
            yield registry
        finally:
            process.terminate()
            process.wait(10)
            log.close()


def _wait_ready(registry: Registry, directory: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError((directory / "registry.log").read_text())
        try:
            httpx.get(registry.url + "/v2/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the registry did not start: " + (directory / "registry.log").read_text())


# -- pushing by hand -------------------------------------------------------------------


def _layer() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"hello from zwmd\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(registry: Registry, repository: str, tag: str) -> str:
    """Push a one-layer image as ``repository:tag``; returns its manifest digest."""
    headers = registry.headers(repository)
    layer = _layer()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer))]},
            "config": {},
        }
    ).encode()
    with httpx.Client(base_url=registry.url, headers=headers, timeout=10) as http:
        for blob in (layer, config):
            started = http.post(f"/v2/{repository}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["Location"]
            separator = "&" if "?" in location else "?"
            done = http.put(
                f"{location}{separator}digest={_digest(blob)}",
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _digest(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _digest(layer),
                }
            ],
        }
        put = http.put(
            f"/v2/{repository}/manifests/{tag}",
            content=json.dumps(manifest).encode(),
            headers={"Content-Type": str(manifest["mediaType"])},
        )
        assert put.status_code == 201, put.text
        return str(put.headers["Docker-Content-Digest"])
