"""The streams a worker is relaying, ended with a proper error event when the worker stops before they finish.

A stopping worker (SIGTERM to the server, or a reload replacing it) lets its requests finish for
`server.shutdown_grace_seconds`; then it is killed, and a stream still open would be cut mid-body, which clients
read as a broken connection. So once the worker starts draining, the streams still open when the grace ends
(5 s before the kill, serve/supervisor.py) are cancelled here, and their relay ends them with an SSE error event
(`server_shutting_down`), or answers a 503 when no byte had been sent, which the client can retry elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sluice.errors import ServiceUnavailable


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway is restarting and ended this stream before it finished; retry the "
                              "request.", code="server_shutting_down")


class StreamCutoff:
    """The relaying tasks of one gateway, and whether they are being ended for a shutdown (`cut`)."""

    __slots__ = ("cut", "_open", "_timer", "_deadline", "_loop")

    def __init__(self) -> None:
        self.cut = False
        self._open: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        """`time.monotonic()` when the streams still open are ended; None until the worker drains."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def opened(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            if self.cut:
                task.cancel()
            self._open.add(task)
            loop = self._loop = task.get_loop()
            if self._deadline is not None and self._timer is None:
                self._schedule(loop)
        return task

    def closed(self, task: asyncio.Task[Any] | None) -> None:
        self._open.discard(task)

    def after(self, seconds: float) -> None:
        """End the streams still open `seconds` from now (at once when that is not in the future). Called on the
        gateway's loop (the drain signal's handler) or from another thread."""
        if self._deadline is not None:
            return
        self._deadline = time.monotonic() + max(0.0, seconds)
        try:
            self._schedule(asyncio.get_running_loop())
        except RuntimeError:  # another thread: the timer goes on the loop the streams run on, if any ran yet
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._schedule, self._loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._deadline is not None:
            self._timer = loop.call_later(max(0.0, self._deadline - time.monotonic()), self._end)

    def _end(self) -> None:
        self.cut = True
        for task in self._open:
            task.cancel()
