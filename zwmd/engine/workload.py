"""The workload record: one state machine per workload, stored on its Job.

A :class:`Workload` is the daemon's in-memory view of one workload. Kubernetes is the
only database, so the record is written as annotations and labels on the workload's Job
(:meth:`Workload.annotations`, :meth:`Workload.labels`, keys from
:mod:`zwmd.kube.naming`) and rebuilt from a listed Job (:meth:`Workload.from_job`) when
a daemon restarts. Everything here is synchronous and pure: the engine applies the
writes.

Design notes
============

- :meth:`Workload.apply` is the only way the state moves, and it moves only along
  :data:`~zwmd.states.TRANSITIONS`. A refused observation is not an error: watch
  events arrive late and are replayed after a re-list, so a stale one is dropped (the
  method returns ``None``). Terminal records never change.
- A change of message (or reason) within the same state is returned as a
  :class:`Transition` too (``state_changed`` is False), so the caller can keep the
  message on the Job current ("waiting for a node: ...") without a separate path.
- Builder workloads have no ``queued``/``starting``/``running``: while their pod is
  pending or runs, they are ``building``.
- ``submitted_at`` is written with microseconds: it orders the queue, and twenty
  submissions within one second must keep their order.
- Every annotation is always written (empty string for "none"), so a merge patch with
  :meth:`Workload.annotations` replaces the whole record.
- The environment is a secret: :func:`spec_hash` is an HMAC keyed with the namespace's
  spec key (:mod:`zwmd.engine.speckey`), and the hash is the only thing stored, so a
  re-sent run request can be compared with the first while someone who can read Jobs
  but not Secrets cannot confirm a guessed value offline.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from zwmd.engine.kubereading import parse_time
from zwmd.engine.reasons import Observation
from zwmd.kube import naming
from zwmd.states import Reason, State, can_transition

__all__ = [
    "ANN_EXIT_CODE",
    "RecordError",
    "Transition",
    "Workload",
    "aliases_from_arguments",
    "format_time",
    "spec_hash",
]

# Not (yet) in zwmd.kube.naming: the exit code of the workload's container.
ANN_EXIT_CODE = f"{naming.DOMAIN}/exit-code"

ALIAS_OPTIONS = ("--run_id", "--snapshot_id")
KINDS = (naming.KIND_RUNNER, naming.KIND_BUILDER)


class RecordError(ValueError):
    """A Job's labels or annotations do not make a valid workload record."""


