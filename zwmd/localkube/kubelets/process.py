"""The process kubelet: runs each pod's first container as a host process.

Local mode's node. Every pod is scheduled here (``spec.nodeName: localkube``,
``PodScheduled=True``); the first container's ``command`` + ``args`` run as a
subprocess with the resolved environment (:mod:`.environment`), its stdout and stderr go
to :class:`~zwmd.localkube.podlogs.PodLogs`, and its life becomes the pod's status
(:mod:`.podstatus`): Pending → Running → Succeeded/Failed. The image is ignored.

Design notes:

* One task per pod, in one task group owned by :meth:`ProcessKubelet.run`. A store
  listener feeds an unbounded memory stream; the loop starts a task for each new pod
  and tells a pod's task when its pod was deleted.
* Each process starts a new session, so the pod's whole process tree is one process
  group. A graceful deletion (the pod Terminating: ``deletionTimestamp``, with
  ``deletionGracePeriodSeconds``) sends SIGTERM to the group, then SIGKILL after the
  grace period; what the process prints meanwhile goes to its log, which stays
  readable. Once it has exited, its terminated state is written (no restart) and the
  kubelet deletes the pod with grace 0, as a kubelet confirms a graceful deletion. A
  Terminating pod whose container is not running (waiting, or between restarts) is
  confirmed at once. A pod removed outright (grace 0, its namespace deleted) has its
  process stopped the same way, but nothing more is written. When the kubelet itself
  stops, every process gets SIGTERM and, after ``shutdown_grace``
  seconds, SIGKILL; leftovers of a group are killed when its leader exits, as a
  container runtime does with the container's cgroup.
* A command that cannot be started terminates the container at once (the message says it
  failed to start as a host process, not a containerd task): exit code 127
  (not found) or 126 (not executable), reason ``StartError``, the error as ``message``.
* A Secret or ConfigMap that is missing leaves the container waiting with
  ``CreateContainerConfigError``; it is retried when any Secret or ConfigMap changes,
  and every ``retry_interval`` seconds.
* ``restartPolicy: OnFailure``/``Always`` restart the container after a back-off
  (``CrashLoopBackOff`` while waiting), counting ``restartCount`` and keeping the last
  instance's log as ``previous``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import Process, TaskGroup

from zwmd.localkube.errors import ApiError
from zwmd.localkube.kubelets import podstatus
from zwmd.localkube.kubelets.environment import ConfigError, command_line, container_environment

if TYPE_CHECKING:
    from zwmd.localkube.podlogs import PodLogs
    from zwmd.localkube.store import Store

__all__ = ["ProcessKubelet"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Key = tuple[str, str]


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _PodRun:
    """One pod's container process and how to stop it."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.process: Process | None = None
        self.deleted = False  # the pod is gone from the store
        self.terminating = False  # the pod is Terminating: stop it, then confirm
        self.status: JsonDict = {}
        self.scope = anyio.CancelScope()

    async def terminate(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds if it is still alive."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        _kill_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await process.wait()
        if process.returncode is None:
            _kill_group(process.pid, signal.SIGKILL)
            await process.wait()


class ProcessKubelet:
    """Runs pods as host processes; :meth:`run` runs until cancelled."""

    def __init__(
        self,
        store: Store,
        logs: PodLogs,
        *,
        node_name: str = podstatus.NODE_NAME,
        retry_interval: float = 1.0,
        restart_backoff: float = 0.5,
        shutdown_grace: float = 1.0,
    ) -> None:
        self._store = store
        self._logs = logs
        self._node = node_name
        self._retry_interval = retry_interval
        self._restart_backoff = restart_backoff
        self._shutdown_grace = shutdown_grace
        self._runs: dict[Key, _PodRun] = {}
        self._config_changed: anyio.Event  # set when a Secret or ConfigMap changes (in run())

    def processes(self) -> dict[Key, int]:
        """The pid of every running container process, by (namespace, pod)."""
        return {
            key: run.process.pid
            for key, run in self._runs.items()
            if run.process is not None and run.process.returncode is None
        }

    async def run(self) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[str, JsonDict]](math.inf)

        def listener(event_type: str, resource: str, obj: JsonDict, old: JsonDict | None) -> None:
            if resource in ("secrets", "configmaps"):
                self._config_changed.set()  # waiting containers look again at once
                self._config_changed = anyio.Event()
            elif resource == "pods":
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    send.send_nowait((event_type, obj))

        self._config_changed = anyio.Event()
        self._store.add_listener(listener)
        try:
            async with anyio.create_task_group() as tg:
                pods, _ = self._store.list("pods", None)
                for pod in pods:
                    if pod["metadata"].get("deletionTimestamp"):
                        self._terminating(tg, pod)
                    else:
                        self._consider(tg, pod)
                async with receive:
                    async for event_type, pod in receive:
                        if event_type == "DELETED":
                            self._deleted(tg, pod)
                        elif pod["metadata"].get("deletionTimestamp"):
                            self._terminating(tg, pod)
                        else:
                            self._consider(tg, pod)
        finally:
            send.close()
            self._store.remove_listener(listener)

    def _consider(self, tg: TaskGroup, pod: JsonDict) -> None:
        meta = pod.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key in self._runs or meta.get("deletionTimestamp"):
            return
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if (node and node != self._node) or phase != "Pending" or not pod.get("spec"):
            return
        if node == self._node and (pod.get("status") or {}).get("containerStatuses"):
            return  # already ours from an earlier run: its process is gone
        run = self._runs[key] = _PodRun(str(meta.get("uid")))
        tg.start_soon(self._run_pod, key, run, pod)

    def _deleted(self, tg: TaskGroup, pod: JsonDict) -> None:
        meta = pod.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        run = self._runs.get(key)
        self._logs.forget(*key)
        if run is None or run.uid != str(meta.get("uid")):
            return
        run.deleted = True
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if run.process is None:
            run.scope.cancel()
        else:
            tg.start_soon(run.terminate, float(grace))

    def _terminating(self, tg: TaskGroup, pod: JsonDict) -> None:
        meta = pod.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        run = self._runs.get(key)
        if run is None or run.uid != str(meta.get("uid")):
            if (pod.get("spec") or {}).get("nodeName") == self._node:
                self._confirm(key, str(meta.get("uid")))  # nothing of it runs here
            return
        if run.terminating:
            return
        run.terminating = True
        process = run.process
        if process is None or process.returncode is not None:
            run.scope.cancel()  # not running: waiting, or between restarts
        else:
            tg.start_soon(run.terminate, float(meta.get("deletionGracePeriodSeconds") or 0))

    def _confirm(self, key: Key, uid: str) -> None:
        """The kubelet's final delete of a Terminating pod (grace 0)."""
        try:
            self._store.delete("pods", key[0], key[1], grace_period_seconds=0, uid=uid)
        except ApiError as error:
            if error.code not in (404, 409):
                raise

    # --- one pod ----------------------------------------------------------------------

    def _write(self, key: Key, run: _PodRun, status: JsonDict) -> bool:
        """Write the pod's status; False once the pod is gone."""
        if run.deleted:
            return False
        run.status = status
        try:
            self._store.update_status("pods", key[0], key[1], status)
        except ApiError as error:
            if error.code == 404:
                return False
            raise
        return True

    async def _run_pod(self, key: Key, run: _PodRun, pod: JsonDict) -> None:
        try:
            with run.scope:
                await self._lifecycle(key, run, pod)
        except Exception:
            logger.exception("pod %s/%s: kubelet failure", *key)
        finally:
            process = run.process
            if process is not None and process.returncode is None:
                with anyio.CancelScope(shield=True):
                    await run.terminate(self._shutdown_grace)
            if self._runs.get(key) is run:
                del self._runs[key]
            if run.terminating and not run.deleted:
                self._confirm(key, run.uid)

    async def _lifecycle(self, key: Key, run: _PodRun, pod: JsonDict) -> None:
        try:
            self._store.patch(
                "pods",
                key[0],
                key[1],
                {"spec": {"nodeName": self._node}},
                "application/merge-patch+json",
            )
        except ApiError as error:
            if error.code == 404:
                return
            raise
        if not self._write(key, run, podstatus.scheduled(pod)):
            return
        spec = pod.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        name = str(container.get("name", ""))
        restart_policy = str(spec.get("restartPolicy", "Always"))
        restarts = 0
        while True:
            try:
                current = self._store.get("pods", *key)
                env = container_environment(self._store, current, container)
            except ConfigError as error:
                status = podstatus.waiting(
                    run.status, name, "CreateContainerConfigError", str(error)
                )
                if not self._write(key, run, status):
                    return
                with anyio.move_on_after(self._retry_interval):
                    await self._config_changed.wait()
                continue
            except ApiError as error:
                if error.code == 404:
                    return
                raise
            state = await self._run_container(key, run, container, env)
            if run.deleted:
                return
            code = int(state["terminated"]["exitCode"])
            if run.terminating:
                self._write(key, run, podstatus.terminated(run.status, name, state))
                return
            if restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0):
                delay = min(self._restart_backoff * 2**restarts, 300.0)
                restarts += 1
                message = f"back-off {delay:g}s restarting failed container={name} pod={key[1]}"
                status = podstatus.restarting(run.status, name, state, message)
                if not self._write(key, run, status):
                    return
                await anyio.sleep(delay)
                continue
            self._write(key, run, podstatus.terminated(run.status, name, state))
            return

    async def _run_container(
        self, key: Key, run: _PodRun, container: JsonDict, env: dict[str, str]
    ) -> JsonDict:
        """Run the container's process to its end; its terminated state."""
        name = str(container.get("name", ""))
        argv = command_line(container, env)
        self._logs.start(key[0], key[1], name)
        started_at = podstatus.now()
        if not argv:
            return self._start_error(key, name, started_at, 127, "no command specified")
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=container.get("workingDir") or None,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            where = "executable file not found in $PATH" if "/" not in argv[0] else str(error)
            return self._start_error(key, name, started_at, 127, f'exec: "{argv[0]}": {where}')
        except PermissionError as error:
            return self._start_error(key, name, started_at, 126, f'exec: "{argv[0]}": {error}')
        except OSError as error:
            return self._start_error(key, name, started_at, 126, f'exec: "{argv[0]}": {error}')
        run.process = process
        container_id = f"localkube://{process.pid}"
        self._write(key, run, podstatus.running(run.status, name, started_at, container_id))
        try:
            assert process.stdout is not None
            async for chunk in process.stdout:
                if not run.deleted:
                    self._logs.append(key[0], key[1], name, chunk)
            code = await process.wait()
        finally:
            if process.returncode is not None:
                _kill_group(process.pid, signal.SIGKILL)  # what the leader left behind
            if not run.deleted:
                self._logs.close(key[0], key[1], name)
        exit_code = 128 - code if code < 0 else code
        return podstatus.terminated_state(
            exit_code,
            podstatus.exit_reason(exit_code),
            started_at=started_at,
            container_id=container_id,
        )

    def _start_error(self, key: Key, name: str, started_at: str, code: int, error: str) -> JsonDict:
        message = f"failed to start container {name} as a host process: {error}"
        self._logs.close(key[0], key[1], name)
        return podstatus.terminated_state(
            code, "StartError", started_at=started_at, message=message
        )
