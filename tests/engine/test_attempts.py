"""The attempt number: one rule for builds, runs and messages under a reused id."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zwmd.engine.attempts import FIRST_ATTEMPT, message_attempt, next_attempt
from zwmd.engine.workload import Workload
from zwmd.kube import naming
from zwmd.logs.filestore import FileLogStore
from zwmd.logs.records import LogRecord
from zwmd.logs.store import LogKey
from zwmd.states import Reason, State

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _record(attempt: int) -> LogRecord:
    return LogRecord.at(NOW, "zwmd", logging.INFO, "Starting pipeline run.", attempt)


def _workload(kind: str, state: State, attempt: int) -> Workload:
    return Workload(
        id=str(uuid.uuid4()),
        kind=kind,
        state=state,
        attempt=attempt,
        reason=Reason.ERROR if state is State.FAILED else None,
    )


async def test_an_unknown_id_follows_the_log_store(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, fsync=False)
    wid = str(uuid.uuid4())
    assert await next_attempt(store, wid, None) == FIRST_ATTEMPT
    await store.append(LogKey(wid, 1), [_record(1)])  # a message before any run: still open
    assert await next_attempt(store, wid, None) == 1
    assert await message_attempt(store, wid, None) == 1
    await store.close(LogKey(wid, 1))  # the run ended and its log is complete
    assert await next_attempt(store, wid, None) == 2
    # a resumed run's first message goes where its build and runner will go, not into
    # the closed attempt
    assert await message_attempt(store, wid, None) == 2


async def test_a_known_workload_decides_without_the_store(tmp_path: Path) -> None:
    store = FileLogStore(tmp_path, fsync=False)
    running = _workload(naming.KIND_RUNNER, State.RUNNING, 3)
    built = _workload(naming.KIND_BUILDER, State.SUCCEEDED, 3)
    build_failed = _workload(naming.KIND_BUILDER, State.FAILED, 3)
    ran = _workload(naming.KIND_RUNNER, State.SUCCEEDED, 3)
    assert await next_attempt(store, running.id, running) == 3
    assert await next_attempt(store, built.id, built) == 3  # the run joins its build's attempt
    assert await next_attempt(store, build_failed.id, build_failed) == 4
    assert await next_attempt(store, ran.id, ran) == 4
    assert await message_attempt(store, ran.id, ran) == 3  # "Run succeeded." stays with the run
