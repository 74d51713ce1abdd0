"""An in-memory :class:`~zwmd.logs.objectstore.ObjectBackend` with an off switch.

For tests of :class:`~zwmd.logs.objectstore.ObjectLogStore` and of plugins built on it:
``backend.online = False`` makes every call raise :class:`ConnectionError`, as an
unreachable object store would; ``puts`` counts the writes. Finer faults: ``failing``
names the operations (``"put"``, ``"get"``, ``"list"``) that raise even while online,
and ``puts_left`` (when not None) is how many more puts succeed before they raise too.
"""

from __future__ import annotations

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Objects in a dict; ``online = False`` simulates an outage."""

    def __init__(self, url: str = "memory://logs") -> None:
        self.url = url
        self.objects: dict[str, bytes] = {}
        self.online = True
        self.failing: set[str] = set()
        self.puts_left: int | None = None
        self.puts = 0

    def _check(self, operation: str) -> None:
        if not self.online or operation in self.failing:
            raise ConnectionError(f"{self.url}: unreachable (simulated, {operation})")

    async def put(self, name: str, data: bytes) -> None:
        self._check("put")
        if self.puts_left is not None:
            if self.puts_left <= 0:
                raise ConnectionError(f"{self.url}: unreachable (simulated, put budget spent)")
            self.puts_left -= 1
        self.objects[name] = bytes(data)
        self.puts += 1

    async def get(self, name: str, start: int = 0) -> bytes | None:
        self._check("get")
        data = self.objects.get(name)
        return None if data is None else data[start:]

    async def list(self, prefix: str) -> list[str]:
        self._check("list")
        return sorted(n for n in self.objects if n.startswith(prefix))

    async def aclose(self) -> None:
        return None
