"""The tools a caller may use at `/mcp` (own + every upstream's, prefixed) or `/mcp/{server}`, and their calls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mcp import types

from sluice.errors import NotFound, PermissionDenied
from sluice.mcp.caller import Caller
from sluice.mcp.chat import Pieces
from sluice.mcp.own_tools import OWN_TOOLS, run_own
from sluice.mcp.permissions import prefixed, split
from sluice.mcp.project_tools import ProjectTool, ProjectTools
from sluice.mcp.recorded import GATEWAY_SERVER, recorded
from sluice.mcp.upstream import Upstream
from sluice.pipeline.flow import Flow
from sluice.telemetry.trace_context import TraceIds


@dataclass(slots=True)
class Listing:
    """The tools a caller may use, and what it should be told beside them (an upstream that did not answer)."""

    tools: list[types.Tool] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class Catalog:
    """The gateway's own tools and the configured upstream servers, seen through each caller's permissions."""

    def __init__(self, upstreams: dict[str, Upstream], projects: ProjectTools | None = None) -> None:
        self.upstreams = upstreams
        self.projects = projects

    def project_tools(self, caller: Caller) -> dict[str, ProjectTool]:
        """The project tools the caller may use (at `/mcp` only): its key's `projects` scope allows the project and
        no `deny` pattern of its `mcp` scope names the tool."""
        if caller.server is not None or self.projects is None:
            return {}
        allowed = caller.principal.projects
        return {name: tool for name, tool in self.projects.tools().items()
                if (allowed is None or tool.project in allowed) and caller.policy.permits_own(name)}

    async def listing(self, caller: Caller) -> Listing:
        """The permitted tools: at `/mcp` the gateway's own and every upstream's as `{server}__{tool}`; at
        `/mcp/{server}` that server's, under their own names. An upstream is asked only when the key's `mcp`
        scope could permit one of its tools."""
        listing = Listing()
        policy = caller.policy
        if caller.server is None:
            listing.tools.extend(tool for name, tool in OWN_TOOLS.items() if policy.permits_own(name))
            listing.tools.extend(found.tool for found in self.project_tools(caller).values())
            servers = list(self.upstreams) if policy.scope is not None else []
        else:
            servers = [caller.server] if policy.scope is not None else []
        trace = _listing_trace(caller.flow)
        found = await asyncio.gather(*(self.upstreams[name].list_tools(trace) for name in servers),
                                     return_exceptions=True)
        for server, tools in zip(servers, found, strict=True):
            if isinstance(tools, BaseException):
                if not isinstance(tools, Exception):
                    raise tools
                listing.notices.append(str(tools))
                continue
            for tool in tools:
                if policy.permits_upstream(server, tool.name):
                    shown = tool if caller.server is not None else tool.model_copy(
                        update={"name": prefixed(server, tool.name)})
                    listing.tools.append(shown)
        return listing

    def why_empty(self, caller: Caller) -> str:
        """What a session without a single permitted tool is told, in its instructions and a log message."""
        where = "at /mcp" if caller.server is None else f"on MCP server {caller.server!r} (/mcp/{caller.server})"
        if caller.policy.scope is None:
            return (f"No tools are permitted for this API key {where}: the key has no 'mcp' scope, so it may use "
                    "the gateway's own tools only. Ask an administrator for an 'mcp' allow list.")
        return f"No tools are permitted for this API key {where}: its 'mcp' scope (allow/deny lists) permits none."

    async def call(self, caller: Caller, name: str, arguments: dict[str, Any], pieces: Pieces | None = None
                   ) -> types.CallToolResult:
        """Call `name` for the caller: each call, refused or not, is an exchange the observers get (recorded).
        `pieces` is for the caller's progress notifications: only `chat` streams to it (other tools ignore it)."""
        edge, policy = caller.flow, caller.policy
        if caller.server is None and name in OWN_TOOLS:
            async def own(_: Flow) -> types.CallToolResult:
                if not policy.permits_own(name):
                    raise PermissionDenied(policy.refusal(name))
                return await run_own(edge, name, arguments, pieces)

            return await recorded(edge, GATEWAY_SERVER, name, arguments, own)
        project_tool = self._project_tool(caller, name)
        if project_tool is not None:
            return await self._call_project(caller, project_tool, name, arguments)
        server, tool = (caller.server, name) if caller.server is not None else (split(name) or ("", name))
        shown = prefixed(server, tool) if caller.server is None else name

        async def upstream(flow: Flow) -> types.CallToolResult:
            if server not in self.upstreams:
                raise NotFound(f"Unknown tool {shown!r}: no gateway tool and no MCP server {server!r} has it.")
            if not policy.permits_upstream(server, tool):
                raise PermissionDenied(policy.refusal(shown))
            trace = flow.exchange.trace
            headers = {"traceparent": trace.traceparent_for_upstream()} if trace is not None else {}
            return await self.upstreams[server].call_tool(tool, arguments, headers)

        return await recorded(edge, server or GATEWAY_SERVER, tool, arguments, upstream)

    def _project_tool(self, caller: Caller, name: str) -> ProjectTool | None:
        if caller.server is not None or self.projects is None:
            return None
        return self.projects.tools().get(name)

    async def _call_project(self, caller: Caller, tool: ProjectTool, name: str, arguments: dict[str, Any]
                            ) -> types.CallToolResult:
        """A project route called as the caller, through the gateway's app: refused here first when the key may
        not (the project's own checks run again in the call)."""
        projects, policy = self.projects, caller.policy
        assert projects is not None

        async def project(flow: Flow) -> types.CallToolResult:
            flow.exchange.project = tool.project
            if not policy.permits_own(name):
                raise PermissionDenied(policy.refusal(name))
            caller.principal.check_project(tool.project)
            return await projects.calls.call(caller.flow, caller.scope, flow, tool, arguments)

        return await recorded(caller.flow, GATEWAY_SERVER, name, arguments, project)


def _listing_trace(edge: Flow) -> dict[str, str]:
    """The trace context of a listing sent upstream: parented on the MCP request's server span."""
    trace: TraceIds | None = edge.exchange.trace
    if trace is None:
        return {}
    return {"traceparent": f"00-{trace.trace_id}-{trace.server_span_id}-{'01' if trace.sampled else '00'}"}
