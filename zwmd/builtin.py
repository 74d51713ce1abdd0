"""The builtin plugin: the ``kubernetes`` implementation and the ``file`` log store.

It is registered by the daemon like any other plugin (it is not an entry point, so it
cannot be uninstalled by accident), and implements the hooks exactly as a third-party
plugin would.
"""

from __future__ import annotations

from typing import Any

from zwmd.hookspecs import hookimpl
from zwmd.logs.filestore import FileLogStore


@hookimpl
def zwmd_implementations() -> list[str]:
    return ["kubernetes"]


@hookimpl(trylast=True)
def zwmd_log_store(settings: Any, name: str) -> Any:
    if name == "file":
        return FileLogStore(settings.state_dir)
    return None
