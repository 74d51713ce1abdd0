"""The registry: one entry per workload id, memory bounded by active work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from zwmd.engine.reasons import Observation
from zwmd.engine.registry import Entry, Registry
from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.states import State

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _runner(n: int, aliases: list[str] | None = None) -> Workload:
    return Workload(
        id=str(uuid.UUID(int=n + 1)),
        submitted_at=T0 + timedelta(seconds=n),
        aliases=aliases or [],
    )


def _finish(registry: Registry, entry: Entry) -> None:
    entry.workload.apply(Observation(State.SUCCEEDED, "done", finished_at=T0), T0)
    registry.note(entry.workload)
    registry.evict(entry)


def test_finished_workloads_leave_and_only_the_latest_records_are_kept() -> None:
    registry = Registry(recent=3)
    entries = [registry.put(Entry(_runner(n))) for n in range(10)]
    assert len(registry) == 10
    for entry in entries:
        _finish(registry, entry)
    assert len(registry) == 0  # nothing active: nothing held beside the records
    kept = [w.id for w in registry.recent_records()]
    assert kept == [e.workload.id for e in entries[-3:]]
    assert registry.recent(entries[0].workload.id) is None
    assert registry.get(entries[-1].workload.id) is None  # not active any more


def test_an_alias_resolves_while_its_job_exists_and_is_forgotten_with_it() -> None:
    registry = Registry(recent=0)
    workload = _runner(1, aliases=["run-1", "snapshot-1"])
    entry = registry.put(Entry(workload))
    assert registry.resolve("run-1") is entry
    assert registry.resolve(workload.id.upper()) is entry  # any spelling of the UUID
    _finish(registry, entry)
    assert registry.id_of("snapshot-1") == workload.id  # evicted: the alias still leads there
    assert registry.job_name(workload.id) == workload.job_name
    registry.job_deleted(workload.id, workload.job_name, workload.aliases)
    assert registry.id_of("snapshot-1") == "snapshot-1"
    assert registry.job_name(workload.id) is None


def test_admission_sees_every_change_in_submission_order() -> None:
    registry = Registry()
    entries = [registry.put(Entry(_runner(n))) for n in (3, 1, 2)]
    first, second = registry.queue.next(2)
    assert (first.id, second.id) == (entries[1].workload.id, entries[2].workload.id)
    first.admit(T0)
    registry.note(first)
    assert registry.queue.active == 1
    assert [w.id for w in registry.queue.next(2)] == [entries[2].workload.id]
    builder = Workload(id=str(uuid.uuid4()), kind=naming.KIND_BUILDER, state=State.BUILDING)
    registry.put(Entry(builder))  # builds are neither queued nor counted
    assert registry.queue.active == 1
    restored = registry.put(Entry(_runner(9)))
    registry.discard(restored)  # a submission that failed leaves no trace
    assert restored.workload.id not in registry
    assert [w.id for w in registry.queue.next(5)] == [
        entries[2].workload.id,
        entries[0].workload.id,
    ]
