"""The workload record: API shape, the record on the Job, the state machine, aliases, hash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.engine.kubeobjects import JOB_NAME, T0, WORKLOAD_ID, at, job, ts
from zwmd.engine.reasons import Observation
from zwmd.engine.workload import (
    RecordError,
    Workload,
    aliases_from_arguments,
    spec_hash,
)
from zwmd.kube import naming
from zwmd.states import Reason, State

SUBMITTED = datetime(2026, 3, 1, 11, 59, 55, 123456, tzinfo=UTC)


def a_workload(**fields: object) -> Workload:
    defaults: dict[str, object] = {
        "id": WORKLOAD_ID,
        "image": "registry.example.com/zenml-runner:abc",
        "submitted_at": SUBMITTED,
        "aliases": ["5d3c1b2a-0000-4000-8000-000000000001"],
        "spec_hash": "f" * 64,
    }
    defaults.update(fields)
    return Workload(**defaults)  # type: ignore[arg-type]


def seen(
    state: State,
    message: str = "",
    reason: Reason | None = None,
    *,
    exit_code: int | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> Observation:
    """An observation as observe() would return it."""
    return Observation(
        state=state,
        message=message or f"now {state}",
        reason=reason,
        exit_code=exit_code,
        started_at=started_at,
        finished_at=finished_at,
    )


# -- the API -----------------------------------------------------------------------------


def test_to_api_has_the_fields_of_get_workload() -> None:
    body = a_workload().to_api()
    required = {"id", "state", "reason", "message", "image", "job_name", "created_at",
                "started_at", "finished_at", "aliases"}  # fmt: skip
    assert required <= body.keys()
    assert body["id"] == WORKLOAD_ID
    assert body["state"] == "queued"
    assert body["reason"] is None
    assert body["job_name"] == JOB_NAME
    assert body["created_at"] == "2026-03-01T11:59:55.123456Z"
    assert (body["started_at"], body["finished_at"]) == (None, None)
    assert body["aliases"] == ["5d3c1b2a-0000-4000-8000-000000000001"]
    assert json.loads(json.dumps(body)) == body  # plain JSON


def test_to_api_of_a_failed_workload() -> None:
    workload = a_workload(state=State.STARTING, started_at=at(0))
    workload.apply(seen(State.FAILED, "The runner container exited with code 3.", Reason.ERROR,
                        exit_code=3, finished_at=at(30)), at(31))  # fmt: skip
    body = workload.to_api()
    assert (body["state"], body["reason"], body["exit_code"]) == ("failed", "Error", 3)
    assert body["message"] == "The runner container exited with code 3."
    assert (body["started_at"], body["finished_at"]) == (ts(at(0)), ts(at(30)))


def test_workload_id_must_be_a_uuid_and_is_canonicalised() -> None:
    assert a_workload(id=WORKLOAD_ID.upper().replace("-", "")).id == WORKLOAD_ID
    with pytest.raises(RecordError, match="not a UUID"):
        a_workload(id="run-42")


# -- the record on the Job ---------------------------------------------------------------


def job_of(workload: Workload) -> dict[str, object]:
    return job(
        name=workload.job_name,
        labels=workload.labels(),
        annotations=workload.annotations(),
        suspend=workload.state is State.QUEUED,
    )


@pytest.mark.parametrize(
    "workload",
    [
        a_workload(),
        a_workload(state=State.RUNNING, started_at=at(3), attempt=2,
                   message="The runner container is running."),
        a_workload(state=State.FAILED, reason=Reason.OOM_KILLED, exit_code=137,
                   message="killed: out of memory", started_at=at(3), finished_at=at(90),
                   aliases=["run-1", "snapshot-2"]),
        a_workload(state=State.CANCELLED, reason=Reason.CANCELLED, finished_at=at(5)),
        a_workload(kind=naming.KIND_BUILDER, state=State.BUILDING, aliases=[]),
    ],
    ids=["queued", "running", "failed", "cancelled", "builder"],
)  # fmt: skip
def test_from_job_rebuilds_what_annotations_wrote(workload: Workload) -> None:
    assert Workload.from_job(job_of(workload)) == workload


def test_annotations_and_labels_use_the_naming_schema() -> None:
    workload = a_workload(state=State.FAILED, reason=Reason.JOB_LOST, finished_at=at(9))
    notes = workload.annotations()
    assert notes[naming.ANN_STATE] == "failed"
    assert notes[naming.ANN_REASON] == "JobLost"
    assert notes[naming.ANN_SUBMITTED_AT] == "2026-03-01T11:59:55.123456Z"
    assert notes[naming.ANN_STARTED_AT] == ""
    assert json.loads(notes[naming.ANN_ALIASES]) == workload.aliases
    assert all(isinstance(value, str) for value in notes.values())
    assert workload.labels() == {
        "app.kubernetes.io/managed-by": "zwmd",
        "zwmd.io/workload-id": WORKLOAD_ID,
        "zwmd.io/kind": "runner",
    }


def test_from_job_without_annotations_falls_back_to_the_job() -> None:
    labels = {naming.LABEL_WORKLOAD_ID: WORKLOAD_ID, naming.LABEL_KIND: naming.KIND_RUNNER}
    queued = Workload.from_job(job(labels=labels, suspend=True, created=T0))
    assert (queued.state, queued.submitted_at, queued.job_name) == (State.QUEUED, T0, JOB_NAME)
    assert (queued.attempt, queued.aliases, queued.reason) == (1, [], None)
    assert Workload.from_job(job(labels=labels)).state is State.STARTING


@pytest.mark.parametrize(
    ("labels", "annotations", "complaint"),
    [
        ({}, {}, "workload-id"),
        ({naming.LABEL_WORKLOAD_ID: "not-a-uuid"}, {}, "not a UUID"),
        ({naming.LABEL_WORKLOAD_ID: WORKLOAD_ID}, {naming.ANN_STATE: "paused"}, "paused"),
        ({naming.LABEL_WORKLOAD_ID: WORKLOAD_ID}, {naming.ANN_REASON: "Oops"}, "Oops"),
        ({naming.LABEL_WORKLOAD_ID: WORKLOAD_ID}, {naming.ANN_STARTED_AT: "yesterday"}, "RFC 3339"),
        ({naming.LABEL_WORKLOAD_ID: WORKLOAD_ID}, {naming.ANN_ALIASES: '{"a": 1}'}, "list"),
        ({naming.LABEL_WORKLOAD_ID: WORKLOAD_ID, naming.LABEL_KIND: "cronjob"}, {}, "kind"),
    ],
)
def test_from_job_refuses_an_unreadable_record(
    labels: dict[str, str], annotations: dict[str, str], complaint: str
) -> None:
    with pytest.raises(RecordError, match=complaint):
        Workload.from_job(job(labels=labels, annotations=annotations))


# -- the state machine -------------------------------------------------------------------


def test_a_run_goes_through_its_states() -> None:
    workload = a_workload()
    admitted = workload.admit(at(0))
    assert admitted is not None
    assert (admitted.previous, admitted.state) == (State.QUEUED, State.STARTING)
    running = workload.apply(seen(State.RUNNING, started_at=at(1)), at(5))
    assert running is not None
    assert running.state_changed
    assert workload.started_at == at(1)
    done = workload.apply(seen(State.SUCCEEDED, exit_code=0, finished_at=at(60)), at(61))
    assert done is not None
    assert done.is_terminal
    assert (workload.state, workload.finished_at, workload.exit_code) == (
        State.SUCCEEDED, at(60), 0,
    )  # fmt: skip


def test_running_without_a_start_time_starts_now() -> None:
    workload = a_workload(state=State.STARTING)
    workload.apply(seen(State.RUNNING), at(7))
    assert workload.started_at == at(7)


def test_a_stale_observation_does_not_move_the_workload_back() -> None:
    workload = a_workload(state=State.RUNNING, message="The runner container is running.")
    assert workload.apply(seen(State.STARTING, "Waiting for the pod to start."), at(9)) is None
    assert workload.apply(seen(State.QUEUED), at(9)) is None
    assert (workload.state, workload.message) == (State.RUNNING, "The runner container is running.")


@pytest.mark.parametrize("end", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
@pytest.mark.parametrize("observed", list(State))
def test_a_terminal_workload_never_changes(end: State, observed: State) -> None:
    workload = a_workload(state=end, message="over", finished_at=at(10))
    before = workload.annotations()
    assert workload.apply(seen(observed, "something else", Reason.ERROR), at(20)) is None
    assert workload.cancel(at(20)) is None
    assert workload.lost(at(20)) is None
    assert workload.annotations() == before


def test_a_new_message_in_the_same_state_is_an_update_not_a_state_change() -> None:
    workload = a_workload(state=State.STARTING, message="Creating the runner container.")
    update = workload.apply(seen(State.STARTING, "Waiting for a node: 0/3 nodes"), at(3))
    assert update is not None
    assert not update.state_changed
    assert workload.message == "Waiting for a node: 0/3 nodes"
    assert workload.apply(seen(State.STARTING, "Waiting for a node: 0/3 nodes"), at(4)) is None


def test_cancel_records_the_reason_and_time() -> None:
    workload = a_workload(state=State.RUNNING, started_at=at(1))
    cancelled = workload.cancel(at(30))
    assert cancelled is not None
    assert (cancelled.previous, cancelled.state, cancelled.reason) == (
        State.RUNNING, State.CANCELLED, Reason.CANCELLED,
    )  # fmt: skip
    assert (workload.finished_at, workload.message) == (at(30), "The workload was cancelled.")


def test_a_lost_job_fails_the_workload_and_names_the_job() -> None:
    workload = a_workload(state=State.QUEUED)
    lost = workload.lost(at(30))
    assert lost is not None
    assert (workload.state, workload.reason) == (State.FAILED, Reason.JOB_LOST)
    assert JOB_NAME in workload.message


def test_admit_only_moves_a_queued_workload() -> None:
    assert a_workload(state=State.RUNNING).admit(at(0)) is None
    assert a_workload(state=State.SUCCEEDED).admit(at(0)) is None


def test_a_builder_is_building_until_it_ends() -> None:
    builder = a_workload(kind=naming.KIND_BUILDER, state=State.BUILDING, message="")
    assert builder.job_name == naming.job_name(WORKLOAD_ID, naming.KIND_BUILDER)
    update = builder.apply(seen(State.RUNNING, "The kaniko container is running."), at(5))
    assert update is not None
    assert (update.state, builder.state) == (State.BUILDING, State.BUILDING)
    builder.apply(seen(State.FAILED, "The image build failed: x", Reason.BUILD_FAILED), at(9))
    assert (builder.state, builder.reason) == (State.FAILED, Reason.BUILD_FAILED)


def test_a_runner_waiting_for_its_image_can_be_queued() -> None:
    workload = a_workload(state=State.BUILDING)
    moved = workload.apply(seen(State.QUEUED), at(1))
    assert moved is not None
    assert moved.state is State.QUEUED


def test_a_reused_workload_id_starts_a_new_attempt() -> None:
    old = a_workload(state=State.FAILED, reason=Reason.ERROR, exit_code=1, finished_at=at(9))
    new = old.new_attempt(image="img:2", spec_hash="e" * 64, aliases=["r2"], now=at(100))
    assert (new.id, new.attempt, new.state, new.reason, new.exit_code) == (
        WORKLOAD_ID, 2, State.QUEUED, None, None,
    )  # fmt: skip
    assert (new.submitted_at, new.finished_at, new.aliases) == (at(100), None, ["r2"])
    assert old.state is State.FAILED  # the old record is not touched


# -- aliases -----------------------------------------------------------------------------

RUN = "3f2a0e3c-9d7b-4bde-8f3e-6a1d2c3b4a50"
SNAPSHOT = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


@pytest.mark.parametrize(
    ("arguments", "aliases"),
    [
        (["--snapshot_id", SNAPSHOT, "--run_id", RUN], [SNAPSHOT, RUN]),
        ([f"--run_id={RUN}", f"--snapshot_id={SNAPSHOT}"], [RUN, SNAPSHOT]),
        (["-m", "zenml.runner", "--run_id", RUN.upper()], [RUN]),
        (["--run_id", RUN, f"--run_id={RUN}"], [RUN]),
        (["--run_id", "--snapshot_id", SNAPSHOT], [SNAPSHOT]),
        (["--run_id"], []),
        (["--run_id="], []),
        (["--run-id", RUN, "--pipeline_run_id", RUN, "run_id", RUN], []),
        (["--run_id", "my-run"], ["my-run"]),
        ([], []),
    ],
)
def test_aliases_from_arguments(arguments: list[str], aliases: list[str]) -> None:
    assert aliases_from_arguments(arguments) == aliases


# -- spec hash ---------------------------------------------------------------------------

TOKEN = "zenml-api-token-6b9f1c0d2e"
BASE = {
    "image": "img:1",
    "command": ["python", "-m", "zenml.runner"],
    "arguments": ["--run_id", RUN],
    "environment": {"ZENML_STORE_API_TOKEN": TOKEN, "ZENML_LOGGING": "INFO"},
    "timeout": 180,
}


KEY = bytes(range(32))


def hash_of(**changes: object) -> str:
    key = changes.pop("key", KEY)
    assert isinstance(key, bytes)
    fields = {**BASE, **changes}
    return spec_hash(
        fields["image"],  # type: ignore[arg-type]
        fields["command"],  # type: ignore[arg-type]
        fields["arguments"],  # type: ignore[arg-type]
        fields["environment"],  # type: ignore[arg-type]
        fields["timeout"],  # type: ignore[arg-type]
        key=key,
    )


def test_spec_hash_is_stable_and_ignores_environment_order() -> None:
    assert hash_of() == hash_of()
    reordered = dict(reversed(list(BASE["environment"].items())))  # type: ignore[attr-defined]
    assert hash_of(environment=reordered) == hash_of()
    assert len(hash_of()) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"image": "img:2"},
        {"command": ["python"]},
        {"arguments": ["--run_id", SNAPSHOT]},
        {"environment": {"ZENML_STORE_API_TOKEN": "another", "ZENML_LOGGING": "INFO"}},
        {"environment": {"ZENML_STORE_API_TOKEN": TOKEN}},
        {"timeout": 0},
    ],
)
def test_spec_hash_changes_with_any_part_of_the_spec(change: dict[str, object]) -> None:
    assert hash_of(**change) != hash_of()


def test_spec_hash_depends_on_the_key() -> None:
    assert hash_of(key=b"another key of 32 bytes, exactly") != hash_of()


def test_no_environment_value_reaches_the_record() -> None:
    workload = a_workload(spec_hash=hash_of())
    workload.apply(seen(State.RUNNING), at(1))
    written = json.dumps([workload.annotations(), workload.labels(), workload.to_api()])
    assert TOKEN not in written


def test_times_are_written_in_utc() -> None:
    elsewhere = datetime(2026, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    workload = a_workload(submitted_at=elsewhere)
    assert workload.annotations()[naming.ANN_SUBMITTED_AT] == "2026-03-01T13:00:00Z"
