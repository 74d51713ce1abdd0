"""The ``zwmd`` command line: one sub-command per verb, parsing only.

Each sub-command hands over to the module that owns the work (uvicorn's split of
config, server and cli): ``serve`` to :mod:`zwmd.daemon.starting`, ``config`` to
:mod:`zwmd.settings`, ``localkube`` to :mod:`zwmd.localkube.cli`, the client verbs
(``submit``, ``ls``, ``show``, ``cancel``, ``logs``) to :mod:`zwmd.apiclient`, which reads
``ZWMD_URL`` (or ``ZWMD_API_SOCKET``) and the token variables.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from zwmd import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zwmd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"zwmd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--local", action="store_true", help="embed localkube and run pods as host processes"
    )
    config = commands.add_parser(
        "config", help="print the effective configuration (secrets masked) or its problems"
    )
    config.add_argument("--local", action="store_true", help="as for serve --local")
    commands.add_parser("plugins", help="list the installed plugins, their versions and hooks")
    commands.add_parser(
        "doctor", help="check configuration, cluster access, registry and log store (a table)"
    )
    commands.add_parser(
        "localkube", help="run an in-process Kubernetes API server (zwmd localkube --help)"
    )

    submit = commands.add_parser("submit", help="run a command in a runner Job")
    submit.add_argument("--id", type=uuid.UUID, default=None, help="workload id (default: new)")
    submit.add_argument("--image", required=True, help="the runner image")
    submit.add_argument("--env", action="append", default=[], metavar="K=V", help="environment")
    submit.add_argument("--timeout", type=int, default=0, metavar="S", help="deadline (0: none)")
    submit.add_argument(
        "--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded"
    )
    submit.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")

    ls = commands.add_parser("ls", help="list workloads")
    ls.add_argument("--state", default=None)
    for verb, text in (("show", "show a workload"), ("cancel", "cancel a workload")):
        commands.add_parser(verb, help=text).add_argument("id", help="workload id or alias")
    logs = commands.add_parser("logs", help="print a workload's logs")
    logs.add_argument("id", help="workload id or alias")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.add_argument("--format", choices=("text", "zenml", "raw"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["localkube"]:
        from zwmd.localkube.cli import run_cli  # imported here: aiohttp only when needed

        return run_cli(arguments[1:])
    args = build_parser().parse_args(arguments)
    if args.command == "serve":
        from zwmd.daemon.starting import main as serve_main

        return serve_main(local=args.local)
    if args.command == "config":
        return _config(local=args.local)
    if args.command == "plugins":
        return _plugins()
    if args.command == "doctor":
        from zwmd.daemon.doctor import main as doctor_main

        return doctor_main()
    return _client_command(args)


def _config(*, local: bool) -> int:
    """``zwmd config``: exit 0 with the table, or 2 with one line per problem."""
    from zwmd import settings
    from zwmd.daemon.starting import configure

    try:
        loaded = configure(local=local).settings
    except settings.SettingsError as err:
        print(settings.format_problems(err), file=sys.stderr)
        return EXIT_USAGE
    print(settings.format_configuration(loaded.describe(), loaded.notes))
    return 0


def _plugins() -> int:
    from zwmd import builtin
    from zwmd.plugins import describe, plugin_manager

    manager = plugin_manager()
    manager.register(builtin, name="kubernetes")
    for info in describe(manager):
        print(f"{info.name}  {info.version}  hooks: {', '.join(info.hooks)}")
    return 0


def _client_command(args: argparse.Namespace) -> int:
    from zwmd.apiclient import Client, ZwmdError

    try:
        with Client() as client:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "ls":
                for workload in client.list(args.state):
                    print(f"{workload.id}  {workload.state:<10} {workload.reason or ''}")
            elif args.command == "show":
                print(json.dumps(dict(client.get(args.id).raw), indent=2))
            elif args.command == "cancel":
                client.cancel(args.id)
            elif args.command == "logs":
                if args.follow:
                    for line in client.logs(args.id, format=args.format, follow=True):
                        print(line, flush=True)
                else:
                    sys.stdout.write(client.logs(args.id, format=args.format))
    except ZwmdError as exc:
        print(f"zwmd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _submit(client: object, args: argparse.Namespace) -> int:
    from zwmd.apiclient import Client

    assert isinstance(client, Client)
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(
            "zwmd submit: the command is missing (zwmd submit --image IMG -- CMD ARGS)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    environment = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"zwmd submit: --env {item!r} is not K=V", file=sys.stderr)
            return EXIT_USAGE
        environment[key] = value
    workload_id = args.id or uuid.uuid4()
    workload = client.run(workload_id, args.image, argv[:1], argv[1:], environment, args.timeout)
    if not args.wait:
        print(workload.id)
        return 0
    final = client.wait_terminal(workload.id)
    print(final.describe())
    return 0 if final.succeeded else EXIT_FAILED
