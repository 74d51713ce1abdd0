"""The reconciler: per-key order, independent keys, one timer, errors that never end it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from tests.inprocess import until
from zwmd.engine.reconciling import RETRY_SECONDS, Reconciler
from zwmd.kube.client import KubeError
from zwmd.kube.informer import Change

pytestmark = pytest.mark.anyio


class _Kind:
    name = "test"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlapped = False
        self.gates: dict[str, anyio.Event] = {}
        self.failures: dict[str, int] = {}
        self.after = 0
        self.retry_after: float | None = 1

    def keys_listed(self, resource: str) -> Iterable[str]:
        return ()

    def keys_changed(self, change: Change) -> Iterable[str]:
        return (change.name,)

    async def reconcile(self, key: str) -> None:
        if key in self.running:
            self.overlapped = True
        self.running.add(key)
        self.calls.append(key)
        try:
            if key in self.gates:
                await self.gates[key].wait()
            if self.failures.get(key):
                self.failures[key] -= 1
                raise KubeError(429, "TooManyRequests", "slow down", retry_after=self.retry_after)
        finally:
            self.running.discard(key)

    async def after_work(self) -> None:
        self.after += 1


async def test_kicks_of_one_key_run_in_order_and_other_keys_do_not_wait() -> None:
    kind = _Kind()
    reconciler = Reconciler(tick=0.01)
    reconciler.add(kind)
    kind.gates["a"] = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(reconciler.run)
        reconciler.kick("test", "a")
        await until(lambda: "a" in kind.running)
        for _ in range(5):  # while "a" works: folded into one more pass
            reconciler.kick("test", "a")
        reconciler.kick("test", "b")
        await until(lambda: "b" in kind.calls)  # "b" is not held up by "a"
        kind.gates["a"].set()
        await until(lambda: kind.calls.count("a") == 2)
        await anyio.sleep(0.1)
        assert kind.calls.count("a") == 2
        assert not kind.overlapped
        tg.cancel_scope.cancel()


async def test_an_apiserver_error_is_retried_and_the_reconciler_goes_on() -> None:
    kind = _Kind()
    kind.failures["a"] = 1
    reconciler = Reconciler(tick=0.05)
    reconciler.add(kind)
    async with anyio.create_task_group() as tg:
        await tg.start(reconciler.run)
        reconciler.kick("test", "a")
        await until(lambda: kind.calls == ["a"])
        reconciler.kick("test", "b")  # the failure of "a" ended nothing
        await until(lambda: "b" in kind.calls)
        await until(lambda: kind.calls.count("a") == 2, timeout=RETRY_SECONDS + 5)
        assert kind.after >= 3  # admission ran after every worker, the failed one too
        tg.cancel_scope.cancel()


async def test_the_latest_recheck_of_a_key_wins() -> None:
    kind = _Kind()
    reconciler = Reconciler(tick=0.02)
    reconciler.add(kind)
    async with anyio.create_task_group() as tg:
        await tg.start(reconciler.run)
        now = reconciler.clock()
        reconciler.recheck("test", "late", now + timedelta(seconds=0.1))
        reconciler.recheck("test", "late", now + timedelta(seconds=30))  # supersedes
        reconciler.recheck("test", "soon", now + timedelta(seconds=0.1))
        reconciler.recheck("test", "never", now + timedelta(seconds=0.1))
        reconciler.recheck("test", "never", None)
        await until(lambda: "soon" in kind.calls)
        await anyio.sleep(0.3)
        assert kind.calls == ["soon"]
        tg.cancel_scope.cancel()


async def test_a_failing_key_backs_off_longer_each_time_and_afresh_after_a_success() -> None:
    """Retries of one key space out (1, 2, 4, 8 s bases, jittered), honour the
    apiserver's Retry-After, and start from the shortest delay again after a success."""
    fake = {"now": datetime(2026, 1, 1, tzinfo=UTC)}
    kind = _Kind()
    seen: list[datetime] = []
    reconcile = kind.reconcile

    async def timed(key: str) -> None:
        seen.append(fake["now"])
        await reconcile(key)

    kind.reconcile = timed  # type: ignore[method-assign]
    reconciler = Reconciler(clock=lambda: fake["now"], tick=0.002)
    reconciler.add(kind)

    async def advance() -> None:  # 0.1 s of the reconciler's time per real millisecond
        while True:
            await anyio.sleep(0.001)
            fake["now"] += timedelta(seconds=0.1)

    def gaps() -> list[float]:
        return [(b - a).total_seconds() for a, b in itertools.pairwise(seen)]

    async with anyio.create_task_group() as tg:
        await tg.start(reconciler.run)
        tg.start_soon(advance)
        kind.failures["a"] = 4
        kind.retry_after = None
        reconciler.kick("test", "a")
        await until(lambda: len(seen) == 5)  # four failures, then a success
        for gap, base in zip(gaps(), [1, 2, 4, 8], strict=True):  # (+0.5: the timer's steps)
            assert base / 2 <= gap <= base + 0.5, gaps()

        kind.failures["a"], kind.retry_after = 1, 10.0  # the apiserver asks for 10 s
        reconciler.kick("test", "a")
        await until(lambda: len(seen) == 7)
        assert gaps()[-1] >= 10, gaps()

        kind.failures["a"], kind.retry_after = 1, None  # a success since: short again
        reconciler.kick("test", "a")
        await until(lambda: len(seen) == 9)
        assert gaps()[-1] <= 1.5, gaps()
        tg.cancel_scope.cancel()
