"""``zwmd localkube``: run a localkube as a process, write its kubeconfig, print its URL.

Design notes: parsing only, then :class:`~zwmd.localkube.cluster.LocalKube` does the
work. The URL and port go to stdout as soon as the server listens (one line each, so a
parent process can read them); port 0 picks a free port. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio

from zwmd.localkube.cluster import LocalKube
from zwmd.localkube.garbagecollector import DEFAULT_DELAY
from zwmd.localkube.podbackoff import UPSTREAM_SCALE, check_scale
from zwmd.localkube.versions import NEWEST, OLDEST, KubernetesVersion


def _version(text: str) -> KubernetesVersion:
    try:
        return KubernetesVersion.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser(prog: str = "zwmd localkube") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="run an in-process Kubernetes API server on this machine"
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument(
        "--kubelet",
        choices=["process", "scripted", "none"],
        default="process",
        help="run pod commands as host processes, let tests script pod states, or no kubelet",
    )
    parser.add_argument(
        "--no-job-controller",
        action="store_true",
        help="do not run the Job controller (Jobs then stay as written: for benchmarks)",
    )
    parser.add_argument(
        "--gc-delay",
        type=float,
        default=DEFAULT_DELAY,
        help="seconds before the garbage collector deletes a deleted owner's dependents",
    )
    parser.add_argument(
        "--pod-backoff-scale",
        type=_scale,
        default=UPSTREAM_SCALE,
        metavar="SCALE",
        help="multiply the Job controller's wait before replacing a failed pod (10 s, "
        "doubling per consecutive failure up to 6 min): 1 is upstream's timing (default), "
        "0.01 what LocalKube() uses in tests, 0 replaces failed pods at once",
    )
    parser.add_argument(
        "--unauthenticated",
        choices=["admin", "anonymous"],
        default="admin",
        help="who a request without credentials acts as (kubectl sends none over plain "
        "HTTP): the administrator, or system:anonymous as on a cluster's secure port",
    )
    parser.add_argument(
        "--kubernetes-version",
        type=_version,
        default=NEWEST,
        metavar="1.MINOR",
        help=f"the Kubernetes release to behave as ({OLDEST} to {NEWEST}; default {NEWEST})",
    )
    parser.add_argument(
        "--owner-references-enforcement",
        action="store_true",
        help="run the OwnerReferencesPermissionEnforcement admission plugin (off by default, "
        "as in kube-apiserver): setting ownerReferences needs delete on the object, "
        "blockOwnerDeletion needs update on the owner's finalizers",
    )
    parser.add_argument(
        "--bookmark-interval", type=float, default=5.0, help="seconds between watch bookmarks"
    )


def _scale(text: str) -> float:
    try:
        return check_scale(float(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


async def _serve(args: argparse.Namespace) -> None:
    kube = LocalKube(
        args.host,
        args.port,
        kubelet=None if args.kubelet == "none" else args.kubelet,
        job_controller=not args.no_job_controller,
        bookmark_interval=args.bookmark_interval,
        unauthenticated=args.unauthenticated,
        gc_delay=args.gc_delay,
        kubernetes_version=args.kubernetes_version,
        pod_backoff_scale=args.pod_backoff_scale,
        owner_references_enforcement=args.owner_references_enforcement,
    )
    async with anyio.create_task_group() as group:
        await group.start(kube.serve)
        print(f"localkube listening on {kube.url}", flush=True)
        print(f"port: {kube.port}", flush=True)
        if args.kubeconfig:
            path = kube.write_kubeconfig(args.kubeconfig)
            print(f"kubeconfig: {path}", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                group.cancel_scope.cancel()
                break


def run_args(args: argparse.Namespace) -> int:
    try:
        anyio.run(_serve, args)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"zwmd localkube: {error}", file=sys.stderr)
        return 1
    return 0


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``zwmd localkube`` and ``python -m zwmd.localkube``."""
    return run_args(build_parser().parse_args(argv))
