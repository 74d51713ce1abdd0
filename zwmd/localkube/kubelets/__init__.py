"""localkube's kubelets: what plays the node for the pods of the in-process API.

* :class:`ProcessKubelet` (local mode) runs each pod's first container as a host process.
* :class:`ScriptedKubelet` (tests) leaves every transition to the test: running,
  succeeded, failed, OOM-killed, waiting, evicted, unschedulable, log lines.

Both write pod status through :mod:`.podstatus`, so the shapes clients see are the same.
"""

from zwmd.localkube.kubelets.process import ProcessKubelet
from zwmd.localkube.kubelets.scripted import ScriptedKubelet

__all__ = ["ProcessKubelet", "ScriptedKubelet"]
