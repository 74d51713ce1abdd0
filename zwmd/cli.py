"""The ``zwmd`` command line: one sub-command per verb, parsing only.

Each sub-command hands over to the module that owns the work (uvicorn's split of
config, server and cli): ``serve`` to :mod:`zwmd.daemon`, ``localkube`` to
:mod:`zwmd.localkube`, the client verbs to :mod:`zwmd.client`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zwmd import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zwmd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"zwmd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument(
        "--local", action="store_true", help="embed localkube and run pods as host processes"
    )
    commands.add_parser(
        "localkube", help="run an in-process Kubernetes API server (zwmd localkube --help)"
    )
    config = commands.add_parser(
        "config", help="print the effective configuration (secrets masked) or its problems"
    )
    config.add_argument("--local", action="store_true", help="as for serve --local")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["localkube"]:
        from zwmd.localkube.cli import run_cli  # imported here: aiohttp only when needed

        return run_cli(arguments[1:])
    args = build_parser().parse_args(arguments)
    if args.command == "config":
        return _config(local=args.local)
    if args.command == "serve":
        print("zwmd serve: not yet", file=sys.stderr)
        return 1
    return 0


def _config(*, local: bool) -> int:
    """``zwmd config``: exit 0 with the table, or 2 with one line per problem."""
    from zwmd import settings

    try:
        loaded = settings.load_settings(local=local)
    except settings.SettingsError as err:
        print(settings.format_problems(err), file=sys.stderr)
        return 2
    print(settings.format_configuration(loaded.describe(), loaded.notes))
    return 0
