"""The streams a worker is relaying, ended with a proper error event when the worker stops before they finish.

A stopping worker (SIGTERM to the server, or a reload replacing it) lets its requests finish for
`server.shutdown_grace_seconds`; then it is killed, and a stream still open would be cut mid-body, which clients
read as a broken connection. So once the worker starts draining, the streams still open when the grace ends
(5 s before the kill, serve/supervisor.py) are cancelled here, and their relay ends them with an SSE error event
(`server_shutting_down`), or answers a 503 when no byte had been sent, which the client can retry elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.errors import ServiceUnavailable


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is restarting and ended this stream before it finished; retry the "
                              "request.", code="server_shutting_down")


class StreamCutoff:
    """The relaying tasks of one gateway, and whether they are being ended for a shutdown (`cut`)."""

    __slots__ = ("cut", "_open", "_timer")

    def __init__(self) -> None:
        self.cut = False
        self._open: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def opened(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            if self.cut:
                task.cancel()
            self._open.add(task)
        return task

    def closed(self, task: asyncio.Task[Any] | None) -> None:
        self._open.discard(task)

    def after(self, seconds: float) -> None:
        """End the streams still open `seconds` from now (at once when that is not in the future)."""
        if self._timer is not None or self.cut:
            return
        self._timer = asyncio.get_running_loop().call_later(max(0.0, seconds), self._end)

    def _end(self) -> None:
        self.cut = True
        for task in self._open:
            task.cancel()
