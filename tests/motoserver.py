"""moto's server on 127.0.0.1, stopped and started again on the same port.

moto keeps its state in this process, so stopping its HTTP server and starting a new one
on the same port is an outage (connections refused) after which the buckets are still
there. Used by the AWS plugin's tests and its fault scenario.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from moto.server import ThreadedMotoServer


class Moto:
    """moto's server, restartable on the same port."""

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """S3 is away inside, back on the same port with the same buckets after."""
        self.stop()
        try:
            yield
        finally:
            self.start()
