"""The body read timeout: the request bodies being read, by task, and a sweep that cancels those read for too long.

`asyncio.timeout` around each read cost ~12 µs a request under uvloop (a timer handle made and cancelled each
time). Here a read is noted with the sweep count at its start (no clock read), and one timer per gateway runs,
every quarter of the timeout (at most 1 s), only while bodies are being read: a read costs well under 1 µs, and
a late one is refused between the timeout and a quarter (or 1 s) past it. The late read's task is cancelled
(`Task.cancel`) and the reader turns that into `RequestTimeout` (408, and the connection closed).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from sluice.errors import RequestTimeout

SWEEPS_PER_TIMEOUT = 4
MAX_SWEEP_SECONDS = 1.0
_RUNNING: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = getattr(asyncio.tasks, "_current_tasks", {})
"""Each running loop's current task: what `asyncio.current_task` reads, after `get_running_loop` (~0.5 µs on
Python 3.11, most of it that call's `getpid`); a clock that knows its loop reads it directly."""


class BodyClock:
    """The deadlines of the request bodies being read by one gateway (on its one event loop)."""

    __slots__ = ("timeout", "_interval", "_sweeps", "_count", "_reading", "_late", "_timer", "_loop")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._interval = min(MAX_SWEEP_SECONDS, timeout / SWEEPS_PER_TIMEOUT)
        self._sweeps = math.ceil(timeout / self._interval - 1e-9)
        """A read still going after more sweeps than this took longer than `timeout`."""
        self._count = 0
        self._reading: dict[asyncio.Task[object], int] = {}
        self._late: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.Task[object]:
        """Note that the current task starts reading a body."""
        loop = self._loop
        task = _RUNNING.get(loop) if loop is not None else None
        if task is None:  # the first read, another loop (tests: start afresh there), or no `_current_tasks`
            running = asyncio.get_running_loop()
            task = asyncio.current_task(running)
            assert task is not None
            if running is not loop:
                self._loop = loop = running
                self._reading, self._late, self._timer = {}, set(), None
        self._reading[task] = self._count
        if self._timer is None:
            assert loop is not None
            self._timer = loop.call_later(self._interval, self._sweep)
        return task

    def stop(self, task: asyncio.Task[object]) -> None:
        """The body arrived (or its read failed otherwise)."""
        self._reading.pop(task, None)
        if self._late and task in self._late:  # cancelled as its body arrived, and `receive` returned it anyway
            self.timed_out(task)

    def timed_out(self, task: asyncio.Task[object]) -> bool:
        """Whether the cancellation `task` got was this clock's (then it is taken back: the task goes on)."""
        if task not in self._late:
            return False
        self._late.discard(task)
        task.uncancel()
        return True

    def refusal(self) -> RequestTimeout:
        return RequestTimeout(f"The request body did not arrive within {self.timeout:g} s.")

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a timer left on a loop this clock no longer serves
            return
        self._count += 1
        oldest = self._count - self._sweeps
        for task, started in self._reading.items():
            if started < oldest and task not in self._late and not task.done():
                self._late.add(task)
                task.cancel()
        self._timer = loop.call_later(self._interval, self._sweep) if self._reading else None
