"""The registry: every workload the daemon is responsible for, of every kind, by id.

Design notes:

- One :class:`Entry` per workload id: the latest attempt's record (a runner, or the
  build workload that precedes it under the same ZenML id), and what the engine keeps
  beside it while it is active. There is no second registry for builds: a build
  request and the run that follows it replace each other's entry, so "the workload with
  this id" always means its latest request.
- Memory is bounded by active work. Once a workload is terminal and its logs are stored
  (:meth:`Registry.evict`), its entry leaves the registry. The last
  :data:`RECENT_FINISHED` finished records are kept as they are (so a cancelled run,
  whose Job is deleted, still answers ``GET``); older ones are read back from their
  Job's annotations while the Job exists (the caller does that, from the informer).
- Aliases (ZenML's run and snapshot ids) and the latest Job of each workload id are two
  small string maps kept while the Job exists, so an alias still resolves after its
  entry was evicted, and forgotten when the Job is deleted.
- Admission's index (:class:`~zwmd.engine.queueing.AdmissionQueue`) is told of every
  record that enters or changes (:meth:`Registry.note`).
- UUIDs are compared canonical: a workload id or alias may be spelt any way.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import anyio

from zwmd.engine.queueing import AdmissionQueue
from zwmd.engine.workload import Workload
from zwmd.kube.client import Obj

__all__ = ["RECENT_FINISHED", "Entry", "Registry", "canonical"]

RECENT_FINISHED = 1_000


def canonical(id_or_alias: str) -> str:
    """A UUID in its canonical spelling; anything else as it is."""
    with contextlib.suppress(ValueError):
        return str(uuid.UUID(id_or_alias))
    return id_or_alias


@dataclass
class Entry:
    """One workload and what the engine keeps beside it while it is active."""

    workload: Workload
    finished: anyio.Event = field(default_factory=anyio.Event)
    first_seen: dict[str, datetime] = field(default_factory=dict)
    events: list[Obj] = field(default_factory=list)
    target: str = ""  # a build: the full image it waits for ("" when decided at once)
    creating: bool = False  # the request that made it is writing its Job now
    #: set when that request has ended: its Job written, or the entry discarded
    created: anyio.Event = field(default_factory=anyio.Event)
    cancelling: bool = False  # its Job is being deleted (or is gone) by zwmd
    cancel_requested: bool = False  # a cancel not yet carried out (its delete failed)
    #: the Job's environment Secret is known to exist (admission waits for it)
    environment_ready: bool = False
    finalized: bool = False
    #: set when it leaves the registry as terminal, its log stored to the end
    evicted: anyio.Event = field(default_factory=anyio.Event)

    def __post_init__(self) -> None:
        if self.workload.is_terminal:
            self.finished.set()

    @property
    def kind(self) -> str:
        return self.workload.kind


class Registry:
    """The daemon's workloads: active entries, recent finished records, and indexes."""

    def __init__(self, *, recent: int = RECENT_FINISHED) -> None:
        self.queue = AdmissionQueue()
        self._entries: dict[str, Entry] = {}
        self._recent: OrderedDict[str, Workload] = OrderedDict()
        self._recent_size = recent
        self._aliases: dict[str, str] = {}  # alias -> workload id
        self._jobs: dict[str, str] = {}  # workload id -> its latest Job's name

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, workload_id: str) -> bool:
        return workload_id in self._entries

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, workload_id: str) -> Entry | None:
        """The active entry of exactly this (canonical) id."""
        return self._entries.get(workload_id)

    def resolve(self, id_or_alias: str) -> Entry | None:
        """The active entry with this id or alias."""
        return self._entries.get(self.id_of(id_or_alias))

    def id_of(self, id_or_alias: str) -> str:
        """The workload id that ``id_or_alias`` names (itself when it is no alias)."""
        key = canonical(id_or_alias)
        if key in self._entries or key in self._recent or key in self._jobs:
            return key
        return self._aliases.get(key, key)

    def recent(self, workload_id: str) -> Workload | None:
        """A finished record evicted lately, if it is still remembered."""
        return self._recent.get(workload_id)

    def recent_records(self) -> list[Workload]:
        return list(self._recent.values())

    def job_name(self, workload_id: str) -> str | None:
        """The latest Job of this workload id that still exists, as far as zwmd knows."""
        return self._jobs.get(workload_id)

    # -- changes ------------------------------------------------------------------------

    def put(self, entry: Entry) -> Entry:
        """Make ``entry`` the workload's current one (a new workload, or a new attempt)."""
        workload = entry.workload
        previous = self._entries.get(workload.id)
        if previous is not None and previous is not entry:
            self.queue.forget(workload.id)
        self._entries[workload.id] = entry
        self._recent.pop(workload.id, None)
        self.learn(workload)
        self.note(workload)
        return entry

    def learn(self, workload: Workload) -> None:
        """Remember a workload's aliases and Job (a Job that exists now)."""
        for alias in workload.aliases:
            self._aliases[alias] = workload.id
        if workload.job_name and workload.kind == "runner":
            self._jobs[workload.id] = workload.job_name

    def note(self, workload: Workload) -> None:
        """A record changed state: keep admission's index current."""
        if self._entries.get(workload.id, None) is not None:
            self.queue.note(workload)

    def discard(self, entry: Entry, *, restore: Entry | None = None) -> None:
        """Undo :meth:`put` (a submission that failed): back to ``restore``, or nothing."""
        if self._entries.get(entry.workload.id) is not entry:
            return
        self.queue.forget(entry.workload.id)
        if restore is not None:
            self._entries[entry.workload.id] = restore
            self.queue.note(restore.workload)
        else:
            del self._entries[entry.workload.id]

    def evict(self, entry: Entry) -> None:
        """The workload is terminal and its logs are stored: keep only its record."""
        workload = entry.workload
        if self._entries.get(workload.id) is not entry:
            return
        del self._entries[workload.id]
        self.queue.forget(workload.id)
        entry.evicted.set()
        self._recent[workload.id] = workload
        self._recent.move_to_end(workload.id)
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    def job_deleted(self, workload_id: str, job_name: str, aliases: list[str]) -> None:
        """A workload's Job is gone from Kubernetes: forget what only it could answer."""
        if self._jobs.get(workload_id) != job_name:
            return
        del self._jobs[workload_id]
        if workload_id in self._entries or workload_id in self._recent:
            return
        for alias in aliases:
            if self._aliases.get(alias) == workload_id:
                del self._aliases[alias]
