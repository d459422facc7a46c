"""One upstream MCP server (Streamable HTTP or stdio): list its tools, call one, with its configured credentials
(headers, or an OAuth client-credentials token) and no others."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from sluice.errors import UpstreamError
from sluice.mcp.oauth import ClientCredentials
from sluice.mcp.options import McpServerConfig

T = TypeVar("T")
MAX_PAGES = 20
"""A listing stops after this many pages (a server that pages forever must not hold the request)."""


class Upstream:
    """An upstream MCP server (Streamable HTTP, or stdio). Each listing or call opens a session of its own
    (initialize, the request, then the session ended): nothing is held between two caller requests, so any gateway
    worker may serve any of them.

    The HTTP client sends the config's `headers` (the upstream's credentials), the OAuth token when `oauth` is set
    (one token cache per upstream, shared by its sessions) and the W3C trace context only: the caller's key, and
    every other header of the caller's request, stay at the gateway."""

    def __init__(self, name: str, config: McpServerConfig) -> None:
        self.name = name
        self.config = config
        self.auth = None if config.oauth is None else ClientCredentials(name, config.oauth, config.timeout_seconds)

    async def list_tools(self, trace: dict[str, str]) -> list[types.Tool]:
        """Every tool the server lists (all pages); UpstreamError (502, 504) when it cannot be reached or fails."""
        async def listing(session: ClientSession) -> list[types.Tool]:
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
                tools.extend(page.tools)
                cursor = page.nextCursor
                if cursor is None:
                    break
            return tools

        return await self._in_session(trace, listing, "list its tools")

    async def call_tool(self, tool: str, arguments: dict[str, Any], trace: dict[str, str]) -> types.CallToolResult:
        """The server's result for `tool` (an `isError` result is the tool's own failure, relayed as it is)."""
        async def calling(session: ClientSession) -> types.CallToolResult:
            return await session.call_tool(tool, arguments)

        return await self._in_session(trace, calling, f"call tool {tool!r}")

    async def _in_session(self, trace: dict[str, str], work: Callable[[ClientSession], Awaitable[T]],
                          doing: str) -> T:
        seconds = self.config.timeout_seconds
        try:
            with anyio.fail_after(seconds):
                async with self._session(trace) as session:
                    result: T = await work(session)
                    return result
        except TimeoutError:
            raise UpstreamError(f"MCP server {self.name!r} did not {doing} within {seconds:g} s.", status=504,
                                code="upstream_timeout") from None
        except Exception as exc:  # the SDK's task groups wrap transport errors in ExceptionGroups
            raise UpstreamError(f"MCP server {self.name!r} failed to {doing}: {_reason(exc)}", status=502,
                                code="upstream_unreachable") from exc

    @contextlib.asynccontextmanager
    async def _session(self, trace: dict[str, str]) -> AsyncIterator[ClientSession]:
        async with self._streams(trace) as (read, write), ClientSession(
                read, write, read_timeout_seconds=timedelta(seconds=self.config.timeout_seconds)) as session:
            await session.initialize()
            yield session

    @contextlib.asynccontextmanager
    async def _streams(self, trace: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
        """The session's message streams: over Streamable HTTP, or the pipes of a process started for it (stdio:
        one process per session, ended with it)."""
        config = self.config
        if config.command is not None:
            parameters = StdioServerParameters(command=config.command, args=list(config.args),
                                               env=dict(config.env) or None)
            async with stdio_client(parameters) as (read, write):
                yield read, write
            return
        assert config.url is not None
        timeout = httpx.Timeout(config.timeout_seconds)
        async with (httpx.AsyncClient(headers={**config.headers, **trace}, timeout=timeout, auth=self.auth) as http,
                    streamable_http_client(config.url, http_client=http) as (read, write, _)):
            yield read, write


def _reason(exc: BaseException) -> str:
    """The innermost error's text: an ExceptionGroup's first leaf, not `unhandled errors in a TaskGroup`."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
