"""Lifecycle hooks: tell plugins about state changes without ever stalling the engine.

Responsibility: call every plugin's ``zwmd_workload_state_changed`` for every change of a
workload's state, in the order the changes happened, each call bounded by a timeout;
count failures in ``zwmd_hook_errors_total{hook}`` and log them.

Design notes:

- The engine reports a transition synchronously, after the new state is recorded on
  the Job. :meth:`HookNotifier.notify` only appends to a bounded queue; one task
  (:meth:`HookNotifier.run`) delivers. So a slow plugin delays other notifications,
  never a watch event or a state change, and notifications arrive in order.
- Each implementation is called on its own (not through pluggy's loop, which stops at
  the first exception), so one broken plugin does not silence the others. A returned
  awaitable is awaited under ``timeout``; a timeout counts as an error.
- A full queue (a plugin far slower than the workloads) drops the notification, counts
  an error and logs a warning: memory stays bounded.
- The workload is passed as the API shows it: never its environment.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from typing import Any

import anyio
import pluggy
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from zwmd.metrics import Metrics

log = logging.getLogger(__name__)

HOOK = "zwmd_workload_state_changed"


@dataclass(frozen=True)
class _Change:
    workload: dict[str, Any]
    old: str
    new: str


class HookNotifier:
    """Delivers state changes to plugins, one at a time, in order.

    :param manager: the daemon's plugin manager (None: nothing to tell).
    :param metrics: where errors are counted.
    :param timeout: seconds one implementation may take for one change.
    :param buffer: changes that may wait; more are dropped (and counted).
    """

    def __init__(
        self,
        manager: pluggy.PluginManager | None,
        metrics: Metrics,
        *,
        timeout: float = 10.0,
        buffer: int = 10_000,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.timeout = timeout
        self._send: MemoryObjectSendStream[_Change]
        self._receive: MemoryObjectReceiveStream[_Change]
        self._send, self._receive = anyio.create_memory_object_stream[_Change](buffer)

    def _implementations(self) -> list[Any]:
        if self.manager is None:
            return []
        caller = getattr(self.manager.hook, HOOK, None)
        return list(caller.get_hookimpls()) if caller is not None else []

    def notify(self, workload: dict[str, Any], old: str, new: str) -> None:
        """Queue one change; returns at once."""
        if not self._implementations():
            return
        try:
            self._send.send_nowait(_Change(workload, old, new))
        except anyio.WouldBlock:
            self.metrics.hook_error(HOOK)
            log.warning("%s: %d changes wait already; dropped one", HOOK, self.buffer_size)

    @property
    def buffer_size(self) -> int:
        size = self._send.statistics().max_buffer_size
        return int(size) if math.isfinite(size) else 0

    async def run(self) -> None:
        """Deliver queued changes until cancelled."""
        async with self._receive:
            async for change in self._receive:
                for impl in self._implementations():
                    await self._call(impl, change)

    async def _call(self, impl: Any, change: _Change) -> None:
        offered = {"workload": change.workload, "old": change.old, "new": change.new}
        kwargs = {name: offered[name] for name in impl.argnames if name in offered}
        try:
            with anyio.fail_after(self.timeout):
                result = impl.function(**kwargs)
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            self.metrics.hook_error(HOOK)
            log.warning(
                "%s of plugin %s took longer than %gs (workload %s: %s -> %s)",
                HOOK,
                impl.plugin_name,
                self.timeout,
                change.workload.get("id"),
                change.old,
                change.new,
            )
        except Exception:
            self.metrics.hook_error(HOOK)
            log.exception(
                "%s of plugin %s raised (workload %s: %s -> %s)",
                HOOK,
                impl.plugin_name,
                change.workload.get("id"),
                change.old,
                change.new,
            )
