"""The low-level MCP `Server` behind `/mcp` and each `/mcp/{server}`: tools/list and tools/call over the catalog."""

from __future__ import annotations

import logging
from typing import Any

from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions

from sluice.mcp.caller import current, required
from sluice.mcp.catalog import Catalog

logger = logging.getLogger("sluice.mcp")

INSTRUCTIONS = ("Sluice, an LLM gateway. Its own tools: list_models, chat, and project__{project}__{route} for the "
                "project endpoints this API key may call. Tools of the MCP servers behind it are named "
                "{server}__{tool}; which of them this API key may use is set by its 'mcp' scope.")
NOTICE_META = "io.sluice/notices"
"""The `_meta` key of a tools/list result that lists what the caller should know (none permitted, a server down)."""


class GatewayServer(Server[Any, Any]):
    """A low-level server whose `initialize` answers with the caller's own instructions (the edge works them out:
    a session with no permitted tool is told so there, and again at each tools/list)."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None
                                      ) -> InitializationOptions:
        options = super().create_initialization_options(notification_options, experimental_capabilities)
        caller = current()
        if caller is not None and caller.instructions is not None:
            options.instructions = caller.instructions
        return options


def build_server(catalog: Catalog, name: str, version: str) -> GatewayServer:
    """The server for one view of the catalog; the handlers take the caller from the edge (`caller.required`).

    They are registered in `request_handlers` directly, not with the SDK's decorators: those cache the tool list
    on the server, shared by every key, and validate calls against it."""
    server = GatewayServer(name, version=version, instructions=INSTRUCTIONS)

    async def list_tools(_: types.ListToolsRequest) -> types.ServerResult:
        caller = required()
        listing = await catalog.listing(caller)
        notices = list(listing.notices)
        if not listing.tools:
            notices.insert(0, catalog.why_empty(caller))
        for notice in notices:
            await _log_to_client(server, notice)
        meta = {NOTICE_META: notices} if notices else None
        return types.ServerResult(types.ListToolsResult(tools=listing.tools, _meta=meta))

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        params = request.params
        result = await catalog.call(required(), params.name, dict(params.arguments or {}))
        return types.ServerResult(result)

    async def set_level(_: types.SetLevelRequest) -> types.ServerResult:
        return types.ServerResult(types.EmptyResult())  # advertises `logging`: the notices are log messages

    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call_tool
    server.request_handlers[types.SetLevelRequest] = set_level
    return server


async def _log_to_client(server: GatewayServer, notice: str) -> None:
    """A warning log message on the request's own stream (the client's `logging_callback` gets it)."""
    context = server.request_context
    try:
        await context.session.send_log_message(level="warning", data=notice, logger="sluice.mcp",
                                               related_request_id=context.request_id)
    except Exception:  # a client that left: the tools/list result still goes, or fails, as it will
        logger.warning("MCP log message not delivered", exc_info=True)
