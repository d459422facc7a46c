"""An SDK session manager kept running (its task group open) from the first MCP request to the worker's stop."""

from __future__ import annotations

import asyncio
import contextvars

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager


class Running:
    """`manager.run()` entered in a task of its own, started on first use: Sluice's dispatch is not a Starlette
    mount, so no lifespan enters it; `aclose` (the app's shutdown) leaves it."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def started(self) -> StreamableHTTPSessionManager:
        """The manager, once its task group is open."""
        if self._task is None:
            # An empty context: the manager's task must not keep the first caller's (caller.py's ContextVar).
            self._task = asyncio.create_task(self._run(), name="sluice-mcp-sessions", context=contextvars.Context())
        if not self._ready.is_set():
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait((ready, self._task), return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if self._task.done():
                self._task.result()  # the manager failed to start: its error, raised here
                raise RuntimeError("the MCP session manager stopped")
        return self.manager

    async def _run(self) -> None:
        async with self.manager.run():
            self._ready.set()
            await self._stop.wait()

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
