"""The low-level MCP `Server` behind `/mcp` and each `/mcp/{server}`: tools over the catalog, services as resources."""

from __future__ import annotations

import logging
from typing import Any

from mcp import types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions

from sluice.mcp.caller import current, required
from sluice.mcp.catalog import Catalog
from sluice.mcp.chat import Pieces
from sluice.mcp.resources import MIME_TYPE, read_service, service_resources

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


def build_server(catalog: Catalog, name: str, version: str, *, resources: bool = False) -> GatewayServer:
    """The server for one view of the catalog; the handlers take the caller from the edge (`caller.required`).
    With `resources` (the `/mcp` view) it also lists and reads the services the caller's key may reach.

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
        token = params.meta.progressToken if params.meta is not None else None
        pieces = _progress(server, token) if token is not None else None
        result = await catalog.call(required(), params.name, dict(params.arguments or {}), pieces)
        return types.ServerResult(result)

    async def list_resources(_: types.ListResourcesRequest) -> types.ServerResult:
        caller = required()
        return types.ServerResult(types.ListResourcesResult(
            resources=service_resources(caller.flow.gateway, caller.principal)))

    async def read_resource(request: types.ReadResourceRequest) -> types.ServerResult:
        caller = required()
        uri = request.params.uri
        text = await read_service(caller.flow.gateway, caller.principal, str(uri))
        contents = types.TextResourceContents(uri=uri, mimeType=MIME_TYPE, text=text)
        return types.ServerResult(types.ReadResourceResult(contents=[contents]))

    async def set_level(_: types.SetLevelRequest) -> types.ServerResult:
        return types.ServerResult(types.EmptyResult())  # advertises `logging`: the notices are log messages

    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call_tool
    server.request_handlers[types.SetLevelRequest] = set_level
    if resources:
        server.request_handlers[types.ListResourcesRequest] = list_resources
        server.request_handlers[types.ReadResourceRequest] = read_resource
    return server


def _progress(server: GatewayServer, token: str | int) -> Pieces:
    """Where a streamed `chat` puts each piece of text: a `notifications/progress` on the request's own stream
    (the POST's SSE response, also when stateless), `progress` the characters so far, `message` the new piece."""
    context = server.request_context
    sent = 0

    async def notify(piece: str) -> None:
        nonlocal sent
        sent += len(piece)
        try:
            await context.session.send_progress_notification(token, sent, message=piece,
                                                             related_request_id=str(context.request_id))
        except Exception:  # a client that left: the call goes on, its row and usage recorded
            logger.warning("MCP progress notification not delivered", exc_info=True)

    return notify


async def _log_to_client(server: GatewayServer, notice: str) -> None:
    """A warning log message on the request's own stream (the client's `logging_callback` gets it)."""
    context = server.request_context
    try:
        await context.session.send_log_message(level="warning", data=notice, logger="sluice.mcp",
                                               related_request_id=context.request_id)
    except Exception:  # a client that left: the tools/list result still goes, or fails, as it will
        logger.warning("MCP log message not delivered", exc_info=True)
