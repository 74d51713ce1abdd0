"""The ``zwmd`` command line: one sub-command per verb, parsing only.

The client verbs are :mod:`zwmd.cli.verbs` (printing through :mod:`zwmd.cli.table`),
shell completion is :mod:`zwmd.cli.completion`. Ctrl-C ends any verb with one line and
exit 130.

Each sub-command hands over to the module that owns the work (uvicorn's split of
config, server and cli): ``serve`` to :mod:`zwmd.daemon.starting`, ``config`` to
:mod:`zwmd.settings`, ``localkube`` to :mod:`zwmd.localkube.cli`, the client verbs
(``submit``, ``ls``, ``show``, ``cancel``, ``logs``) to :mod:`zwmd.apiclient`, which reads
``ZWMD_URL`` (or ``ZWMD_API_SOCKET``) and the token variables.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from zwmd import __version__

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = (
    "zwmd runs ZenML workloads as Kubernetes Jobs. 'zwmd serve' runs the daemon; "
    "submit, ls, show, cancel and logs talk to it over HTTP (ZWMD_URL, or "
    "ZWMD_API_HOST/ZWMD_API_PORT, or ZWMD_API_SOCKET; ZWMD_API_TOKEN)."
)
EPILOG = (
    "exit codes: 0 done (submit --wait, logs -f: the workload succeeded); 1 the workload "
    "failed or was cancelled, or the daemon refused; 2 usage error; 130 interrupted."
)


def build_parser() -> argparse.ArgumentParser:
    from zwmd.cli.table import OUTPUTS
    from zwmd.cli.verbs import STATES

    parser = argparse.ArgumentParser(prog="zwmd", description=DESCRIPTION, epilog=EPILOG)
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
    doctor = commands.add_parser(
        "doctor", help="check configuration, cluster access, registry and log store (a table)"
    )
    doctor.add_argument(
        "--local", action="store_true", help="check the cluster of zwmd serve --local"
    )
    commands.add_parser(
        "localkube", help="run an in-process Kubernetes API server (zwmd localkube --help)"
    )

    submit = commands.add_parser("submit", help="run a command in a runner Job")
    submit.add_argument("--id", type=uuid.UUID, default=None, help="workload id (default: new)")
    submit.add_argument(
        "--image",
        default=None,
        help="the runner image (required unless the daemon is zwmd serve --local, which "
        "ignores images)",
    )
    submit.add_argument("--env", action="append", default=[], metavar="K=V", help="environment")
    submit.add_argument("--timeout", type=int, default=0, metavar="S", help="deadline (0: none)")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="print state changes (stderr) until it ends; exit 0 if it succeeded, else 1",
    )
    submit.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")

    id_help = "workload id, a unique prefix of one, or an alias"
    output_help = f"output format: {', '.join(OUTPUTS)} (default: table)"
    ls = commands.add_parser("ls", help="list workloads (a table)")
    ls.add_argument(
        "--state",
        default=None,
        choices=STATES,
        metavar="STATE",
        help=f"only this state: {', '.join(STATES)}",
    )
    ls.add_argument("-o", "--output", choices=OUTPUTS, default="table", help=output_help)
    show = commands.add_parser("show", help="show a workload (JSON)")
    show.add_argument("id", help=id_help)
    show.add_argument("-o", "--output", choices=OUTPUTS, default="json", help=output_help)
    commands.add_parser("cancel", help="cancel a workload").add_argument("id", help=id_help)
    logs = commands.add_parser("logs", help="print a workload's logs")
    logs.add_argument("id", help=id_help)
    logs.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="follow until the workload ends; exit 0 if it succeeded, else 1",
    )
    logs.add_argument(
        "--format",
        choices=("text", "zenml", "raw"),
        default="text",
        help="text (default), zenml (JSON lines as ZenML stores them) or raw",
    )
    completion = commands.add_parser(
        "completion", help='print a shell completion script (eval "$(zwmd completion bash)")'
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("zwmd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
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

        return doctor_main(local=args.local)
    if args.command == "completion":
        from zwmd.cli.completion import script

        print(script(build_parser(), args.shell))
        return 0
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
    from zwmd.cli.verbs import UsageError, run

    try:
        with Client() as client:
            return run(client, args)
    except UsageError as exc:
        print(f"zwmd {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    except ZwmdError as exc:
        print(f"zwmd: {exc}", file=sys.stderr)
        return EXIT_FAILED
