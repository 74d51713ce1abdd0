"""``zwmd doctor``: check, before serving, everything a daemon needs from its surroundings.

Each check prints one row (``ok``, ``FAIL``, ``warn`` or ``skip``, what was checked,
what was found) and every failure a line saying how to fix it. The exit code is 1 when
anything failed, 2 when the configuration itself is invalid, else 0.

Checks, in order (a check that depends on a failed one is skipped):

1. configuration: the settings load (the same rules as ``zwmd serve``), the chosen
   implementation's plugin is installed;
2. the Kubernetes API answers (kubeconfig or in-cluster account), and its version is one
   zwmd supports (:mod:`zwmd.kube.cluster_version`);
3. the namespace exists (a namespaced Role cannot read Namespace objects: a 403 is a
   warning, and the service account check answers for it);
4. the runner service account exists in that namespace;
5. every verb zwmd uses is allowed: one ``SelfSubjectAccessReview`` per verb and
   resource (:data:`PERMISSIONS`, the same table as ``contrib/kubernetes/rbac.yaml``);
6. the registry answers and accepts the credentials (when images are built): a
   manifest ``HEAD`` through :class:`zwmd.images.registry.RegistryClient`, with the
   credentials the daemon would use (:class:`zwmd.images.credentials.CredentialSource`);
7. the log store is writable: one record appended under a fixed doctor id, read back.

With ``--local`` it checks the cluster of a running ``zwmd serve --local``: the settings
are judged as ``serve --local`` judges them, and the cluster is reached through the
kubeconfig that daemon writes to ``ZWMD_STATE_DIR/localkube.kubeconfig`` (the local
cluster lives inside that daemon, so without one running there is nothing to check).

Design notes: nothing here writes to Kubernetes except the access reviews, which change
nothing; the log store gets one small record for the id :data:`DOCTOR_ID`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import pluggy

from zwmd.daemon.local import LOCAL_KUBECONFIG
from zwmd.daemon.starting import Configured, configure
from zwmd.images.credentials import CredentialSource
from zwmd.images.registry import RegistryAuthError, RegistryClient
from zwmd.kube import cluster_version
from zwmd.kube.client import KubeClient, KubeError, load_api_client
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey
from zwmd.plugins import resolve
from zwmd.settings import Settings, SettingsError, format_problems

EXIT_FAILED = 1
EXIT_CONFIG = 2
DOCTOR_ID = "00000000-0000-4000-8000-00000000d0c7"
REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

#: (API group, resource, verbs): what zwmd calls in its namespace, and nothing more
#: (tests/images/test_permissions_used.py holds zwmd's requests to it).
PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "get", "list", "watch", "patch", "delete")),
    ("", "pods", ("list", "watch")),
    ("", "pods/log", ("get",)),
    # delete: asked by OwnerReferencesPermissionEnforcement of what zwmd sets owners on
    ("", "secrets", ("create", "get", "update", "delete")),
    ("", "configmaps", ("create", "update", "delete")),
    ("", "events", ("list",)),
    ("", "serviceaccounts", ("get",)),
)


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    status: str  # ok | FAIL | warn | skip
    name: str
    detail: str
    fix: str = ""


@dataclass
class Doctor:
    """Runs the checks; each appends rows to :attr:`rows`."""

    configured: Configured
    kubeconfig: str | None
    rows: list[Check]

    @property
    def settings(self) -> Settings:
        return self.configured.settings

    @property
    def manager(self) -> pluggy.PluginManager:
        return self.configured.manager

    def add(self, status: str, name: str, detail: str, fix: str = "") -> None:
        self.rows.append(Check(status, name, detail, fix))

    async def run(self) -> None:
        kube = await self.kubernetes()
        if kube is None:
            for name in ("namespace", "service account", "permissions"):
                self.add("skip", name, "the Kubernetes API did not answer")
        else:
            try:
                await self.namespace(kube)
                await self.service_account(kube)
                await self.permissions(kube)
                await self.registry(kube)
            finally:
                await kube.api.close()
        if kube is None:
            await self.registry(None)
        await self.log_store()

    # -- Kubernetes ---------------------------------------------------------------------

    async def kubernetes(self) -> KubeClient | None:
        where = self.kubeconfig or "the in-cluster service account"
        try:
            api = await load_api_client(self.kubeconfig)
        except Exception as exc:  # kubernetes-asyncio raises several kinds here
            self.add(
                "FAIL",
                "Kubernetes API",
                f"no credentials from {where}: {exc}",
                "set KUBECONFIG to a kubeconfig, or run in a pod with a service account",
            )
            return None
        kube = KubeClient(api, self.settings.namespace, request_timeout=10.0)
        try:
            version = await kube.request_json("GET", "/version")
        except KubeError as exc:
            await api.close()
            self.add(
                "FAIL",
                "Kubernetes API",
                f"{api.configuration.host}: {exc}",
                "check that the apiserver in the kubeconfig is reachable from here",
            )
            return None
        self.add(
            "ok", "Kubernetes API", f"{api.configuration.host} ({version.get('gitVersion', '?')})"
        )
        self.kubernetes_version(version)
        return kube

    def kubernetes_version(self, answer: Mapping[str, Any]) -> None:
        version = cluster_version.server_version(answer)
        if version is None:
            self.add("warn", "Kubernetes version", f"not told by /version ({dict(answer)})")
            return
        policy = self.settings.pod_failure_policy is not None
        found = cluster_version.problems(version, pod_failure_policy=policy)
        text = f"{version[0]}.{version[1]}"
        if found:
            self.add("FAIL", "Kubernetes version", f"{text}: {found[0]}", "upgrade the cluster")
        elif cluster_version.note(version):
            self.add("warn", "Kubernetes version", f"{text}: {cluster_version.note(version)}")
        else:
            oldest = cluster_version.OLDEST_SUPPORTED
            self.add("ok", "Kubernetes version", f"{text} (supported: {oldest[0]}.{oldest[1]}+)")

    async def namespace(self, kube: KubeClient) -> None:
        name = self.settings.namespace
        try:
            await kube.request_json("GET", f"/api/v1/namespaces/{name}")
        except KubeError as exc:
            if exc.code == 404:
                self.add(
                    "FAIL",
                    "namespace",
                    f"{name} does not exist",
                    f"kubectl create namespace {name}  (or contrib/kubernetes/namespace.yaml)",
                )
            elif exc.code == 403:
                # the shipped Role grants nothing on Namespaces, and zwmd needs nothing
                detail = f"{name}: not checked (zwmd may not read Namespaces, nor needs to)"
                self.add("skip", "namespace", detail)
            else:
                self.add("FAIL", "namespace", f"{name}: {exc}", "see the Kubernetes API row")
            return
        self.add("ok", "namespace", name)

    async def service_account(self, kube: KubeClient) -> None:
        name, namespace = self.settings.service_account, self.settings.namespace
        try:
            await kube.get("serviceaccounts", name)
        except KubeError as exc:
            if exc.code == 404:
                self.add(
                    "FAIL",
                    "service account",
                    f"{name} does not exist in {namespace}: runner Jobs could not create pods",
                    f"kubectl -n {namespace} create serviceaccount {name}  "
                    "(or contrib/kubernetes/rbac.yaml)",
                )
            else:
                self.add("FAIL", "service account", f"{name}: {exc}", _rbac_fix(namespace))
            return
        self.add("ok", "service account", f"{name} in {namespace}")

    async def permissions(self, kube: KubeClient) -> None:
        namespace = self.settings.namespace
        denied: list[str] = []
        errors: list[str] = []
        checked = 0
        for group, resource, verbs in PERMISSIONS:
            plural, _, sub = resource.partition("/")
            for verb in verbs:
                attributes = {"namespace": namespace, "verb": verb, "group": group}
                attributes["resource"] = plural
                if sub:
                    attributes["subresource"] = sub
                review = {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attributes},
                }
                try:
                    answer = await kube.request_json("POST", REVIEWS, body=review)
                except KubeError as exc:
                    errors.append(f"{verb} {resource}: {exc}")
                    continue
                checked += 1
                if not (answer.get("status") or {}).get("allowed"):
                    denied.append(f"{verb} {resource}")
        if errors:
            self.add(
                "FAIL",
                "permissions",
                f"access reviews failed: {errors[0]}",
                "SelfSubjectAccessReviews must be creatable (they are for any authenticated user)",
            )
        elif denied:
            self.add(
                "FAIL",
                "permissions",
                f"denied in {namespace}: {', '.join(denied)}",
                _rbac_fix(namespace),
            )
        else:
            self.add("ok", "permissions", f"{checked} verbs allowed in {namespace}")

    # -- registry -----------------------------------------------------------------------

    async def registry(self, kube: KubeClient | None) -> None:
        settings = self.settings
        host = settings.registry_host
        if host is None or settings.docker_registry is None:
            self.add(
                "skip", "registry", f"none configured (runner images: {settings.runner_image_mode})"
            )
            return
        credentials = CredentialSource(
            config_path=settings.registry_config,
            secret_name=settings.registry_secret,
            kube=kube,
            hook=self._credentials_hook,
        )
        client = RegistryClient(insecure_registries=settings.insecure_registries)
        image = f"{settings.docker_registry}/zwmd-doctor:probe"
        try:
            auths = await credentials.auths(host)
            found = await client.exists(image, auths)
        except RegistryAuthError as exc:
            self.add("FAIL", "registry", str(exc), _credentials_fix(settings, host, credentials))
            return
        finally:
            await client.aclose()
        if found is None:
            self.add(
                "FAIL",
                "registry",
                f"{client.base_url(host)}/v2/ did not answer",
                "check the address (..._DOCKER_REGISTRY), the network, and "
                "ZWMD_INSECURE_REGISTRIES for a plain-HTTP registry",
            )
            return
        how = "with credentials" if auths else "anonymously"
        self.add("ok", "registry", f"{client.base_url(host)} answers {how}")

    async def _credentials_hook(self, host: str) -> Mapping[str, Any] | None:
        answer = await resolve(
            self.manager.hook.zwmd_registry_credentials(settings=self.settings, registry=host)
        )
        return answer  # type: ignore[no-any-return]

    # -- log store ----------------------------------------------------------------------

    async def log_store(self) -> None:
        name = self.settings.log_store
        try:
            store = await self.configured.open_log_store()
            record = LogRecord.at(datetime.now(UTC), "zwmd", 20, "zwmd doctor: write check", 1)
            await store.append(LogKey(DOCTOR_ID, 1), [record])
            messages = [r.message async for r in store.read(DOCTOR_ID, attempt=1)]
        except Exception as exc:  # any store, any failure: report it
            self.add(
                "FAIL",
                "log store",
                f"{name}: {type(exc).__name__}: {exc}",
                _store_fix(self.settings),
            )
            return
        if "zwmd doctor: write check" not in messages:
            self.add(
                "FAIL",
                "log store",
                f"{name}: a record written was not read back",
                _store_fix(self.settings),
            )
            return
        self.add("ok", "log store", f"{name} is writable")


def _rbac_fix(namespace: str) -> str:
    return f"apply contrib/kubernetes/rbac.yaml (Role and RoleBinding in {namespace})"


def _credentials_fix(settings: Settings, host: str, credentials: CredentialSource) -> str:
    """What to correct when ``host`` refused the credentials (or wanted some): where they are."""
    origin = credentials.origin(host)
    if origin is not None:
        return f"the credentials for {host} from {origin} were refused: correct them there"
    where = [
        f"add an auths entry for {host} to ZWMD_REGISTRY_CONFIG ({settings.registry_config})"
        if settings.registry_config
        else f"set ZWMD_REGISTRY_CONFIG to a docker config.json with auths for {host}",
    ]
    if settings.registry_secret:
        where.append(f"or to the Secret ZWMD_REGISTRY_SECRET ({settings.registry_secret})")
    else:
        where.append("or set ZWMD_REGISTRY_SECRET to a kubernetes.io/dockerconfigjson Secret")
    return f"no credentials for {host}: " + ", ".join(where)


def _store_fix(settings: Settings) -> str:
    if settings.log_store == "file":
        return f"make {settings.state_dir} writable by zwmd's user (ZWMD_STATE_DIR)"
    return "check the bucket, its permissions and the cloud credentials of the log store"


def render(rows: Sequence[Check]) -> str:
    """The report: a table, then one ``fix:`` line per failure."""
    name_width = max((len(r.name) for r in rows), default=0)
    lines = [f"{r.status:<4}  {r.name:<{name_width}}  {r.detail}" for r in rows]
    fixes = [f"  fix ({r.name}): {r.fix}" for r in rows if r.status == "FAIL" and r.fix]
    if fixes:
        lines += ["", *fixes]
    return "\n".join(lines)


def main(
    *, environ: Mapping[str, str] | None = None, out: TextIO | None = None, local: bool = False
) -> int:
    """``zwmd doctor`` (``--local``: the cluster of ``serve --local``): print the report."""
    out = out or sys.stdout
    try:
        configured = configure(environ, local=local)
    except SettingsError as exc:
        rows = [Check("FAIL", "configuration", "invalid", "fix each variable below")]
        print(render(rows), file=out)
        print(format_problems(exc), file=out)
        return EXIT_CONFIG
    settings = configured.settings
    rows = [Check("ok", "configuration", f"valid (implementation {settings.implementation})")]
    paths: tuple[Path, ...] = settings.kubeconfig
    kubeconfig = str(paths[0]) if paths else None
    if local:
        written = Path(settings.state_dir) / LOCAL_KUBECONFIG
        if not written.is_file():
            rows.append(Check("FAIL", "local cluster", f"no {written}", "start zwmd serve --local"))
            print(render(rows), file=out)
            return EXIT_FAILED
        kubeconfig = str(written)
    doctor = Doctor(configured, kubeconfig, rows)
    anyio.run(doctor.run)
    print(render(rows), file=out)
    return EXIT_FAILED if any(r.status == "FAIL" for r in rows) else 0