def format_time(moment: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z`` (microseconds kept when present), or ``""``."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Transition:
    """A change of one workload's record, to be written to its Job and announced."""

    workload_id: str
    previous: State
    state: State
    reason: Reason | None
    message: str
    at: datetime

    @property
    def state_changed(self) -> bool:
        return self.previous is not self.state

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


@dataclass
class Workload:
    """One workload: a runner container to run, or an image to build."""

    id: str
    kind: str = naming.KIND_RUNNER
    state: State = State.QUEUED
    reason: Reason | None = None
    message: str = ""
    image: str = ""
    job_name: str = ""
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    aliases: list[str] = field(default_factory=list)
    attempt: int = 1
    spec_hash: str = ""
    exit_code: int | None = None
    request_key: str = ""  # the Idempotency-Key of the request that made this attempt
    #: why a requested cancel is not done yet (its Job's delete failed); memory only
    cancel_error: str = ""

    def __post_init__(self) -> None:
        self.id = _canonical_uuid(self.id)
        if self.kind not in KINDS:
            raise RecordError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not self.job_name:
            self.job_name = naming.job_name(self.id, self.kind)

    @property
    def created_at(self) -> datetime:
        """The API's name for the submission time."""
        return self.submitted_at

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    # -- the API -------------------------------------------------------------------------

    def _api_message(self) -> str:
        if not self.cancel_error or self.is_terminal:
            return self.message
        return (
            f"cancel requested: deleting Job {self.job_name} failed, retrying ({self.cancel_error})"
        )

    def to_api(self) -> dict[str, Any]:
        """The body of ``GET /v1/workloads/{id}`` (JSON-ready: times are RFC 3339)."""
        return {
            "id": self.id,
            "state": str(self.state),
            "reason": str(self.reason) if self.reason else None,
            "message": self._api_message(),
            "image": self.image,
            "job_name": self.job_name,
            "created_at": format_time(self.submitted_at),
            "started_at": format_time(self.started_at) or None,
            "finished_at": format_time(self.finished_at) or None,
            "aliases": list(self.aliases),
            # extras
            "kind": self.kind,
            "attempt": self.attempt,
            "exit_code": self.exit_code,
        }

    # -- the record on the Job -----------------------------------------------------------

    def labels(self) -> dict[str, str]:
        """The Job's labels: who manages it, which workload, which kind."""
        return {
            naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
            naming.LABEL_WORKLOAD_ID: self.id,
            naming.LABEL_KIND: self.kind,
        }

    def annotations(self) -> dict[str, str]:
        """The record as the Job's annotations (every key, ``""`` for none)."""
        return {
            naming.ANN_STATE: str(self.state),
            naming.ANN_REASON: str(self.reason or ""),
            naming.ANN_MESSAGE: self.message,
            naming.ANN_ALIASES: json.dumps(self.aliases),
            naming.ANN_SPEC_HASH: self.spec_hash,
            naming.ANN_IMAGE: self.image,
            naming.ANN_SUBMITTED_AT: format_time(self.submitted_at),
            naming.ANN_STARTED_AT: format_time(self.started_at),
            naming.ANN_FINISHED_AT: format_time(self.finished_at),
            naming.ANN_ATTEMPT: str(self.attempt),
            naming.ANN_REQUEST_KEY: self.request_key,
            ANN_EXIT_CODE: "" if self.exit_code is None else str(self.exit_code),
        }

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> Workload:
        """Rebuild the record from a listed Job (how a restarted daemon recovers).

        Missing annotations fall back to what the Job itself says (its creation time,
        whether it is suspended); values that cannot be read raise :class:`RecordError`.
        """
        metadata = job.get("metadata") or {}
        labels = metadata.get("labels") or {}
        notes = metadata.get("annotations") or {}
        workload_id = labels.get(naming.LABEL_WORKLOAD_ID)
        if not workload_id:
            raise RecordError(
                f"Job {metadata.get('name')!r} has no {naming.LABEL_WORKLOAD_ID} label"
            )
        kind = labels.get(naming.LABEL_KIND, naming.KIND_RUNNER)
        state_text = notes.get(naming.ANN_STATE, "")
        if state_text:
            state = _parse_enum(State, state_text, naming.ANN_STATE)
        elif kind == naming.KIND_BUILDER:
            state = State.BUILDING
        else:
            state = State.QUEUED if (job.get("spec") or {}).get("suspend") else State.STARTING
        reason_text = notes.get(naming.ANN_REASON, "")
        submitted = _read_time(notes, naming.ANN_SUBMITTED_AT) or parse_time(
            metadata.get("creationTimestamp")
        )
        try:
            aliases = json.loads(notes.get(naming.ANN_ALIASES) or "[]")
            attempt = int(notes.get(naming.ANN_ATTEMPT) or 1)
            exit_text = notes.get(ANN_EXIT_CODE, "")
            exit_code = int(exit_text) if exit_text else None
        except ValueError as error:
            raise RecordError(f"Job {metadata.get('name')!r}: {error}") from error
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise RecordError(f"{naming.ANN_ALIASES} is not a JSON list of strings")
        return cls(
            id=workload_id,
            kind=kind,
            state=state,
            reason=_parse_enum(Reason, reason_text, naming.ANN_REASON) if reason_text else None,
            message=notes.get(naming.ANN_MESSAGE, ""),
            image=notes.get(naming.ANN_IMAGE, ""),
            job_name=str(metadata.get("name") or ""),
            submitted_at=submitted or datetime.now(UTC),
            started_at=_read_time(notes, naming.ANN_STARTED_AT),
            finished_at=_read_time(notes, naming.ANN_FINISHED_AT),
            aliases=aliases,
            attempt=attempt,
            spec_hash=notes.get(naming.ANN_SPEC_HASH, ""),
            exit_code=exit_code,
            request_key=notes.get(naming.ANN_REQUEST_KEY, ""),
        )

    # -- the state machine ---------------------------------------------------------------

    def apply(self, observation: Observation, now: datetime) -> Transition | None:
        """Move the record as ``observation`` says, if that is a legal transition.

        Returns what changed, or ``None`` when nothing did: the record is terminal, the
        observation is stale (it would move backwards) or says nothing new.
        """
        if self.is_terminal:
            return None
        target = observation.state
        if self.kind == naming.KIND_BUILDER and not target.is_terminal:
            target = State.BUILDING
        previous = self.state
        if target is previous:
            if (observation.message, observation.reason) == (self.message, self.reason):
                return None
        elif not can_transition(previous, target):
            return None
        self.state = target
        self.reason = observation.reason
        self.message = observation.message
        if target in (State.STARTING, State.RUNNING) or target.is_terminal:
            self.started_at = self.started_at or observation.started_at
        if target is State.RUNNING and self.started_at is None:
            self.started_at = now
        if target.is_terminal:
            self.finished_at = observation.finished_at or now
            if observation.exit_code is not None:
                self.exit_code = observation.exit_code
        return Transition(self.id, previous, target, self.reason, self.message, now)

    def admit(self, now: datetime) -> Transition | None:
        """``queued`` → ``starting``: admission is un-suspending the Job."""
        return self._command(State.STARTING, None, "Admitted; waiting for the pod.", now)

    def cancel(self, now: datetime) -> Transition | None:
        """→ ``cancelled`` (a terminal workload stays as it is)."""
        return self._command(State.CANCELLED, Reason.CANCELLED, Reason.CANCELLED.message(), now)

    def lost(self, now: datetime) -> Transition | None:
        """→ ``failed``/``JobLost``: the Job vanished before the workload finished."""
        message = Reason.JOB_LOST.message(job_name=self.job_name)
        return self.fail(Reason.JOB_LOST, message, now)

    def fail(self, reason: Reason, message: str, now: datetime) -> Transition | None:
        """→ ``failed`` for a reason the daemon found itself (``BuildFailed``, ``JobLost``)."""
        return self._command(State.FAILED, reason, message, now)

    def _command(
        self, state: State, reason: Reason | None, message: str, now: datetime
    ) -> Transition | None:
        observation = Observation(state=state, message=message, reason=reason, finished_at=now)
        return self.apply(observation, now)

    def new_attempt(
        self, *, image: str, spec_hash: str, aliases: Sequence[str], now: datetime
    ) -> Workload:
        """A fresh record for a reused workload id (ZenML resumes a run): ``attempt + 1``."""
        return replace(
            self,
            state=State.QUEUED if self.kind == naming.KIND_RUNNER else State.BUILDING,
            reason=None,
            message="",
            image=image,
            submitted_at=now,
            started_at=None,
            finished_at=None,
            aliases=list(aliases),
            attempt=self.attempt + 1,
            spec_hash=spec_hash,
            exit_code=None,
        )


def aliases_from_arguments(arguments: Sequence[str]) -> list[str]:
    """The run and snapshot ids in a ZenML runner's arguments, in order, without repeats.

    ``["--snapshot_id", "S", "--run_id=R"]`` → ``["S", "R"]``. UUIDs are written in their
    canonical form, so that any spelling the server uses later finds the workload.
    """
    found: list[str] = []
    for index, argument in enumerate(arguments):
        value: str | None = None
        option, equals, inline = argument.partition("=")
        if option not in ALIAS_OPTIONS:
            continue
        if equals:
            value = inline
        elif index + 1 < len(arguments) and not arguments[index + 1].startswith("--"):
            value = arguments[index + 1]
        if value:
            value = _canonical_uuid(value, strict=False)
            if value not in found:
                found.append(value)
    return found


def spec_hash(
    image: str,
    command: Sequence[str],
    arguments: Sequence[str],
    environment: Mapping[str, str],
    timeout: int | float,
    *,
    key: bytes,
) -> str:
    """A stable keyed hash of a run request, to tell a re-sent request from a different one.

    Independent of the environment's order. HMAC-SHA-256 with ``key``: without the key,
    the hash says nothing about the environment. Each environment value is hashed on its
    own first, so the values never appear in anything this function builds.
    """
    hidden = {
        name: hashlib.sha256(value.encode()).hexdigest() for name, value in environment.items()
    }
    canonical = json.dumps(
        {
            "image": image,
            "command": list(command),
            "arguments": list(arguments),
            "environment": hidden,
            "timeout": timeout,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


_Enum = TypeVar("_Enum", State, Reason)
_UUID_SHAPE = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def _canonical_uuid(value: str, *, strict: bool = True) -> str:
    try:
        if _UUID_SHAPE.match(value):
            return str(uuid.UUID(value))
    except ValueError:
        pass
    if strict:
        raise RecordError(f"workload id {value!r} is not a UUID")
    return value


def _read_time(notes: Mapping[str, str], key: str) -> datetime | None:
    text = notes.get(key, "")
    if not text:
        return None
    moment = parse_time(text)
    if moment is None:
        raise RecordError(f"{key} {text!r} is not an RFC 3339 time")
    return moment


def _parse_enum(enum: type[_Enum], text: str, key: str) -> _Enum:
    try:
        return enum(text)
    except ValueError:
        raise RecordError(f"{key} {text!r} is not one of {', '.join(enum)}") from None
