"""The client verbs (``submit``, ``ls``, ``show``, ``cancel``, ``logs``) over the HTTP client.

Exit codes: 0 when the verb did what was asked (for ``submit --wait`` and ``logs -f``:
the workload succeeded), 1 when the workload failed or was cancelled or the daemon said
no, 2 for a usage error (an unknown state, an ambiguous id prefix), 130 on Ctrl-C.

Id prefixes are resolved here, on the client, from the daemon's list: the daemon's API
(and so the ZenML adapter's contract, which always sends full UUIDs) is unchanged. An
argument that is a full id, or matches no id, is sent as it is, so aliases still work.
Progress and notices go to stderr, so stdout stays what a script parses. ``submit
--wait`` prints a line whenever the state (or a queued run's place in the queue, which
the daemon reports as ``queue_position``) changes: ``queued: 2 ahead of it, 2 of 2
running``.

``--image`` may be left out: the daemon judges (``zwmd serve --local`` runs without one,
a daemon on a cluster refuses with a 422 naming ``image``).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable

from zwmd.apiclient import ApiError, Client, Workload
from zwmd.cli.table import render, render_one
from zwmd.states import State

EXIT_FAILED = 1
EXIT_USAGE = 2
STATES = tuple(str(s) for s in State)
PROGRESS_SLICE_SECONDS = 1.0


class UsageError(Exception):
    """A mistake in the command line, found once the daemon was asked (exit 2)."""


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def resolve(client: Client, given: str) -> str:
    """The full id ``given`` is a unique prefix of, or ``given`` itself."""
    try:
        uuid.UUID(given)
        return given
    except ValueError:
        pass
    matches = sorted(w.id for w in client.list() if w.id.startswith(given.lower()))
    if len(matches) > 1:
        raise UsageError(f"id prefix {given!r} is ambiguous: " + ", ".join(matches))
    return matches[0] if matches else given


def _found(client: Client, given: str) -> Workload:
    workload_id = resolve(client, given)
    try:
        return client.get(workload_id)
    except ApiError as err:
        if err.status == 404:
            raise LookupError(f"zwmd: no workload {given!r}") from err
        raise


def run(client: Client, args: argparse.Namespace) -> int:
    """One client verb; raises the client's errors, :class:`UsageError`, LookupError."""
    if args.command == "submit":
        return _submit(client, args)
    if args.command == "ls":
        print(render(client.list(args.state), args.output))
        return 0
    workload = _found(client, args.id)
    if args.command == "show":
        print(render_one(workload, args.output))
        return 0
    if args.command == "cancel":
        return _cancel(client, workload)
    return _logs(client, workload, args)


def _cancel(client: Client, workload: Workload) -> int:
    if workload.terminal:
        print(f"{workload.id} already {workload.state}")
        return 0
    client.cancel(workload.id)
    print(f"cancelled {workload.id}")
    return 0


def _logs(client: Client, workload: Workload, args: argparse.Namespace) -> int:
    if workload.state in (State.QUEUED, State.BUILDING):
        _note(f"zwmd: workload {workload.id} is {_state(workload)}")
    if not args.follow:
        sys.stdout.write(client.logs(workload.id, format=args.format))
        return 0
    for line in client.logs(workload.id, format=args.format, follow=True):
        print(line, flush=True)
    final = client.get(workload.id)
    if not final.terminal:
        final = client.wait_terminal(final.id)
    return 0 if final.succeeded else EXIT_FAILED


def _submit(client: Client, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("the command is missing (zwmd submit [--image IMG] -- CMD ARGS)")
    environment = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r} is not K=V")
        environment[key] = value
    workload_id = args.id or uuid.uuid4()
    image = args.image or ""  # the daemon judges whether it needs one
    workload = client.run(workload_id, image, argv[:1], argv[1:], environment, args.timeout)
    if not args.wait:
        print(workload.id)
        return 0
    _note(f"submitted {workload.id}")
    _note(_state(workload))
    while not workload.terminal:
        before = _state(workload)
        workload = client.wait_terminal(
            workload.id, until=_changed(before), slice_seconds=PROGRESS_SLICE_SECONDS
        )
        if _state(workload) != before and not workload.terminal:
            _note(_state(workload))
    print(workload.describe())
    return 0 if workload.succeeded else EXIT_FAILED


def _changed(shown: str) -> Callable[[Workload], bool]:
    """Whether a workload's progress line is no longer ``shown`` (the loop's ``until``)."""
    return lambda workload: _state(workload) != shown


def _state(workload: Workload) -> str:
    """``queued: 2 ahead of it, 2 of 2 running``, ``failed: BackoffLimitExceeded``: the
    state and, when known, why (for a queued run, its place instead of the message)."""
    place = _place(workload)
    if place:
        return ": ".join(p for p in (workload.state, workload.reason, place) if p)
    return ": ".join(p for p in (workload.state, workload.reason, workload.message) if p)


def _place(workload: Workload) -> str | None:
    """``2 ahead of it, 2 of 2 running`` from a queued run's queue fields, if it has them."""
    position, active, limit = (
        workload.raw.get(key) for key in ("queue_position", "active_runs", "max_concurrent_runs")
    )
    if not (isinstance(position, int) and isinstance(active, int) and isinstance(limit, int)):
        return None
    ahead = "next to start" if position <= 1 else f"{position - 1} ahead of it"
    return f"{ahead}, {active} of {limit} running"
