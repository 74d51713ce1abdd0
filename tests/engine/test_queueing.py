"""Admission: the concurrency limit holds and queued runs start in submission order."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from zwmd.engine.queueing import AdmissionQueue, active_runners, admit, queue_position
from zwmd.engine.reasons import Observation
from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.states import State

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def submitted(count: int, *, kind: str = naming.KIND_RUNNER, start: int = 0) -> list[Workload]:
    """``count`` queued workloads, submitted 1 ms apart (all within one second)."""
    return [
        Workload(
            id=str(uuid.uuid4()),
            kind=kind,
            state=State.QUEUED if kind == naming.KIND_RUNNER else State.BUILDING,
            submitted_at=T0 + timedelta(milliseconds=start + index),
        )
        for index in range(count)
    ]


def test_twenty_submissions_with_a_limit_of_two_run_two_at_a_time_in_order() -> None:
    workloads = submitted(20)
    in_submission_order = [workload.id for workload in workloads]
    by_id = {workload.id: workload for workload in workloads}
    pool = list(workloads)
    random.Random(7).shuffle(pool)  # the caller's order must not matter
    shuffle_finishes = random.Random(11)
    started: list[str] = []
    now = T0
    while len(started) < 20:
        for workload_id in admit(pool, max_active=2):
            assert by_id[workload_id].admit(now) is not None
            started.append(workload_id)
        active = [
            workload for workload in pool if workload.state in (State.STARTING, State.RUNNING)
        ]
        assert 1 <= len(active) <= 2
        assert active_runners(pool) == len(active)
        # one of the active runs moves on: starting → running, or running → succeeded
        now += timedelta(seconds=1)
        chosen = shuffle_finishes.choice(active)
        target = State.RUNNING if chosen.state is State.STARTING else State.SUCCEEDED
        chosen.apply(Observation(state=target, message=str(target)), now)
    assert started == in_submission_order


def test_admission_fills_only_the_free_slots() -> None:
    workloads = submitted(5)
    workloads[3].state = State.RUNNING  # submitted later, but already running
    assert admit(workloads, max_active=2) == [workloads[0].id]
    assert admit(workloads, max_active=4) == [w.id for w in workloads[:3]]
    assert admit(workloads, max_active=1) == []


def test_same_submission_time_is_ordered_by_id() -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    workloads = [Workload(id=i, state=State.QUEUED, submitted_at=T0) for i in reversed(ids)]
    assert admit(workloads, max_active=3) == ids
    assert [queue_position(workloads, i) for i in ids] == [1, 2, 3]


def test_builders_are_neither_counted_nor_admitted() -> None:
    builders = submitted(5, kind=naming.KIND_BUILDER)
    # whatever a builder's record says (e.g. read back from an old Job), it takes no slot
    builders[0].state = State.RUNNING
    builders[1].state = State.STARTING
    builders[2].state = State.QUEUED
    runners = submitted(3, start=100)
    assert admit([*builders, *runners], max_active=2) == [w.id for w in runners[:2]]
    assert active_runners(builders) == 0


def test_finished_and_failed_workloads_free_their_slot() -> None:
    workloads = submitted(4)
    workloads[0].state = State.SUCCEEDED
    workloads[1].state = State.FAILED
    workloads[2].state = State.CANCELLED
    assert admit(workloads, max_active=1) == [workloads[3].id]


def test_a_lowered_limit_admits_nothing_until_runs_finish() -> None:
    workloads = submitted(6)
    for workload in workloads[:3]:
        workload.state = State.RUNNING
    assert admit(workloads, max_active=2) == []
    assert admit(workloads, max_active=0) == []
    with pytest.raises(ValueError, match="max_active"):
        admit(workloads, max_active=-1)


def test_queue_position() -> None:
    workloads = submitted(3)
    workloads[0].state = State.RUNNING
    assert [queue_position(workloads, w.id) for w in workloads] == [None, 1, 2]
    queue = AdmissionQueue()
    for workload in reversed(workloads):
        queue.note(workload)
    assert queue.positions() == {workloads[1].id: 1, workloads[2].id: 2}


def test_a_workload_not_ready_takes_no_slot_and_keeps_its_place() -> None:
    first, second, third = submitted(3)
    queue = AdmissionQueue()
    for workload in (first, second, third):
        queue.note(workload)
    not_ready = {first.id}
    ready = lambda w: w.id not in not_ready  # noqa: E731 (its Secret is not there yet)
    assert queue.next(2, ready) == [second, third]  # the head holds up nobody
    assert queue.next(1, ready) == [second]
    not_ready.clear()
    assert queue.next(1, ready) == [first]  # once ready, first in line again
